"""The query API and its commands on recordings of a known program, with exact answers.

``programs/shop.py`` opens two accounts, deposits 100 into alice's and makes
the transfers its arguments name; a transfer larger than the balance raises
``ValueError`` in ``Account.withdraw``, which ``safe_transfer`` catches.  Run 1
transfers 30 then 500 (the second fails); run 2 transfers 30 then 50.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from scope.query import CallFilter, Recording
from scope.query.calls import parse_duration

from scope.errors import QueryError

SHOP = Path(__file__).parent / "programs" / "shop.py"


@pytest.fixture
def shop(project: Path, scope) -> Recording:
    """The recording of two runs of the shop, at args level (the fixture closes it)."""
    shutil.copy(SHOP, project / "shop.py")
    for amounts in (("30", "500"), ("30", "50")):
        result = scope("run", "--level", "args", "shop.py", *amounts)
        assert result.returncode == 0, result.stderr
    recording = Recording(str(project / ".scope" / "scope.duckdb"))
    yield recording
    recording.close()


ACCOUNT_CALLS = ["Account.__init__"] * 2 + ["Account.deposit"] * 2 + ["Account.withdraw"] * 2
WITHDRAWAL_PATH = ["main", "safe_transfer", "transfer", "Account.withdraw"]


def names(calls) -> list[str]:
    return [c.qualname for c in calls]


def test_calls_are_listed_in_the_order_they_began(shop):
    found = shop.calls(run=1)
    assert found.matched == 11 and found.summed == 0
    assert names(found.calls) == [
        "main",
        "Account.__init__",
        "Account.__init__",
        "Account.deposit",
        "safe_transfer",
        "transfer",
        "Account.withdraw",
        "Account.deposit",
        "safe_transfer",
        "transfer",
        "Account.withdraw",
    ]
    deposit = found.calls[3]
    assert deposit.arguments[1:] == ["amount=100"] and deposit.returned == "100"
    assert deposit.arguments[0].startswith("self=<Account at 0x")


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (CallFilter(function="deposit"), ["Account.deposit"] * 2),
        (CallFilter(function="Account.*"), ACCOUNT_CALLS),
        (CallFilter(function="__main__.transfer"), ["transfer"] * 2),
        (CallFilter(module="__main__", function="safe_*"), ["safe_transfer"] * 2),
        (CallFilter(module="nothing"), []),
        (CallFilter(argument="amount=500"), ["safe_transfer", "transfer", "Account.withdraw"]),
        (CallFilter(argument="'bob'"), ["Account.__init__"]),
        (CallFilter(returned="None", function="safe"), ["safe_transfer"]),
        (CallFilter(outcome="raised"), ["transfer", "Account.withdraw"]),
        (CallFilter(outcome="unfinished"), []),
        (CallFilter(thread=1, function="main"), ["main"]),
        (CallFilter(thread=2), []),
    ],
)
def test_filters_keep_exactly_the_calls_they_name(shop, where, expected):
    found = shop.calls(where, run=1)
    assert sorted(names(found.calls)) == sorted(expected)
    assert found.matched == len(expected)


def test_duration_bounds_slowest_first_and_limits(shop):
    every = shop.calls(run=1).calls
    durations = sorted(c.duration_ns for c in every)
    middle = durations[5]
    slow = shop.calls(CallFilter(min_ns=middle), run=1)
    fast = shop.calls(CallFilter(max_ns=middle), run=1)
    assert slow.matched == sum(d >= middle for d in durations)
    assert fast.matched == sum(d <= middle for d in durations)
    top = shop.calls(run=1, slowest=True, limit=3)
    assert [c.duration_ns for c in top.calls] == durations[::-1][:3]
    assert top.matched == 11 and names(top.calls)[0] == "main"


def test_since_and_until_keep_the_calls_running_in_the_window(shop, scope):
    every = shop.calls(run=1).calls
    row = shop.con.execute("SELECT start_ns FROM run WHERE id = 1").fetchone()
    assert row is not None
    began = row[0]
    at = every[4].start_ns - began  # a call after the accounts were opened
    ended = {c.id: c.start_ns + c.duration_ns - began for c in every}
    since = shop.calls(CallFilter(since_ns=at), run=1).calls
    assert {c.id for c in since} == {c.id for c in every if ended[c.id] >= at}
    assert "main" in names(since) and "Account.__init__" not in names(since)
    until = shop.calls(CallFilter(until_ns=at), run=1).calls
    assert {c.id for c in until} == {c.id for c in every if c.start_ns - began <= at}
    listed = scope("calls", "--run", "1", "--since", f"{at}ns", "--until", f"{at}ns", "--json")
    assert listed.returncode == 0, listed.stderr
    running = {c.id for c in since} & {c.id for c in until}
    assert {c["id"] for c in json.loads(listed.stdout)["calls"]} == running
    with pytest.raises(QueryError, match="--since is later than --until"):
        shop.calls(CallFilter(since_ns=2, until_ns=1), run=1)


def test_a_process_filter_keeps_that_process_and_no_other(shop):
    (pid,) = shop.con.execute("SELECT pid FROM process WHERE run = 1").fetchone()
    assert shop.calls(CallFilter(pid=pid), run=1).matched == 11
    assert shop.calls(CallFilter(pid=pid + 1), run=1).matched == 0


@pytest.mark.parametrize(
    ("text", "ns"), [("250ms", 250_000_000), ("1.5s", 1_500_000_000), ("40us", 40_000),
                     ("40µs", 40_000), ("900ns", 900), ("2", 2_000_000_000), (".5ms", 500_000),
                     ("2min", 120_000_000_000), ("1h", 3_600_000_000_000)]
)  # fmt: skip
def test_durations_read_like_people_write_them(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "fast", "10 parsecs", "-1s", "1e3s"])
def test_what_is_not_a_duration_is_refused(text):
    with pytest.raises(QueryError, match="not a duration"):
        parse_duration(text)


def test_the_path_to_a_call_is_every_call_open_when_it_began(shop):
    failed = shop.calls(CallFilter(function="withdraw", outcome="raised"), run=1).calls[0]
    path = shop.path_to(failed.id, run=1)
    assert names(path) == WITHDRAWAL_PATH
    assert [n.depth for n in path] == [0, 1, 2, 3]
    with pytest.raises(QueryError, match="no call 12345"):
        shop.path_to(12345, run=1)


def test_an_exception_is_followed_from_where_it_was_raised_to_where_it_was_caught(shop):
    (exc,) = shop.exceptions(run=1)
    assert exc.type == "ValueError" and exc.summary == "ValueError('insufficient funds')"
    assert exc.raised_in.qualname == "Account.withdraw"
    assert names(exc.left) == ["Account.withdraw", "transfer"]
    assert exc.caught_in is not None and exc.caught_in.qualname == "safe_transfer"
    assert not exc.uncaught
    assert shop.exceptions(run=2) == []
    assert shop.exceptions(run=1, type="Key*") == []
    assert len(shop.exceptions(run=1, type="value")) == 1


def test_an_uncaught_exception_is_said_to_have_ended_the_program(write, scope, project):
    write(
        "app.py", "def inner():\n    raise KeyError('k')\n\ndef outer():\n    inner()\n\nouter()\n"
    )
    assert scope("run", "app.py").returncode == 1
    with Recording(str(project / ".scope" / "scope.duckdb")) as recording:
        (exc,) = recording.exceptions()
    assert names(exc.left) == ["inner", "outer"] and exc.caught_in is None and exc.uncaught


def test_attribute_history_is_every_write_in_order(shop):
    writes = shop.history(run=1)
    assert [(w.qualname, w.attribute, w.value) for w in writes] == [
        ("Account.__init__", "owner", "'alice'"),
        ("Account.__init__", "balance", "0"),
        ("Account.__init__", "owner", "'bob'"),
        ("Account.__init__", "balance", "0"),
        ("Account.deposit", "balance", "100"),
        ("Account.withdraw", "balance", "70"),
        ("Account.deposit", "balance", "30"),
    ]
    alice = writes[0].object_id
    assert alice is not None and writes[0].object_type == "Account"
    mine = shop.history(object_id=alice, attribute="balance", run=1)
    assert [w.value for w in mine] == ["0", "100", "70"]
    assert shop.history(owner_type="Nothing", run=1) == []


def test_two_runs_differ_in_counts_exceptions_and_return_values(shop):
    diff = shop.diff("1", "2")
    assert [(c.function, c.before, c.after) for c in diff.calls] == [
        ("__main__.Account.deposit", 2, 3)
    ]
    assert [(e.type, e.raised_in, e.before, e.after) for e in diff.exceptions] == [
        ("ValueError", "__main__.Account.withdraw", 1, 0)
    ]
    returns = {r.function: (r.only_before, r.only_after) for r in diff.returns}
    assert returns == {
        "__main__.Account.deposit": ([], ["80"]),
        "__main__.Account.withdraw": ([], ["20"]),
        "__main__.safe_transfer": (["None"], ["80"]),
        "__main__.transfer": ([], ["80"]),
    }
    assert shop.diff("1", "1").same
    with pytest.raises(QueryError, match="no run 9"):
        shop.diff("1", "9")


def test_sql_answers_and_its_errors_are_duckdbs(shop):
    answer = shop.sql("SELECT run, count(*) AS calls FROM call GROUP BY run ORDER BY run")
    assert answer.columns == ["run", "calls"] and answer.rows == [(1, 11), (2, 12)]
    with pytest.raises(QueryError, match="Table with name nope does not exist"):
        shop.sql("SELECT * FROM nope")
    with pytest.raises(QueryError, match="read-only"):
        shop.sql("DELETE FROM call")


def test_the_commands_answer_as_the_api_does(shop, scope):
    listed = json.loads(scope("calls", "--run", "1", "--arg", "amount=500", "--json").stdout)
    assert [c["qualname"] for c in listed["calls"]] == [
        "safe_transfer",
        "transfer",
        "Account.withdraw",
    ]
    failed = listed["calls"][2]["id"]
    path = json.loads(scope("path", str(failed), "--run", "1", "--json").stdout)
    assert [n["qualname"] for n in path] == [
        "main",
        "safe_transfer",
        "transfer",
        "Account.withdraw",
    ]
    (exc,) = json.loads(scope("exceptions", "--all", "--run", "1", "--json").stdout)
    assert exc["caught_in"]["qualname"] == "safe_transfer"
    writes = json.loads(scope("history", "--attribute", "balance", "--json").stdout)
    assert [w["value"] for w in writes] == ["0", "0", "100", "70", "30", "20", "80"]
    diff = json.loads(scope("diff", "1", "2", "--json").stdout)
    assert diff["calls"] == [{"function": "__main__.Account.deposit", "before": 2, "after": 3}]
    rows = json.loads(scope("sql", "SELECT count(*) AS n FROM call WHERE run = 2", "--json").stdout)
    assert rows == [{"n": 12}]
    slow = json.loads(scope("calls", "--slower-than", "1h", "--json").stdout)
    assert slow["matched"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("calls", "--faster-than", "soon"), "not a duration"),
        (("history", "zz"), "not an object id"),
        (("calls", "--outcome", "exploded"), "'exploded' is not one of"),
    ],
)
def test_bad_options_are_usage_errors(shop, scope, args, message):
    result = scope(*args)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("path", "12345"), "no call 12345"),
        (("diff", "1", "7"), "no run 7"),
        (("calls", "--test", "test_nothing"), "no test 'test_nothing'"),
        (("sql", "SELEC 1"), "Parser Error"),
    ],
)
def test_questions_without_answers_are_one_line_errors(shop, scope, args, message):
    result = scope(*args)
    assert result.returncode == 1 and message in result.stderr
    assert result.stderr.startswith("scope: error:") and "Traceback" not in result.stderr


def test_every_query_command_has_help_with_examples(scope):
    commands = ("runs", "status", "calls", "top", "tree", "path", "exceptions", "history")
    commands += ("diff", "sql", "export", "view", "combine", "tests", "test", "plan", "run")
    for command in commands:
        shown = scope(command, "--help")
        assert shown.returncode == 0 and "Examples:" in shown.stdout, command


def test_objects_returned_compare_by_type_not_address(write, scope, project):
    write("app.py", "class Box:\n    pass\n\ndef make():\n    return Box()\n\nkeep = make()\n")
    for _ in range(2):
        assert scope("run", "--level", "args", "app.py").returncode == 0
    with Recording(str(project / ".scope" / "scope.duckdb")) as recording:
        returned = recording.sql("SELECT value FROM value WHERE role = 'return'").rows
        assert len(returned) == 2 and all(v.startswith("<Box at 0x") for (v,) in returned)
        assert recording.diff("1", "2").same
