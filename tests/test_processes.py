"""Child processes: recorded into the run's recording, each with its parent, and all its calls.

A program starts children in every common way (``os.fork``; multiprocessing
with fork, spawn and forkserver; a ``ProcessPoolExecutor``; ``subprocess``
running ``sys.executable``), each calling the user's code a known number of
times.  After the run there must be one recording, holding every process that
made calls once, with its parent, and exactly the calls each one made; the
children folder and the temporary hook must be gone, and the program must
have printed what it prints under ``python``.
"""

from __future__ import annotations

import os
import sys

from .conftest import clean_env, wait_for_service_to_leave

WORK = """
def square(i):
    return i * i

def total(n):
    return sum(square(i) for i in range(n))
"""

APP = """
import multiprocessing, os, subprocess, sys
from concurrent.futures import ProcessPoolExecutor
import work

def run_in(method, n):
    process = multiprocessing.get_context(method).Process(target=work.total, args=(n,))
    process.start()
    process.join()
    return process.exitcode

def main():
    print(work.total(2))
    pid = os.fork()
    if pid == 0:
        work.total(4)
        os._exit(3)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    print([run_in(method, n) for method, n in (("fork", 5), ("spawn", 6), ("forkserver", 7))])
    # fork, as every version before 3.14 chose by default (3.14 chooses forkserver)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        print(sum(pool.map(work.square, range(8))))
    child = subprocess.run(
        [sys.executable, "-c", "import work; print(work.total(9))"], capture_output=True, text=True
    )
    print(child.stdout.strip(), repr(child.stderr))
    print(sorted(k for k in os.environ if k.startswith("SCOPE_")), os.environ.get("PYTHONPATH"))

if __name__ == "__main__":
    main()
"""


def test_every_child_process_is_in_the_run_with_its_calls(project, write, python, scope, query):
    write("work.py", WORK)
    write("app.py", APP)
    plain, recorded = python("app.py"), scope("run", "app.py")
    assert plain.returncode == 0, plain
    assert recorded == plain
    processes = query(
        "SELECT pid, parent_pid, exit_status, ended_by FROM process ORDER BY start_ns"
    )
    main_pid = processes[0][0]
    # Per process: how many times total and square ran (the top process is number 0).
    calls = query(
        """SELECT c.id >> 52 AS process, count(*) FILTER (WHERE f.qualname = 'total'),
                  count(*) FILTER (WHERE f.qualname = 'square')
           FROM call c JOIN function f ON f.id = c.function GROUP BY ALL ORDER BY ALL"""
    )
    by_work = sorted((totals, squares) for _, totals, squares in calls)
    # top: total(2); fork: total(4); multiprocessing: 5, 6, 7; pool: 8 squares; subprocess: 9
    assert by_work == sorted([(1, 2), (1, 4), (1, 5), (1, 6), (1, 7), (0, 8), (1, 9)])
    assert len(processes) == len(calls) == 7
    parents = [parent for _, parent, _, _ in processes[1:]]
    # Every child's parent is the program, but the forkserver's children (the
    # forkserver itself runs no code of the program's and leaves no recording).
    assert sum(parent == main_pid for parent in parents) == 5
    assert (3, "os._exit") in [(status, how) for _, _, status, how in processes]
    assert all(status is not None for _, _, status, _ in processes)
    # Each process's number is the high bits of its calls' ids: scope calls --pid uses it.
    numbered = query(
        """SELECT p.number, count(c.id) FROM process p
           LEFT JOIN call c ON c.id >> 52 = p.number GROUP BY ALL ORDER BY ALL"""
    )
    assert [n for n, _ in numbered] == list(range(7)) and all(k > 0 for _, k in numbered)
    assert query("SELECT number FROM process WHERE pid = ?", [main_pid]) == [(0,)]
    # Ids stay unique and keep their layout; every parent is in the same process.
    assert query("SELECT count(*) - count(DISTINCT id) FROM call") == [(0,)]
    assert query("SELECT count(*) FROM call WHERE id >> 40 <> thread") == [(0,)]
    assert query(
        "SELECT count(*) FROM call c JOIN call p ON p.id = c.parent WHERE c.id >> 52 <> p.id >> 52"
    ) == [(0,)]
    assert query("SELECT count(*) FROM call c WHERE c.parent NOT IN (SELECT id FROM call)") == [
        (0,)
    ]
    assert query("SELECT problems FROM run") == [([],)]
    wait_for_service_to_leave(project)
    # No child left a file of its own behind; the code cache is shared and stays.
    assert sorted(os.listdir(project / ".scope")) == ["cache", "scope.duckdb"]


def test_the_environment_is_put_back_and_the_hook_removed(write, python):
    write(
        "app.py",
        """
        import os, scope, subprocess, sys
        before = dict(os.environ)
        show = [sys.executable, "-c", "import os; print(os.environ.get('PYTHONPATH'))"]
        with scope.recording():
            seen = dict(os.environ) == before
            hook = subprocess.run(["env"], capture_output=True, text=True).stdout
            hook = [line for line in hook.splitlines() if line.startswith("PYTHONPATH=")]
            hook = hook[0].split("=", 1)[1].split(os.pathsep)[0]
            made = os.path.exists(os.path.join(hook, "sitecustomize.py"))
            # a recorded child sees PYTHONPATH as the program left it: unset
            child = subprocess.run(show, capture_output=True, text=True).stdout.strip()
        after = subprocess.run(["env"], capture_output=True, text=True).stdout
        # the service's children use scope's own hook folder; none other is left
        own = os.path.join(os.path.dirname(scope.__file__), "hook")
        print(seen, made, child, dict(os.environ) == before, hook != own and os.path.exists(hook))
        print("SCOPE_CHILD_OF" in after, hook in after)
        """,
    )
    result = python("app.py")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "True True None True False\nFalse False\n"


def test_a_childs_own_sitecustomize_still_runs(tmp_path_factory, write, scope, query):
    write("work.py", WORK)
    site = tmp_path_factory.mktemp("site")  # outside the project: not the user's code
    (site / "sitecustomize.py").write_text("import os\nos.environ['CUSTOMIZED'] = 'yes'\n")
    write(
        "app.py",
        """
        import subprocess, sys
        code = "import os, work; work.total(3); print(os.environ.get('CUSTOMIZED'))"
        print(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
        """,
    )
    result = scope("run", "app.py", env=clean_env({"PYTHONPATH": str(site)}))
    assert (result.returncode, result.stdout, result.stderr) == (0, "yes\n\n", "")
    assert query("SELECT count(*) FROM process") == [(2,)]


def test_a_child_of_another_interpreter_is_left_alone(write, scope):
    # An interpreter without scope (here: isolated from the user's site) runs as usual.
    write(
        "app.py",
        f"""
        import subprocess
        done = subprocess.run([{sys.executable!r}, "-S", "-c", "print('plain')"],
                              capture_output=True, text=True)
        print(done.stdout.strip(), repr(done.stderr))
        """,
    )
    result = scope("run", "app.py")
    assert (result.returncode, result.stdout) == (0, "plain ''\n")


def test_a_spawned_child_runs_the_main_scripts_functions_instrumented(write, python, scope, query):
    # spawn re-runs the main script with runpy.run_path, as __mp_main__: not an import.
    write(
        "app.py",
        """
        import multiprocessing, runpy

        def cube(n):
            return n ** 3

        def spawned(n):
            return sum(cube(i) for i in range(n))

        if __name__ == "__main__":
            process = multiprocessing.get_context("spawn").Process(target=spawned, args=(4,))
            process.start()
            process.join()
            print(process.exitcode, runpy.run_path("helper.py")["answer"])
        """,
    )
    write("helper.py", "def compute():\n    return 42\n\nanswer = compute()\n")
    plain, recorded = python("app.py"), scope("run", "app.py")
    assert plain.returncode == 0 and recorded == plain
    rows = query(
        """SELECT c.id >> 52 AS process, f.module, f.qualname, count(*) FROM call c
           JOIN function f ON f.id = c.function GROUP BY ALL ORDER BY ALL"""
    )
    assert rows == [
        (0, "<run_path>", "compute", 1),
        (1, "__mp_main__", "cube", 4),
        (1, "__mp_main__", "spawned", 1),
    ]


def test_each_childs_exit_status_is_the_one_its_parent_saw(write, scope, query):
    write("work.py", WORK)
    write(
        "app.py",
        """
        import multiprocessing, subprocess, sys
        import work

        ENDINGS = [
            "work.total(2); sys.exit(4)",
            "work.total(2); raise SystemExit(5)",
            "work.total(1)",
            "work.total(1); 1 / 0",
        ]

        if __name__ == "__main__":
            for ending in ENDINGS:
                code = "import sys, work; " + ending
                print(subprocess.run([sys.executable, "-c", code], capture_output=True).returncode)
            process = multiprocessing.get_context("spawn").Process(target=work.total, args=(2,))
            process.start()
            process.join()
            print(process.exitcode)
        """,
    )
    result = scope("run", "app.py")
    assert result.returncode == 0 and result.stdout.split() == ["4", "5", "0", "1", "0"]
    statuses = query("SELECT exit_status FROM process ORDER BY start_ns")
    assert [status for (status,) in statuses] == [0, 4, 5, 0, 1, 0]


CHILD_SCRIPT = """
import sys

def double(n):
    return 2 * n

def fail():
    raise ValueError("child failed")

print(double(21), __name__, sys.argv[1:])
if sys.argv[1:] == ["fail"]:
    fail()
if sys.argv[1:] == ["interrupt"]:
    raise KeyboardInterrupt
sys.exit(int(sys.argv[1]) if sys.argv[1:] else 0)
"""


def test_a_childs_own_script_and_code_run_instrumented_and_end_as_under_python(
    write, python, scope, query
):
    write("child.py", CHILD_SCRIPT)
    write(
        "app.py",
        """
        import subprocess, sys
        runs = [["child.py"], ["child.py", "7"], ["child.py", "fail"], ["child.py", "interrupt"],
                ["-c", "def triple(n):\\n    return 3 * n\\nprint(triple(2))"]]
        for args in runs:
            done = subprocess.run([sys.executable, *args], capture_output=True, text=True)
            print(done.returncode, repr(done.stdout), repr(done.stderr))
        """,
    )
    plain, recorded = python("app.py"), scope("run", "app.py")
    assert plain.returncode == 0 and "ValueError: child failed" in plain.stdout
    assert recorded == plain  # each child's output, traceback and exit status
    calls = query(
        """SELECT f.qualname, c.outcome, count(*) FROM call c JOIN function f ON f.id = c.function
           WHERE f.module = '__main__' GROUP BY ALL ORDER BY ALL"""
    )
    assert calls == [("double", "returned", 4), ("fail", "raised", 1), ("triple", "returned", 1)]
    statuses = [s for (s,) in query("SELECT exit_status FROM process ORDER BY start_ns")]
    assert statuses == [0, 0, 7, 1, 130, 0]
