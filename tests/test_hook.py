"""The import hook: what it claims, what it leaves alone, and installing it from a program.

Each test runs a small program in a subprocess, under plain ``python`` (with
``scope.install()`` or ``scope.recording()``) or ``python -m scope run``, and
reads the recording back.
"""

from __future__ import annotations

import zipfile

HELPER = """
def twice(n):
    return 2 * n
"""

EMBEDDED = """
import scope
import early                      # before the hook: runs uninstrumented

with scope.recording() as recorder:
    import helper                 # after: instrumented
    print(helper.twice(early.one()), recorder.recording)
print(recorder.recording)
report = scope.uninstall()        # nothing left to stop
with scope.recording(level="args"):
    print(helper.twice(5), early.one())
"""


def calls_per_run(query) -> list[tuple[int, str, int]]:
    return query(
        """SELECT c.run, f.qualname, count(*) FROM call c
           JOIN function f ON f.run = c.run AND f.id = c.function GROUP BY ALL ORDER BY ALL"""
    )


def test_a_program_records_itself_with_recording_blocks(write, python, query):
    write("helper.py", HELPER)
    write("early.py", "def one():\n    return 1\n")
    write("app.py", EMBEDDED)
    result = python("app.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 True\nFalse\n10 1\n"
    # One run per block; early.one is never recorded, helper.twice in both.
    assert calls_per_run(query) == [(1, "twice", 1), (2, "twice", 1)]
    # Code keeps the level it was instrumented with: helper was imported at calls level.
    assert query("SELECT count(*) FROM value WHERE role = 'argument'") == [(0,)]
    # The module imported before the hook is named, once per run, and at the end.
    events = query("SELECT run, detail FROM event WHERE kind = 'imported before scope'")
    assert [run for run, _ in events] == [1, 2]
    assert all("not instrumented: early" in detail for _, detail in events)
    assert result.stderr.count("imported before scope's import hook") == 2


def test_install_under_scope_run_keeps_the_one_recording(write, scope, query):
    write("helper.py", HELPER)
    write("early.py", "def one():\n    return 1\n")
    write("app.py", EMBEDDED)
    recorded = scope("run", "app.py")
    # Under scope run the blocks neither start nor stop anything: the run goes on.
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout == "2 True\nTrue\n10 1\n"
    assert calls_per_run(query) == [(1, "one", 2), (1, "twice", 2)]


def test_install_and_uninstall(write, python, query):
    write("helper.py", HELPER)
    write(
        "app.py",
        """
        import scope
        recorder = scope.install(db="rec/here.duckdb")
        import helper
        helper.twice(1)
        report = scope.uninstall()
        helper.twice(2)  # instrumented still, but nobody records it
        print(report.calls_stored, report.db.endswith("rec/here.duckdb"), scope.uninstall())
        """,
    )
    result = python("app.py")
    assert (result.returncode, result.stdout, result.stderr) == (0, "1 True None\n", "")


def test_uninstall_lets_go_of_the_database(write, python):
    # Instrumented modules outlive the recording; if they kept its DuckDB
    # connection alive, DuckDB's bindings could print leak warnings at exit.
    write("helper.py", HELPER)
    write(
        "app.py",
        """
        import gc, scope
        scope.install()
        import helper
        helper.twice(1)
        scope.uninstall()
        gc.collect()
        alive = [o for o in gc.get_objects() if type(o).__name__ == "DuckDBPyConnection"]
        print(len(alive), helper.twice(2))
        """,
    )
    result = python("app.py")
    assert (result.returncode, result.stdout, result.stderr) == (0, "0 4\n", "")


def test_bad_settings_raise_a_scope_error_into_the_caller(write, python):
    write(
        "app.py",
        """
        import scope
        from scope.errors import ConfigError
        try:
            scope.install(level="loud")
        except ConfigError as exc:
            print("refused:", exc)
        """,
    )
    result = python("app.py")
    assert result.returncode == 0 and result.stdout.startswith("refused: level on the command")


def test_reload_and_reimport_are_instrumented_afresh(write, scope, query):
    helper = write("helper.py", HELPER)
    write(
        "app.py",
        f"""
        import importlib, sys
        import helper
        helper.twice(1)
        with open({str(helper)!r}, "a") as f:
            f.write("\\ndef thrice(n):\\n    return 3 * n\\n")
        importlib.reload(helper)
        helper.thrice(1)
        del sys.modules["helper"]
        import helper
        helper.twice(2)
        print("ok")
        """,
    )
    result = scope("run", "app.py")
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    assert calls_per_run(query) == [(1, "thrice", 1), (1, "twice", 2)]
    assert query("SELECT qualname, line FROM function ORDER BY ALL") == [
        ("thrice", 5),
        ("twice", 2),
    ]


def test_zip_namespace_and_extension_modules_are_left_to_python(
    project, write, python, scope, query
):
    with zipfile.ZipFile(project / "zipped.zip", "w") as archive:
        archive.writestr("inzip.py", "def zipped():\n    return 'zip'\n")
    write("space/inside.py", "def spaced():\n    return 'namespace'\n")  # no __init__.py
    write(
        "app.py",
        """
        import sys
        sys.path.insert(0, "zipped.zip")
        import inzip, space, space.inside, _decimal
        print(inzip.zipped(), space.inside.spaced(), space.__spec__.origin, _decimal.__name__)
        print(type(inzip.__loader__).__name__, type(space.__loader__).__name__)
        """,
    )
    plain, recorded = python("app.py"), scope("run", "app.py")
    assert (recorded.returncode, recorded.stdout) == (plain.returncode, plain.stdout)
    assert plain.stdout.splitlines()[1] == "zipimporter NamespaceLoader"
    # The namespace package's source module is still the user's.
    assert [row[1] for row in calls_per_run(query)] == ["spaced"]


def test_pytest_keeps_assertion_rewriting_for_test_modules(write, python, scope):
    write("calc.py", "def add(a, b):\n    return a + b\n")
    write(
        "test_calc.py",
        """
        import calc

        def test_add():
            result = calc.add(2, 2)
            assert result == 5
        """,
    )
    args = ("-m", "pytest", "-q", "-p", "no:cacheprovider", "test_calc.py")
    plain, recorded = python(*args), scope("run", *args)
    assert plain.returncode == recorded.returncode == 1
    # pytest's rewritten assert explains the values: it rewrote the test module.
    explanation = [line for line in plain.stdout.splitlines() if line.startswith("E ")]
    assert explanation == ["E       assert 4 == 5"]
    assert [line for line in recorded.stdout.splitlines() if line.startswith("E ")] == explanation


def test_another_finder_installed_first_still_wins(write, python, scope, query):
    write("helper.py", HELPER)
    write(
        "app.py",
        """
        import sys, types

        class Virtual:
            def find_spec(self, name, path=None, target=None):
                if name != "helper":
                    return None
                from importlib.machinery import ModuleSpec
                return ModuleSpec(name, self)
            def create_module(self, spec):
                return None
            def exec_module(self, module):
                module.twice = lambda n: "virtual"

        sys.meta_path.insert(0, Virtual())
        import helper
        print(helper.twice(1))
        """,
    )
    plain, recorded = python("app.py"), scope("run", "app.py")
    assert plain.stdout == recorded.stdout == "virtual\n"
    recorded_functions = {row[1] for row in calls_per_run(query)}
    assert "Virtual.exec_module.<locals>.<lambda>" in recorded_functions
    assert "twice" not in recorded_functions


def test_the_hook_adds_no_imports_to_a_module(write, python, scope):
    write("helper.py", HELPER)
    # main() has the script instrumented (and scope's analyzer loaded) before the probe.
    probe = """
        import sys

        def main():
            before = set(sys.modules)
            import helper
            print(sorted(set(sys.modules) - before))

        main()
    """
    write("app.py", probe)
    assert python("app.py").stdout == scope("run", "app.py").stdout == "['helper']\n"


def test_code_without_functions_is_left_as_python_compiles_it():
    from scope.instrument.hook import may_define_functions

    assert not may_define_functions(b"import sys\nprint(sys.argv)\nx = [i for i in range(3)]\n")
    assert may_define_functions(b"def f():\n    pass\n")
    assert may_define_functions(b"f = lambda: 1\n")
    assert may_define_functions(b"class A:\n    async def g(self): ...\n")


def test_a_module_without_functions_is_still_scopes_and_needs_no_analysis(write, scope):
    write("constants.py", "LIMIT = 3\nNAMES = [str(i) for i in range(LIMIT)]\n")
    write(
        "app.py",
        """
        import sys
        import constants

        loader = constants.__spec__.loader
        print(constants.NAMES, "libcst" in sys.modules, type(loader.get_code).__name__)
        """,
    )
    result = scope("run", "app.py")
    assert result.returncode == 0, result.stderr
    # Loaded through scope (its code stands in for the loader's get_code), never analysed.
    assert result.stdout == "['0', '1', '2'] False InstrumentedCode\n"
