"""``scope view``'s page in a real browser: Debian's chromium, driven by Playwright.

A program with two threads and a caught exception is recorded at the args
level; the viewer's server serves it from this process, and the page is
loaded, zoomed, panned, searched and clicked as a user would.  Every request
the page makes is watched: none may leave 127.0.0.1, and none may lack the
session's token.  CI installs chromium (``.ci/run``) and sets
``SCOPE_TEST_REQUIRE_BROWSER``, so there a missing browser fails the test.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from scope.query.api import Recording
from scope.query.viewer.server import ViewServer

from .conftest import clean_env, unavailable, wait_for_service_to_leave
from .viewing import record, serving

#: the page's script in chromium: the server it talks to is tested on every version
#: (tests/test_view_server.py)
pytestmark = pytest.mark.matrix_once

REQUIRE_BROWSER = "SCOPE_TEST_REQUIRE_BROWSER"

PROGRAM = """
import threading

def leaf(i):
    return i

def fib(n):
    leaf(n)
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def risky(x):
    if x > 3:
        raise ValueError(f"too big: {x}")
    return x

def guarded(x):
    try:
        return risky(x)
    except ValueError:
        return -1

def worker():
    fib(9)

def main():
    helper = threading.Thread(target=worker, name="helper")
    helper.start()
    fib(11)
    print([guarded(i) for i in range(6)])
    helper.join()

main()
"""


def chromium() -> str:
    """Debian's chromium (Playwright downloads no browser of its own here)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    unavailable("no chromium to open the page (apt-get install chromium)", REQUIRE_BROWSER)
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    path = record(tmp_path_factory.mktemp("browsed"), PROGRAM, "--level", "args")
    with Recording(str(path)) as opened:
        yield opened


@pytest.fixture(scope="module")
def server(recording: Recording) -> Iterator[ViewServer]:
    with serving(recording) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


def until(page: Any, condition: str, timeout: float = 20.0) -> None:
    """Wait until the JavaScript expression ``condition`` holds in the page.

    Asked from here, not with ``wait_for_function``, whose polling evaluates text
    inside the page: the page's policy forbids that (no 'unsafe-eval')."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"the page never got to: {condition}")
        time.sleep(0.02)


class Watched:
    """A page, and every URL it asked for."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.requests: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def loaded(self) -> int:
        """How many windows the page has drawn so far."""
        return int(self.page.evaluate("Number(document.body.dataset.loaded || 0)"))

    def after(self, action: Any) -> None:
        """Do ``action``, then wait until the page has drawn the window it asked for."""
        before = self.loaded()
        action()
        until(self.page, f"Number(document.body.dataset.loaded || 0) > {before}")

    def window(self) -> tuple[float, float]:
        since, until = self.page.evaluate("[state.since, state.until]")
        return float(since), float(until)


#: the page has drawn its first window
LOADED = "Number(document.body.dataset.loaded || 0) > 0"


@contextlib.contextmanager
def opened(
    browser: Any,
    url: str,
    viewport: tuple[int, int],
    ready: str = LOADED,
    timeout: float = 20.0,
) -> Iterator[Watched]:
    """``url`` in a page of its own, ``viewport`` (width, height) large, once the
    JavaScript ``ready`` holds in it; its browser context closed after."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    try:
        page = Watched(context.new_page())
        page.page.goto(url)
        until(page.page, ready, timeout)
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, server: ViewServer) -> Iterator[Watched]:
    with opened(browser, server.url, (1200, 700)) as watched:
        until(watched.page, "document.body.dataset.ready === '1'")  # the panels too
        yield watched
        origin = f"http://127.0.0.1:{server.port}/{server.token}/"
        assert watched.requests and all(url.startswith(origin) for url in watched.requests), (
            watched.requests
        )
        assert all(urlsplit(url).hostname == "127.0.0.1" for url in watched.requests)
        assert watched.errors == []


def test_the_page_draws_both_threads_of_the_run(page: Watched, recording: Recording) -> None:
    title = page.page.inner_text("#title")
    assert title.startswith("run 1:") and "app.py" in title
    lanes = page.page.evaluate("state.lanes.map(l => l.name)")
    assert sorted(lanes) == ["MainThread", "helper"]
    drawn = page.page.evaluate("state.calls.length + state.blocks.reduce((n, b) => n + b[4], 0)")
    [(calls,)] = recording.con.execute("SELECT count(*) FROM call").fetchall()
    assert drawn == calls
    assert "calls drawn" in page.page.inner_text("#status")


def test_keys_and_the_wheel_zoom_and_pan(page: Watched) -> None:
    since, until = page.window()
    page.page.focus("#timeline")
    page.after(lambda: [page.page.keyboard.press("w") for _ in range(5)])
    zoomed = page.window()
    assert zoomed[1] - zoomed[0] < (until - since) * 0.5
    page.after(lambda: page.page.keyboard.press("d"))
    panned = page.window()
    assert panned[0] > zoomed[0]
    assert panned[1] - panned[0] == pytest.approx(zoomed[1] - zoomed[0])
    box = page.page.locator("#timeline").bounding_box()
    page.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 50)
    page.after(lambda: page.page.mouse.wheel(0, 400))
    wider = page.window()
    assert wider[1] - wider[0] > panned[1] - panned[0]
    page.after(lambda: page.page.keyboard.press("0"))
    assert page.window() == (since, until)


def test_dragging_pans(page: Watched) -> None:
    page.page.focus("#timeline")
    page.after(lambda: [page.page.keyboard.press("w") for _ in range(4)])
    page.after(lambda: page.page.keyboard.press("d"))
    before = page.window()
    box = page.page.locator("#timeline").bounding_box()
    y = box["y"] + 8  # the first lane's title: always on screen

    def drag() -> None:
        page.page.mouse.move(box["x"] + 600, y)
        page.page.mouse.down()
        page.page.mouse.move(box["x"] + 900, y, steps=5)
        page.page.mouse.up()

    page.after(drag)
    after = page.window()
    assert after[0] < before[0]  # dragged to the right: earlier times come into view


def test_clicking_a_call_shows_its_details_and_path(page: Watched) -> None:
    target = page.page.evaluate(
        """(() => {
            const hit = state.drawn.find(d => state.functions[d[4][4]] === '__main__.fib'
                                            && d[2] - d[0] > 4);
            return hit && [(hit[0] + hit[2]) / 2, (hit[1] + hit[3]) / 2];
        })()"""
    )
    assert target, "no fib call wide enough to click"
    box = page.page.locator("#timeline").bounding_box()
    page.page.mouse.click(box["x"] + target[0], box["y"] + target[1])
    page.page.wait_for_selector("#details:not([hidden])")
    until(page.page, "document.querySelector('#details-path li') !== null")
    assert page.page.inner_text("#details-name") == "__main__.fib"
    facts = page.page.inner_text("#details-facts")
    assert "app.py:7" in facts and "pid" in facts and "returned" in facts
    path = page.page.locator("#details-path li").all_inner_texts()
    assert path[0].startswith("__main__.main") or path[0].startswith("__main__.worker")
    assert path[-1].startswith("__main__.fib")
    values = page.page.inner_text("#details-values")
    assert "argument n" in values and "return" in values


def test_search_highlights_and_steps_to_a_raised_call(page: Watched) -> None:
    page.page.fill("#search", "risky")
    until(page.page, "document.querySelector('#matches').textContent !== ''")
    assert page.page.inner_text("#matches") == "1 functions"
    page.page.focus("#search")
    for _ in range(5):  # risky(0) .. risky(4): the fifth is the first that raised
        page.after(lambda: page.page.keyboard.press("Enter"))
        until(page.page, "document.querySelector('#details-name').textContent !== ''")
    until(page.page, "document.querySelector('#details-facts').textContent.includes('raised')")
    assert page.page.inner_text("#details-name") == "__main__.risky"
    values = page.page.inner_text("#details-values")
    assert "ValueError" in values


def test_a_request_without_the_token_is_refused(browser: Any, server: ViewServer) -> None:
    context = browser.new_context()
    tab = context.new_page()
    response = tab.goto(f"http://127.0.0.1:{server.port}/")
    assert response is not None and response.status == 403
    wrong = server.token[:-1] + ("x" if server.token[-1] != "x" else "y")
    response = tab.goto(f"http://127.0.0.1:{server.port}/{wrong}/api/run")
    assert response is not None and response.status == 403
    context.close()


def test_the_page_loads_nothing_from_anywhere_else(page: Watched, server: ViewServer) -> None:
    # The policy forbids it even if the page tried: a fetch elsewhere is blocked.
    blocked = page.page.evaluate(
        """fetch('https://example.com/x').then(() => 'fetched', e => 'blocked: ' + e.message)"""
    )
    assert blocked.startswith("blocked")
    page.requests[:] = [url for url in page.requests if "example.com" not in url]


def test_static_files_are_in_the_package() -> None:
    from scope.query.viewer.server import STATIC

    assert {p.name for p in Path(STATIC).iterdir()} >= {"index.html", "view.js", "view.css"}


def test_exceptions_are_grouped_and_lead_to_where_they_were_raised(page: Watched) -> None:
    page.page.click('#tabs button[data-tab="exceptions"]')
    rows = page.page.locator("#panel-exceptions tr[data-call]")
    assert rows.count() == 1  # risky(4) and risky(5): one kind, twice
    text = rows.first.inner_text()
    assert "2×" in text and "ValueError" in text and "risky" in text and "guarded" in text
    page.after(lambda: rows.first.click())
    until(page.page, "document.querySelector('#details-name').textContent === '__main__.risky'")
    until(page.page, "document.querySelector('#details-facts').textContent.includes('raised')")
    since, until_ns = page.window()
    assert until_ns - since < page.page.evaluate("state.span") / 10


def test_top_functions_are_listed(page: Watched) -> None:
    page.page.click('#tabs button[data-tab="top"]')
    names = page.page.locator("#panel-top tbody tr td:first-child").all_inner_texts()
    assert "__main__.fib" in names and "__main__.leaf" in names
    assert page.page.locator('#tabs button[data-tab="tests"]').is_hidden()


SUITE = {
    "calc.py": "def add(a, b):\n    return a + b\n\ndef div(a, b):\n    return a / b\n",
    "tests/test_calc.py": (
        "import calc\n\n"
        "def test_add():\n    assert calc.add(1, 2) == 3\n\n"
        "def test_div():\n    assert calc.div(1, 0) == 0\n\n"
        "def test_more():\n    assert calc.add(2, 2) == 4\n"
    ),
}


@pytest.fixture(scope="module")
def suite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewServer]:
    project = tmp_path_factory.mktemp("suite")
    (project / "pyproject.toml").write_text("[project]\nname = 'suite'\n")
    for name, text in SUITE.items():
        (project / name).parent.mkdir(exist_ok=True)
        (project / name).write_text(text)
    subprocess.run(
        [sys.executable, "-m", "pytest", "--scope", "-p", "no:cacheprovider", "-q"],
        cwd=project,
        env=clean_env(),
        capture_output=True,
    )
    wait_for_service_to_leave(project)
    path = project / ".scope" / "scope.duckdb"
    with Recording(str(path)) as recording, serving(recording) as running:
        yield running


def test_a_test_session_lists_failing_tests_first_and_zooms_to_one(
    browser: Any, suite_server: ViewServer
) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 700})
    page = Watched(context.new_page())
    page.page.goto(suite_server.url)
    until(page.page, "document.body.dataset.ready === '1'")
    rows = page.page.locator("#panel-tests tbody tr")
    nodeids = [rows.nth(i).get_attribute("data-nodeid") for i in range(rows.count())]
    assert nodeids == [
        "tests/test_calc.py::test_div",
        "tests/test_calc.py::test_add",
        "tests/test_calc.py::test_more",
    ]
    assert "failed" in rows.first.inner_text()
    page.after(lambda: rows.first.click())
    until(page.page, "document.querySelector('#details-name').textContent !== ''")
    since, until_ns = page.window()
    assert until_ns - since < page.page.evaluate("state.span") / 2
    assert "test_div" in page.page.inner_text("#details-name")
    assert page.errors == []
    context.close()


PROCESSES = """
import multiprocessing, threading

def leaf(i):
    return i * i

def work(n):
    return sum(leaf(i) for i in range(n))

def threaded(n):
    helpers = [threading.Thread(target=work, args=(n,), name=f"helper-{i}") for i in range(2)]
    for helper in helpers:
        helper.start()
    work(n)
    for helper in helpers:
        helper.join()

if __name__ == "__main__":
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=threaded, args=(20,)) for _ in range(2)]
    for child in children:
        child.start()
    threaded(30)
    for child in children:
        child.join()
"""


def test_a_run_of_three_processes_has_a_lane_per_thread_named_with_its_pid(
    browser: Any, tmp_path: Path
) -> None:
    with Recording(str(record(tmp_path, PROCESSES))) as recording, serving(recording) as running:
        pids = {pid for (pid,) in recording.con.execute("SELECT pid FROM process").fetchall()}
        with opened(browser, running.url, (1200, 900)) as page:
            lanes = page.page.evaluate("state.lanes")
            assert len(pids) == 3
            assert {lane["pid"] for lane in lanes} == pids
            # Each process: its main thread and two helpers, each a lane of its own.
            assert len(lanes) == 9
            assert sorted(lane["name"] for lane in lanes).count("MainThread") == 3
            shown = page.page.evaluate(
                "new Set([...state.calls.map(c => c[0]), ...state.blocks.map(b => b[0])]).size"
            )
            assert shown == 9  # every lane has calls on screen, drawn or merged
            assert page.errors == []


def test_a_step_of_the_path_clicked_is_the_call_outlined(page: Watched) -> None:
    target = page.page.evaluate(
        """(() => {
            const hit = state.drawn.find(d => d[4][3] > 0 && d[2] - d[0] > 4);
            return hit && [(hit[0] + hit[2]) / 2, (hit[1] + hit[3]) / 2];
        })()"""
    )
    assert target, "no call under a root wide enough to click"
    box = page.page.locator("#timeline").bounding_box()
    page.page.mouse.click(box["x"] + target[0], box["y"] + target[1])
    until(page.page, "document.querySelector('#details-path li a') !== null")
    page.after(lambda: page.page.locator("#details-path li a").first.click())
    # The root, now selected, is outlined: what is selected is a drawn call's id.
    until(page.page, "state.drawn.some(d => d[4][5] === state.selected)")


@pytest.fixture(scope="session")
def ten_million(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int]:
    """query_speed.py's recording (a root, 100 batches of 100,000 calls, a recursion
    1,000 calls deep), built once a session: its path and how many calls it holds."""
    from benchmarks.query_speed import BATCH, build

    path = str(tmp_path_factory.mktemp("ten-million") / "ten-million.duckdb")
    return path, build(path, 10_000_000 // BATCH)


@pytest.mark.slow
def test_ten_million_calls_draw_whole_and_zoom(browser: Any, ten_million: tuple[str, int]) -> None:
    path, calls = ten_million
    with (
        Recording(path) as recording,
        serving(recording) as running,
        opened(
            browser,
            running.url,
            (1500, 800),
            timeout=60,
        ) as page,
    ):
        # Every call of the run is on screen, drawn or counted in a block.
        shown = page.page.evaluate(
            "state.calls.length + state.blocks.reduce((n, b) => n + b[4], 0)"
        )
        assert shown == calls > 10_000_000
        assert page.page.evaluate("state.calls.length") < 5_000  # bounded by the screen
        page.page.focus("#timeline")
        for _ in range(3):
            page.after(lambda: [page.page.keyboard.press("w") for _ in range(10)])
        since, until_ns = page.window()
        assert until_ns - since < page.page.evaluate("state.span") / 100
        assert page.page.evaluate("state.calls.length") > 0
        assert page.errors == []


DEEP_LANES = """
import threading
import time

def down(n):
    if n == 0:
        time.sleep(0.02)  # each lane's calls a twelfth of the run: wide enough to draw
        return 0
    return down(n - 1) + 1

def work():
    down(40)

threads = [threading.Thread(target=work, name=f"lane-{i}") for i in range(12)]
for thread in threads:
    thread.start()
    thread.join()
"""

#: the canvas's backing store, and the largest the visible box allows
CANVAS_AND_BOX = """(() => {
    const ratio = window.devicePixelRatio || 1;
    const box = document.getElementById("timeline-scroll");
    return [canvas.width * canvas.height,
            Math.ceil(box.clientWidth * ratio) * Math.ceil(box.clientHeight * ratio),
            box.scrollHeight];
})()"""


def test_the_canvas_is_the_visible_box_and_lower_lanes_scroll_into_it(
    browser: Any, tmp_path: Path
) -> None:
    # Twelve lanes 41 calls deep: some 8,000 pixels of rows, in a box of a few hundred.
    with (
        Recording(str(record(tmp_path, DEEP_LANES))) as recording,
        serving(recording) as running,
        opened(browser, running.url, (1200, 700)) as page,
    ):
        pixels, box, scrolled = page.page.evaluate(CANVAS_AND_BOX)
        assert scrolled > 12 * 41 * 16  # every lane at full depth can be scrolled to
        assert pixels <= box
        last = page.page.evaluate("state.lanes[state.lanes.length - 1].thread")
        lowest = f"state.drawn.filter(d => d[4][0] === {last} && d[2] - d[0] > 4)"
        assert page.page.evaluate(f"{lowest}.length") == 0  # below the box at first
        page.page.evaluate("document.getElementById('timeline-scroll').scrollTop = 1e9")
        until(page.page, f"{lowest}.length > 0")
        pixels, box, _ = page.page.evaluate(CANVAS_AND_BOX)
        assert pixels <= box
        target = page.page.evaluate(
            f"""(() => {{
                    const d = {lowest}.sort((a, b) => b[4][3] - a[4][3])[0];
                    return [(d[0] + d[2]) / 2, (d[1] + d[3]) / 2, d[4][3]];
                }})()"""
        )
        assert target[2] > 20  # deep in the lowest lane
        canvas = page.page.locator("#timeline").bounding_box()
        page.page.mouse.click(canvas["x"] + target[0], canvas["y"] + target[1])
        page.page.wait_for_selector("#details:not([hidden])")
        until(page.page, "document.querySelector('#details-path li') !== null")
        assert page.page.inner_text("#details-name") == "__main__.down"
        assert "lane-11" in page.page.inner_text("#details-facts")
        assert len(page.page.locator("#details-path li").all_inner_texts()) == target[2] + 1
        # A call selected elsewhere (a search's step, a path's link) is scrolled to.
        page.page.evaluate("scroller.scrollTop = 0")
        until(page.page, f"{lowest}.length === 0")
        page.page.evaluate(f"select(state.calls.find(c => c[0] === {last} && c[3] > 20)[5])")
        until(page.page, "scroller.scrollTop > 0")
        until(page.page, "state.drawn.some(d => d[4][5] === state.selected)")
        assert page.errors == []
