"""``scope view``'s flame graph, top functions of the window and a call's children, in
chromium (driven as tests/test_view_browser.py drives it, with its fixtures)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scope.query.api import Recording
from scope.query.viewer import flame as flames

from . import test_view_browser as browsing
from .test_view_browser import Watched, opened, until
from .viewing import record, serving

#: the page in chromium, as in test_view_browser
pytestmark = pytest.mark.matrix_once

# test_view_browser's fixtures, used here by name: chromium, its program served, a page on it
browser = browsing.browser
recording = browsing.recording
server = browsing.server
page = browsing.page
ten_million = browsing.ten_million


def open_flame(page: Watched) -> None:
    before = page.page.evaluate("Number(document.body.dataset.flame || 0)")
    page.page.click('#tabs button[data-tab="flame"]')
    until(page.page, f"Number(document.body.dataset.flame || 0) > {before}")


def flame_did(page: Watched, action: Any) -> None:
    before = page.page.evaluate("Number(document.body.dataset.flame || 0)")
    action()
    until(page.page, f"Number(document.body.dataset.flame || 0) > {before}")


def flame_of_the_window(page: Watched, action: Any) -> tuple[int, int]:
    """Do ``action`` (zooming), then wait for the flame graph of the window it led to;
    that window, as the page asked for it."""
    page.after(action)
    shown = "[Math.floor(state.since), Math.ceil(state.until)]"
    until(page.page, f"JSON.stringify(flame.window) === JSON.stringify({shown})")
    since, until_ns = page.page.evaluate(shown)
    return int(since), int(until_ns)


def roots_total(page: Watched) -> int:
    return int(
        page.page.evaluate("flame.nodes.filter(n => n[0] === null).reduce((s, n) => s + n[2], 0)")
    )


def test_the_flame_graph_zooms_into_a_node_and_back(page: Watched) -> None:
    open_flame(page)
    assert page.page.evaluate("flame.nodes.length") > 3
    names = page.page.evaluate("flame.nodes.map(n => flameName(n[1]))")
    assert {"__main__.main", "__main__.worker", "__main__.fib", "__main__.leaf"} <= set(names)
    box = page.page.locator("#flame").bounding_box()
    assert box["height"] >= 3 * 16
    # Hovering a node says what it is; clicking it shows its subtree full width.
    target = page.page.evaluate(
        """(() => {
            const d = flame.drawn.find(
                d => flameName(flame.nodes[d[3]][1]) === '__main__.fib' && d[2] - d[0] > 4);
            return d && [(d[0] + d[2]) / 2, d[1] + 8, d[3]];
        })()"""
    )
    assert target, "no fib node wide enough to click"
    page.page.mouse.move(box["x"] + target[0], box["y"] + target[1])
    hover = page.page.inner_text("#flame-hover")
    assert hover.startswith("__main__.fib: total") and "self" in hover and "calls" in hover
    page.page.mouse.click(box["x"] + target[0], box["y"] + target[1])
    assert page.page.evaluate("flame.focus") == target[2]
    first = page.page.evaluate("flame.drawn[0]")
    assert first[0] == 0 and first[3] == target[2]  # the node drawn first, full width
    while page.page.evaluate("flame.focus") >= 0:
        page.page.click("#flame-back")
    assert page.page.locator("#flame-back").is_hidden()


def test_the_flame_graph_follows_the_window_or_shows_the_whole_run(page: Watched) -> None:
    open_flame(page)
    whole = roots_total(page)
    page.page.focus("#timeline")
    since, until_ns = flame_of_the_window(
        page, lambda: [page.page.keyboard.press("w") for _ in range(6)]
    )
    lanes = len(page.page.evaluate("state.lanes"))
    assert 0 < roots_total(page) <= (until_ns - since) * lanes < whole
    flame_did(page, lambda: page.page.click('[data-flame-scope="run"]'))
    assert roots_total(page) == whole
    flame_did(page, lambda: page.page.click('[data-flame-by="self"]'))
    roots = page.page.evaluate("flame.nodes.filter(n => n[0] === null).map(n => flameName(n[1]))")
    assert "__main__.leaf" in roots  # by self time: rooted where the time was spent
    assert roots_total(page) <= whole


def test_top_functions_of_the_visible_window(page: Watched) -> None:
    page.page.click('#tabs button[data-tab="top"]')
    whole = page.page.locator("#panel-top tbody tr td:first-child").all_inner_texts()
    # To the fourth call of risky (guarded(3)'s): after fib(11) and fib(9) are done.
    page.after(
        lambda: page.page.evaluate(
            """(async () => {
                let after = -1, call = null;
                for (let i = 0; i < 4; i++) {
                    call = (await ask(`find?pattern=risky&after=${after}`)).call;
                    after = call[1];
                }
                fitTo(call[1], call[2]);
            })()"""
        )
    )
    before = page.page.evaluate("Number(document.body.dataset.top || 0)")
    page.page.click('[data-top-scope="window"]')
    until(page.page, f"Number(document.body.dataset.top || 0) > {before}")
    shown = page.page.locator("#panel-top tbody tr td:first-child").all_inner_texts()
    assert "__main__.risky" in shown and "__main__.guarded" in shown
    assert "__main__.fib" not in shown and "__main__.leaf" not in shown
    assert set(shown) < set(whole)


CALLER = """
def leaf(i):
    return i

def main():
    for i in range(120):
        leaf(i)

main()
"""


@pytest.fixture(scope="module")
def caller_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    path = record(tmp_path_factory.mktemp("caller"), CALLER)
    with Recording(str(path)) as recording, serving(recording) as running:
        yield running


def test_a_calls_children_are_paged_and_its_subtree_is_a_flame_graph(
    browser: Any,
    caller_server: Any,
    tmp_path: Path,
) -> None:
    with opened(
        browser, caller_server.url, (1200, 800), "document.body.dataset.ready === '1'"
    ) as page:
        main = page.page.evaluate(
            "state.calls.find(c => state.functions[c[4]] === '__main__.main')[5]"
        )
        page.page.evaluate(f"select({main})")
        until(page.page, f"document.body.dataset.children === '{main}:0'")
        assert page.page.inner_text("#children-count") == "1-50 of 120"
        rows = page.page.locator("#details-children tr")
        assert rows.count() == 50 and "__main__.leaf" in rows.first.inner_text()
        assert page.page.locator("#children-prev").is_hidden()
        for offset, shown in ((50, "51-100 of 120"), (100, "101-120 of 120")):
            page.page.click("#children-next")
            until(page.page, f"document.body.dataset.children === '{main}:{offset}'")
            assert page.page.inner_text("#children-count") == shown
        assert rows.count() == 20 and page.page.locator("#children-next").is_hidden()
        page.page.click("#children-prev")
        until(page.page, f"document.body.dataset.children === '{main}:50'")
        # The subtree: main and its 120 leaf calls.
        flame_did(page, lambda: page.page.click("#details-subtree"))
        assert page.page.evaluate("flame.within") == main
        nodes = page.page.evaluate("flame.nodes.map(n => [n[0], flameName(n[1]), n[4]])")
        assert nodes == [[None, "__main__.main", 1], [0, "__main__.leaf", 120]]
        # A child clicked is selected.
        first = page.page.evaluate("document.querySelector('#details-children tr').dataset.call")
        page.page.locator("#details-children tr").first.click()
        until(page.page, "document.querySelector('#details-name').textContent === '__main__.leaf'")
        assert str(page.page.evaluate("state.selected")) == first
        assert page.errors == []


@pytest.mark.slow
def test_ten_million_calls_have_a_bounded_flame_graph(
    browser: Any, ten_million: tuple[str, int]
) -> None:
    # Its recursion is 1,000 calls deep: deeper than the graph follows.
    path, calls = ten_million
    with (
        Recording(path) as recording,
        serving(recording) as running,
        opened(
            browser, running.url, (1500, 800), "document.body.dataset.ready === '1'", timeout=120
        ) as page,
    ):
        page.page.click('#tabs button[data-tab="flame"]')  # the whole run on screen
        until(page.page, "Number(document.body.dataset.flame || 0) > 0", timeout=120)
        assert page.page.evaluate("flame.nodes.filter(n => n[0] === null).length") == 1
        assert page.page.evaluate("flame.nodes.reduce((s, n) => s + (n[4] || 0), 0)") < calls
        assert page.page.evaluate("flame.nodes.length") <= flames.MAX_NODES + 200
        assert "stacks cut deep down" in page.page.inner_text("#flame-info")
        page.page.focus("#timeline")
        since, until_ns = flame_of_the_window(
            page, lambda: [page.page.keyboard.press("w") for _ in range(20)]
        )
        assert 0 < roots_total(page) <= until_ns - since
        assert page.errors == []
