"""Self time: a function's active time less that of the recorded calls it made.

Stored calls get theirs from their children's rows (and from the summed
children they made themselves, ``call_aggregate.direct_ns``); summed calls
carry theirs from the recorder (``call_aggregate.self_ns``).  Whatever the
budget, self times partition the root call's active time.
"""

from __future__ import annotations

import json

import pytest
from scope.query.api import Recording

from scope.errors import QueryError

PROGRAM = """
import time

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def leaf():
    spin(0.0002)

def fib(n):
    leaf()
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def numbers(n):
    for i in range(n):
        leaf()
        yield i

def main():
    fib(7)
    sum(numbers(6))

main()
"""


@pytest.mark.parametrize("budget", [0, 3])
def test_self_times_partition_the_root_call(write, scope, project, budget):
    write("app.py", PROGRAM)
    result = scope("run", "--max-calls-per-function", str(budget), "app.py")
    assert result.returncode == 0, result.stderr
    with Recording(str(project / ".scope" / "scope.duckdb")) as recording:
        stats = {s.qualname: s for s in recording.function_stats()}
        by_self = [s.qualname for s in recording.function_stats(by="self")]
        (root_active,) = recording.con.execute(
            "SELECT duration_ns - suspended_ns FROM call WHERE parent IS NULL"
        ).fetchone()
        summed = recording.con.execute("SELECT count(*) FROM call_aggregate").fetchone()[0]
    assert (summed > 0) == (budget > 0)
    calls = sum(s.calls for s in stats.values())
    assert stats["fib"].calls == 41 and stats["leaf"].calls == 47 and stats["spin"].calls == 47
    # Each conversion from clock ticks rounds on its own: a nanosecond a call either way.
    assert abs(sum(s.self_ns for s in stats.values()) - root_active) <= 2 * calls
    assert stats["spin"].self_ns == pytest.approx(stats["spin"].total_ns, abs=2 * calls)
    leaf = stats["leaf"]
    assert leaf.self_ns == pytest.approx(leaf.total_ns - stats["spin"].total_ns, abs=2 * calls)
    for s in stats.values():
        assert 0 <= s.self_ns <= s.total_ns, s
    assert by_self[0] == "spin"
    assert by_self == sorted(by_self, key=lambda name: -stats[name].self_ns)


def test_functions_cannot_be_ordered_by_anything_else(write, scope, project):
    write("app.py", "def f():\n    pass\n\nf()\n")
    assert scope("run", "app.py").returncode == 0
    path = str(project / ".scope" / "scope.duckdb")
    with Recording(path) as recording, pytest.raises(QueryError, match="by total or self"):
        recording.function_stats(by="calls")


def test_scope_top_orders_by_total_or_self_time(write, scope):
    write("app.py", PROGRAM)
    assert scope("run", "app.py").returncode == 0
    by_self = json.loads(scope("top", "--by", "self", "--json").stdout)
    assert by_self[0]["qualname"] == "spin"
    assert [f["self_ns"] for f in by_self] == sorted((f["self_ns"] for f in by_self), reverse=True)
    by_total = json.loads(scope("top", "--limit", "2", "--json").stdout)
    assert [f["qualname"] for f in by_total] == ["fib", "main"]  # recursion counts each call
    table = scope("top", "--by", "self")
    assert table.returncode == 0 and "Most self time in run 1" in table.stdout
    wrong = scope("top", "--by", "calls")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
