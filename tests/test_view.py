"""``scope view``: the page, opened in a real headless browser, draws every section.

Chromium runs the page's script and prints the resulting DOM (``--dump-dom``);
each section records on its element how much it drew, and script errors land
in ``#errors``.  CI installs Debian's chromium and sets
SCOPE_TEST_REQUIRE_BROWSER=1, so there these tests cannot be skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from tests.conftest import unavailable

REQUIRE_BROWSER = "SCOPE_TEST_REQUIRE_BROWSER"

PROGRAM = """
import sys
import threading

def leaf(i):
    return i * 2

def loop(n):
    return sum(leaf(i) for i in range(n))

def fails():
    raise KeyError("missing")

def guarded():
    try:
        fails()
    except KeyError:
        return None

def main():
    t = threading.Thread(target=loop, args=(50,), name="worker")
    t.start()
    loop(100)
    guarded()
    t.join()

main()
"""


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    unavailable("no chromium to open the page (apt-get install chromium)", REQUIRE_BROWSER)
    raise AssertionError("unreachable")


def rendered(page: Path) -> str:
    """The page's DOM once its script has run, as headless chromium sees it."""
    result = subprocess.run(
        [browser(), "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom",
         "--user-data-dir=" + str(page.parent / "chromium-profile"), page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def drawn(dom: str, section: str) -> int:
    match = re.search(rf'id="{section}"[^>]*data-drawn="(\d+)"', dom)
    assert match, f"section {section} drew nothing"
    return int(match.group(1))


@pytest.fixture
def page(write, scope, project) -> Path:
    write("app.py", PROGRAM)
    assert scope("run", "app.py", "</script><b>argv").returncode == 0
    result = scope("view", "-o", "view.html")
    assert result.returncode == 0, result.stderr
    assert "view.html" in result.stdout
    return project / "view.html"


def counts(project: Path) -> tuple[int, int]:
    con = duckdb.connect(str(project / ".scope" / "scope.duckdb"), read_only=True)
    try:
        calls = con.execute("SELECT count(*) FROM call").fetchone()
        functions = con.execute("SELECT count(*) FROM function").fetchone()
    finally:
        con.close()
    assert calls and functions
    return int(calls[0]), int(functions[0])


def test_the_page_draws_timeline_tree_exceptions_and_top_functions(page, project):
    calls, functions = counts(project)
    dom = rendered(page)
    assert 'data-ready="yes"' in dom
    assert re.search(r'<div id="errors"></div>', dom), "the page's script failed"
    assert drawn(dom, "timeline") == calls
    assert dom.count('class="bar ') == calls
    assert "MainThread (" in dom and "worker (" in dom
    # The loops fold: leaf's 100 calls are one line of the tree, which so draws
    # more than the root but fewer lines than there are calls.
    assert "× 100 similar calls" in dom
    assert 1 < drawn(dom, "tree") < calls
    assert drawn(dom, "exceptions") == 1 and '"raised-text">KeyError<' in dom
    assert "caught in __main__.guarded" in dom
    assert drawn(dom, "top") == functions


def test_the_page_needs_nothing_from_the_network(page):
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "default-src 'none'" in text
    # The program's arguments cannot end the data's script element early.
    assert "</script><b>argv" not in text


def test_a_long_run_is_cut_to_its_first_calls(write, scope, project):
    write("app.py", PROGRAM)
    assert scope("run", "app.py").returncode == 0
    assert scope("view", "-o", "cut.html", "--max-calls", "10").returncode == 0
    dom = rendered(project / "cut.html")
    assert drawn(dom, "timeline") == 10 and "The first 10 of" in dom


def test_view_errors_are_one_line(write, scope, project):
    write("app.py", "pass\n")
    assert scope("run", "app.py").returncode == 0
    (project / "taken.html").mkdir()
    result = scope("view", "-o", "taken.html")
    assert result.returncode == 1 and result.stderr.startswith("scope: error: cannot write")
    assert scope("view", "--run", "5").stderr.startswith("scope: error: no run 5")
