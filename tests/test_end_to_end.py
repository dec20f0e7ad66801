"""End to end: record programs in a subprocess and check what was stored and what they did.

The strongest checks here are differential: the same program under plain
``python`` and under ``python -m scope run`` must print the same output, exit
with the same status and show the same tracebacks; and the calls scope stores
must be the calls a reference ``sys.setprofile`` tracer sees.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .conftest import clean_env
from .reference import reference_calls, stored_calls

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "calc.py"

FIB = """
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    print(fib(15))
"""


def test_fib_15_is_1973_calls_with_correct_parents_and_depths(write, scope, query):
    write("fib.py", FIB)
    result = scope("run", "fib.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "610\n"
    assert query("SELECT count(*) FROM call") == [(1973,)]
    # One root, at depth 0, with no parent.
    assert query("SELECT count(*), min(depth), max(depth) FROM call WHERE parent IS NULL") == [
        (1, 0, 0)
    ]
    # Every other call hangs under a call that exists, one level deeper.
    assert query(
        """SELECT count(*) FROM call c JOIN call p ON p.id = c.parent AND p.run = c.run
           WHERE c.depth = p.depth + 1 AND c.thread = p.thread"""
    ) == [(1972,)]
    # fib(n >= 2) makes exactly two calls; 610 leaves make none; the deepest is fib(1) at 14.
    children = query(
        """SELECT n, count(*) FROM (
               SELECT p.id, count(c.id) AS n FROM call p LEFT JOIN call c ON c.parent = p.id
               GROUP BY p.id) GROUP BY n ORDER BY n"""
    )
    assert children == [(0, 987), (2, 986)]
    assert query("SELECT max(depth) FROM call") == [(14,)]
    # Each subtree is the preorder interval [id, end_id] on its thread.
    assert query(
        """SELECT count(*) FROM call p WHERE p.end_id - p.id + 1 <>
               (SELECT count(*) FROM call c WHERE c.thread = p.thread
                  AND c.id BETWEEN p.id AND p.end_id)"""
    ) == [(0,)]
    assert query("SELECT count(*) FROM call WHERE duration_ns < 0 OR outcome <> 'returned'") == [
        (0,)
    ]


def test_exception_through_three_frames_is_the_outcome_of_each(write, scope, query):
    write(
        "exc.py",
        """
        def inner():
            raise KeyError("missing")

        def middle():
            return inner()

        def outer():
            middle()

        def main():
            try:
                outer()
            except KeyError:
                print("caught")
            return "done"

        main()
        """,
    )
    result = scope("run", "exc.py")
    assert result.returncode == 0 and result.stdout == "caught\n"
    rows = query(
        """SELECT f.qualname, c.depth, c.outcome FROM call c
           JOIN function f ON f.id = c.function AND f.run = c.run ORDER BY c.id"""
    )
    assert rows == [
        ("main", 0, "returned"),
        ("outer", 1, "raised"),
        ("middle", 2, "raised"),
        ("inner", 3, "raised"),
    ]


def test_example_calls_equal_a_reference_tracer(project, python, scope, query):
    shutil.copy(EXAMPLE, project / "calc.py")
    expected = reference_calls(python, project, project / "calc.py")
    plain = python("calc.py")
    recorded = scope("run", "calc.py")
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout == plain.stdout
    assert stored_calls(query) == expected
    assert sum(expected.values()) > 2000  # the comparison covered the whole program


@pytest.mark.parametrize(
    "body, status",
    [
        ("print('out'); print('err', file=sys.stderr)", 0),
        ("print('leaving'); sys.exit(3)", 3),
        ("sys.exit('a message for stderr')", 1),
        ("def f():\n    return {}['k']\nprint('before')\nf()", 1),
        ("def f(x):\n    return 1 / x\nf(0)", 1),
    ],
    ids=["normal", "exit-3", "exit-message", "uncaught-keyerror", "uncaught-zerodivision"],
)
def test_output_exit_status_and_traceback_are_plain_pythons(write, python, scope, body, status):
    write("prog.py", "import sys\n" + body + "\n")
    plain = python("prog.py")
    recorded = scope("run", "prog.py")
    assert plain.returncode == status
    assert recorded == plain  # exit status, stdout and stderr


def test_traceback_printed_by_the_program_points_to_the_same_lines(write, python, scope):
    write(
        "tb.py",
        """
        import traceback

        class Account:
            def __init__(self, balance):
                self.balance = balance

            def withdraw(self, amount):
                if amount > self.balance:
                    raise ValueError(
                        f"cannot withdraw {amount}"
                    )
                self.balance -= amount

        def pay(account, amounts):
            for amount in amounts:
                account.withdraw(amount)

        try:
            pay(Account(10), [3, 4, 5])
        except ValueError:
            traceback.print_exc()
        def where():
            return [f.name for f in traceback.extract_stack()]
        print(where())
        """,
    )
    plain, recorded = python("tb.py"), scope("run", "tb.py")
    assert "line 10, in withdraw" in plain.stderr
    assert (recorded.stdout, recorded.stderr) == (plain.stdout, plain.stderr)


def test_argv_path_and_main_module_are_plain_pythons(write, python, scope):
    write(
        "probe.py",
        """
        import sys
        print(sys.argv)
        print(sys.path[0])
        print(__name__, __file__, __package__, __spec__)
        print(sorted(k for k in globals() if k != "sys"))
        """,
    )
    args = ["probe.py", "--db", "x.duckdb", "-m", "--level", "full", "--", "plain"]
    plain, recorded = python(*args), scope("run", *args)
    assert plain.returncode == 0
    assert (recorded.returncode, recorded.stdout, recorded.stderr) == (
        0,
        plain.stdout,
        plain.stderr,
    )


def test_module_run_is_recorded_and_matches_python_m(write, python, scope, query):
    write("pkg/__init__.py", "")
    write(
        "pkg/tool.py",
        """
        import sys

        def shout(words):
            return [w.upper() for w in words]

        if __name__ == "__main__":
            print(shout(sys.argv[1:]), sys.argv[0].endswith("tool.py"), __spec__.name)
            raise SystemExit(4)
        """,
    )
    plain = python("-m", "pkg.tool", "a", "--db", "b")
    recorded = scope("run", "-m", "pkg.tool", "a", "--db", "b")
    assert plain.returncode == 4
    assert (recorded.returncode, recorded.stdout, recorded.stderr) == (
        4,
        plain.stdout,
        plain.stderr,
    )
    # The module is named as imported (its spec name), not as __main__.
    assert query(
        "SELECT f.module, f.qualname, c.outcome FROM call c JOIN function f ON f.id = c.function"
    ) == [("pkg.tool", "shout", "returned")]
    assert query("SELECT exit_status, status FROM run") == [(4, "complete")]


def test_uncaught_exception_in_module_run_has_plain_traceback(write, python, scope):
    write("pkg/__init__.py", "")
    write("pkg/bad.py", "def f():\n    raise RuntimeError('no')\n\nf()\n")
    plain, recorded = python("-m", "pkg.bad"), scope("run", "-m", "pkg.bad")
    assert "<frozen runpy>" in plain.stderr and plain.returncode == 1
    assert (recorded.returncode, recorded.stderr) == (1, plain.stderr)


def test_code_run_matches_python_c(python, scope, query):
    code = "import sys\ndef f(x):\n    return x * 2\nprint(f(21), sys.argv, repr(sys.path[0]))"
    plain, recorded = python("-c", code, "arg"), scope("run", "-c", code, "arg")
    assert (recorded.returncode, recorded.stdout) == (0, plain.stdout)
    assert query("SELECT count(*) FROM call") == [(1,)]


def test_imported_user_modules_are_instrumented_and_third_party_are_not(write, scope, query):
    write("helpers.py", "import json\ndef encode(x):\n    return json.dumps(x)\n")
    write("main.py", "import helpers\nprint(helpers.encode([1, 2]))\n")
    result = scope("run", "main.py")
    assert result.stdout == "[1, 2]\n"
    assert query("SELECT DISTINCT module FROM function ORDER BY 1") == [("helpers",)]
    assert query("SELECT count(*) FROM call") == [(1,)]


def test_recursion_limit_is_reached_at_the_same_depth(write, python, scope):
    write(
        "deep.py",
        """
        import sys
        sys.setrecursionlimit(300)
        depth = 0
        def down():
            global depth
            depth += 1
            down()
        try:
            down()
        except RecursionError as exc:
            print(depth, exc)
        """,
    )
    plain, recorded = python("deep.py"), scope("run", "deep.py")
    assert plain.returncode == 0
    assert recorded.stdout == plain.stdout


def test_a_second_run_appends_to_the_same_file(write, scope, query):
    write("one.py", "def f():\n    pass\nf()\n")
    assert scope("run", "one.py").returncode == 0
    assert scope("run", "one.py", "again").returncode == 0
    assert query("SELECT id, argv, calls_stored FROM run ORDER BY id") == [
        (1, ["one.py"], 1),
        (2, ["one.py", "again"], 1),
    ]
    processes = query("SELECT run, pid, parent_pid, exit_status, ended_by FROM process")
    assert [(run, status, how) for run, _, _, status, how in processes] == [
        (1, 0, "exit"),
        (2, 0, "exit"),
    ]
    assert all(pid > 0 and parent > 0 and pid != parent for _, pid, parent, _, _ in processes)
    events = query("SELECT run, kind FROM event WHERE kind <> 'service lag' ORDER BY run, time_ns")
    assert events == [(1, "start"), (1, "end"), (2, "start"), (2, "end")]


def test_threads_are_recorded_under_their_own_thread(write, scope, query):
    write(
        "threads.py",
        """
        import threading
        def work(n):
            return sum(square(i) for i in range(n))
        def square(i):
            return i * i
        threads = [threading.Thread(target=work, args=(50,)) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(threading.active_count())
        """,
    )
    result = scope("run", "threads.py")
    assert result.stdout == "1\n"
    assert query(
        """SELECT count(DISTINCT c.thread), count(*) FILTER (WHERE f.qualname = 'square')
           FROM call c JOIN function f ON f.id = c.function"""
    ) == [(4, 200)]
    assert query(
        """SELECT count(*) FROM call c JOIN call p ON p.id = c.parent
           WHERE c.thread <> p.thread"""
    ) == [(0,)]


def test_query_commands_show_the_recording(project, scope):
    shutil.copy(EXAMPLE, project / "calc.py")
    assert scope("run", "calc.py").returncode == 0
    runs = json.loads(scope("runs", "--json").stdout)
    assert [r["id"] for r in runs] == [1] and runs[0]["exit_status"] == 0
    calls = json.loads(scope("top", "--json", "--function", "fib").stdout)
    assert [(c["qualname"], c["calls"]) for c in calls] == [("fib", 1973)]
    table = scope("top")
    assert table.returncode == 0 and "Parser.factor" in table.stdout and "1,973" in table.stdout
    tree = json.loads(scope("tree", "--json", "--limit", "3").stdout)
    assert tree["total"] > 2000 and tree["shown"] == 3
    assert tree["roots"][0]["qualname"] == "main"
    first_child = tree["roots"][0]["children"][0]
    subtree = json.loads(scope("tree", str(first_child["id"]), "--json").stdout)
    assert subtree["roots"][0]["qualname"] == "evaluate" and subtree["total"] > 1
    text = scope("tree", "--depth", "1", "--limit", "100000")
    # main is the only root; everything else is folded under it.
    below = f"{tree['total'] - 1:,} more calls below"
    assert text.returncode == 0 and "main" in text.stdout and below in text.stdout


def test_scope_prints_nothing_of_its_own(write, scope):
    write("quiet.py", "print('only me')\n")
    result = scope("run", "quiet.py")
    assert (result.stdout, result.stderr) == ("only me\n", "")


@pytest.mark.parametrize("overflow", ["block", "drop"])
def test_every_call_is_stored_or_counted_as_dropped(write, scope, query, overflow):
    write("dense.py", FIB.replace("fib(15)", "fib(20)"))
    env = clean_env({"SCOPE_RING_SIZE": "1024", "SCOPE_OVERFLOW": overflow})
    result = scope("run", "dense.py", env=env)
    assert (result.returncode, result.stdout) == (0, "6765\n")
    total_calls = 21891
    stored, dropped = query("SELECT calls_stored, events_dropped FROM run")[0]
    assert query("SELECT count(*) FROM call") == [(stored,)]
    if overflow == "block":
        assert (stored, dropped) == (total_calls, 0) and result.stderr == ""
    else:
        # A dropped entry takes its exit with it; a dropped exit leaves an unfinished call.
        unfinished = query("SELECT count(*) FROM call WHERE outcome = 'unfinished'")[0][0]
        assert dropped > 0 and "dropped" in result.stderr
        assert stored - unfinished + dropped >= total_calls
        assert stored < total_calls + 1


def test_tree_of_deep_recursion_renders(write, scope):
    write(
        "deep_tree.py",
        """
        import sys
        sys.setrecursionlimit(5000)
        def down(n):
            return 0 if n == 0 else down(n - 1)
        down(3000)
        """,
    )
    assert scope("run", "deep_tree.py").returncode == 0
    result = scope("tree", "--limit", "5000")
    assert result.returncode == 0, result.stderr
    assert "3,001 of 3,001 calls" in result.stdout
    # Past MAX_NESTING levels the calls say their depth instead of indenting further:
    # 3,000 levels of guides would make lines of 12,000 columns and cost minutes.
    assert "[depth 3001] down" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) < 40 * 4 + 60
    folded = scope("tree", "--depth", "2", "--limit", "5000")
    assert "2,999 more calls below" in folded.stdout


def test_a_program_using_click_sees_no_context_of_scopes(write, python, scope):
    # scope's CLI is written with click; the program must not find its context.
    write(
        "tool.py",
        """
        import click

        print(click.get_current_context(silent=True))

        @click.command()
        @click.option("--name", default="x")
        def main(name):
            ctx = click.get_current_context()
            print(name, ctx.parent, ctx.info_name)

        main()
        """,
    )
    plain = python("tool.py", "--name", "y")
    recorded = scope("run", "tool.py", "--name", "y")
    assert plain.stdout == "None\ny None tool.py\n"
    assert recorded == plain  # exit status, stdout and stderr


EXCEPTIONS = """
def h(n):
    raise ValueError(f"boom {n}")

def g(n):
    return h(n)

def boom():
    raise KeyError("inner")

def cleanup():
    try:
        boom()  # another exception leaves a call while the first one propagates
    except KeyError:
        pass

def k():
    try:
        h(3)
    finally:
        cleanup()

def f():
    try:
        g(1)
    except ValueError:
        pass
    try:
        k()
    except ValueError:
        pass
    raise ValueError("direct")  # may reuse the address of one that was freed

f()
"""


@pytest.mark.parametrize("level", ["calls", "args"])
def test_exceptions_know_where_they_were_raised_passed_and_caught(write, scope, query, level):
    write("raises.py", EXCEPTIONS)
    result = scope("run", "--level", level, "raises.py")
    assert result.returncode == 1 and "ValueError: direct" in result.stderr
    names = dict(query("SELECT c.id, f.qualname FROM call c JOIN function f ON f.id = c.function"))
    rows = query(
        "SELECT raised_in, type, exception, propagated_through, caught_in "
        "FROM exception ORDER BY raised_in"
    )
    described = [
        (names[raised], kind, text, [names[c] for c in through], names.get(caught))
        for raised, kind, text, through, caught in rows
    ]
    if level == "calls":  # the type only: messages are values
        texts = ["ValueError", "ValueError", "ValueError", "KeyError"]
    else:
        texts = ["ValueError('direct')", "ValueError('boom 1')", "ValueError('boom 3')"]
        texts.append("KeyError('inner')")
    assert described == [
        ("f", "ValueError", texts[0], ["f"], None),  # left every recorded call
        ("h", "ValueError", texts[1], ["h", "g"], "f"),
        ("h", "ValueError", texts[2], ["h", "k"], "f"),
        ("boom", "KeyError", texts[3], ["boom"], "cleanup"),
    ]


LAMBDAS = """
    def key(v):
        return -v

    def after():
        return (lambda: "after")()

    def work(items):
        ordered = sorted(items, key=lambda v: key(v))
        try:
            sorted(items, key=lambda v: 1 / (v - 2))  # raises inside sorted, at v == 2
        except ZeroDivisionError:
            pass
        after()  # hangs under work, not under the lambda that raised
        try:
            (lambda: key(None))()  # raises in a call the lambda made
        except TypeError:
            pass
        return ordered

    print(list(map(lambda x: x + 1, [1, 2])), work([3, 1, 2]))
"""


def test_lambdas_are_calls_of_their_scopes_lambda(write, python, scope, query):
    program = write("lambdas.py", LAMBDAS)
    result = scope("run", "lambdas.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == python("lambdas.py").stdout
    assert stored_calls(query) == reference_calls(python, program.parent, program)
    # A scope's lambdas share one function; the two that raised are recorded so.
    assert query(
        """SELECT f.qualname, count(*), count(*) FILTER (c.outcome = 'raised')
           FROM call c JOIN function f ON f.run = c.run AND f.id = c.function
           WHERE f.kind = 'lambda' GROUP BY ALL ORDER BY 1"""
    ) == [("<lambda>", 2, 0), ("after.<locals>.<lambda>", 1, 0), ("work.<locals>.<lambda>", 7, 2)]
    assert query("SELECT sum(unmatched_exits) FROM thread") == [(0,)]
