"""``scope tree --limit N`` shows N lines: folded runs of calls and the calls below
``--depth`` count as the lines they take, not as the calls they stand for; a pytest
session's roots say which phase of a test they are."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "calc.py"
CALL_LINE = re.compile(r"#[\d:]+$")


def call_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if CALL_LINE.search(line)]


def test_the_readme_tree_reaches_fib(project, scope):  # type: ignore[no-untyped-def]
    shutil.copy(EXAMPLE, project / "calc.py")
    assert scope("run", "calc.py").returncode == 0
    shown = scope("tree", "--depth", "3", "--limit", "40")
    assert shown.returncode == 0, shown.stderr
    lines = call_lines(shown.stdout)
    assert 0 < len(lines) <= 40
    assert any(" fib " in line for line in lines)
    assert "more calls (raise --limit)" not in shown.stdout  # every call is counted
    below = sum(
        int(n.replace(",", "")) for n in re.findall(r"… ([\d,]+) more calls? below", shown.stdout)
    )
    similar = re.findall(r"× ([\d,]+) similar calls", shown.stdout)
    assert below > 1000 and similar


def test_the_limit_counts_the_lines_shown(project, scope):  # type: ignore[no-untyped-def]
    shutil.copy(EXAMPLE, project / "calc.py")
    assert scope("run", "calc.py").returncode == 0
    for limit in (1, 7, 25, 60):
        shown = scope("tree", "--limit", str(limit))
        assert len(call_lines(shown.stdout)) == limit, shown.stdout
        more = re.search(r"… ([\d,]+) more calls \(raise --limit\)", shown.stdout)
        title = re.search(r"Run 1: ([\d,]+) of ([\d,]+) calls", shown.stdout)
        assert more and title
        stood_for, total = (int(n.replace(",", "")) for n in title.groups())
        assert stood_for + int(more.group(1).replace(",", "")) == total


def test_a_test_sessions_roots_say_their_phase(project, write, python, scope):  # type: ignore[no-untyped-def]
    write(
        "test_phases.py",
        """
        import pytest

        def helper():
            return 1

        @pytest.fixture
        def value():
            yield helper()
            helper()

        def test_uses(value):
            assert helper() == value
        """,
    )
    result = python("-m", "pytest", "--scope", "-p", "no:cacheprovider", "-q", "test_phases.py")
    assert result.returncode == 0, result.stdout + result.stderr
    tree = scope("tree").stdout
    phases = re.findall(r"test_uses \[(setup|call|teardown)\]", tree)
    assert phases == ["setup", "call", "teardown"], tree
