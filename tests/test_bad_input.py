"""Bad input: every user mistake is one line on stderr and a non-zero exit, never a traceback.

Programs that cannot start are the exception: ``scope run`` fails on them
exactly as ``python`` does (tests/test_runner.py).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import duckdb
import pytest
from scope.storage.schema import SCHEMA_VERSION

from .conftest import clean_env, run, wait_for_service_to_leave


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("scope: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""


# A program Python itself cannot start (no such script or module, a folder
# without __main__.py) fails as under python: see tests/test_runner.py.


def test_db_in_a_folder_that_cannot_be_created(write, project, scope):
    write("ok.py", "print('should not run')\n")
    (project / "afile").write_text("not a folder")
    result = scope("run", "--db", "afile/rec.duckdb", "ok.py")
    assert_one_line_error(result, "afile/rec.duckdb")


def test_db_that_is_a_directory(write, project, scope):
    write("ok.py", "print('should not run')\n")
    (project / "adir.duckdb").mkdir()
    assert_one_line_error(scope("run", "--db", "adir.duckdb", "ok.py"), "directory")


def test_unknown_key_in_pyproject(write, project, scope):
    write("ok.py", "print('should not run')\n")
    (project / "pyproject.toml").write_text("[tool.scope]\nlevle = 'calls'\n")
    assert_one_line_error(scope("run", "ok.py"), "'levle'", "[tool.scope]")
    assert_one_line_error(scope("runs"), "'levle'")


def test_bad_value_in_pyproject(write, project, scope):
    write("ok.py", "")
    (project / "pyproject.toml").write_text("[tool.scope]\nring_size = 'big'\n")
    assert_one_line_error(scope("run", "ok.py"), "ring_size", "whole number")


def test_bad_value_in_environment(write, project, scope):
    write("ok.py", "")
    result = scope("run", "ok.py", env=clean_env({"SCOPE_OVERFLOW": "explode"}))
    assert_one_line_error(result, "SCOPE_OVERFLOW", "drop, block")


def test_invalid_toml(write, project, scope):
    write("ok.py", "")
    (project / "pyproject.toml").write_text("[tool.scope\n")
    assert_one_line_error(scope("run", "ok.py"), "not valid TOML")


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b'tool = "x"\n', "tool in"),
        (b"[tool.scope]\nlevel = 'calls' # caf\xe9\n", "not UTF-8"),
    ],
    ids=["tool-not-a-table", "not-utf8"],
)
@pytest.mark.parametrize("command", [["run", "ok.py"], ["runs"]])
def test_a_pyproject_scope_cannot_read_is_one_line(write, project, scope, content, said, command):  # type: ignore[no-untyped-def]
    write("ok.py", "")
    (project / "pyproject.toml").write_bytes(content)
    assert_one_line_error(scope(*command), said)
    # A mistake on the command line is still said first, as click says it.
    usage = scope("top", "--by", "nothing")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr, usage.stderr
    assert "Invalid value for '--by'" in usage.stderr


def test_tree_of_a_call_that_is_not_there(write, scope):
    write("ok.py", "def f():\n    pass\nf()\n")
    assert scope("run", "ok.py").returncode == 0
    assert_one_line_error(scope("tree", "12345"), "no call 12345")
    assert_one_line_error(scope("calls", "--run", "7"), "no run 7")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "abc"), "Invalid value for '--since': not a duration: 'abc'"),
        (("--until", "-1s"), "Invalid value for '--until': not a duration: '-1s'"),
        (("--min-duration", "fast"), "'--min-duration': not a duration: 'fast'"),
        (("--max-calls", "0"), "Invalid value for '--max-calls': 0 is not in the range x>=1"),
        (("--thread", "main"), "Invalid value for '--thread': 'main' is not a valid integer"),
    ],
)
def test_bad_export_filters_are_usage_errors(project, scope, args, message):
    result = scope("export", "--format", "chrome", "-o", "t.json", *args)
    assert result.returncode == 2, result
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (project / "t.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "2s", "--until", "1s"), "--since is later than --until"),
        (("--function", "nothing_like_it"), "no call of run 1 matches the filters"),
        (("--test", "test_nothing"), "no test 'test_nothing'"),
        (("--format", "parquet", "--thread", "1"), "parquet copies whole tables"),
    ],
)
def test_export_filters_that_cannot_be_met_are_one_line_errors(
    write, project, scope, args, message
):
    write("ok.py", "def f():\n    pass\nf()\n")
    assert scope("run", "ok.py").returncode == 0
    result = scope("export", "--format", "chrome", "-o", "t.json", *args)
    assert_one_line_error(result, message)
    assert not (project / "t.json").exists()


def test_queries_without_a_recording(scope):
    assert_one_line_error(scope("runs"), "no recording")


def test_a_file_that_is_not_a_duckdb_file(project, scope):
    (project / "notes.txt").write_text("hello\n" * 100)
    assert_one_line_error(scope("runs", "--db", "notes.txt"), "not a scope recording")


def test_a_duckdb_file_that_is_not_a_recording(project: Path, write, scope):
    con = duckdb.connect(str(project / "other.duckdb"))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    write("ok.py", "")
    assert_one_line_error(scope("runs", "--db", "other.duckdb"), "not a scope recording")
    assert_one_line_error(scope("run", "--db", "other.duckdb", "ok.py"), "not a scope recording")


def test_a_recording_of_another_schema_version(project: Path, write, scope):
    write("ok.py", "")
    assert scope("run", "ok.py").returncode == 0
    con = duckdb.connect(str(project / ".scope" / "scope.duckdb"))
    con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    assert_one_line_error(scope("runs"), "version 999")


@pytest.mark.parametrize("args", [["run"], ["run", "-m", "-c", "x"], ["tree", "notanumber"]])
def test_usage_errors_exit_2_with_clicks_message(scope, args):
    result = scope(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "Error:" in result.stderr


def test_a_version_3_recording_is_read_and_upgraded_step_by_step_when_recorded_into(
    project, write, scope
):
    write("ok.py", "def f():\n    pass\n\nf()\n")
    assert scope("run", "ok.py").returncode == 0
    path = str(project / ".scope" / "scope.duckdb")
    con = duckdb.connect(path)  # turn it into what version 3 wrote
    con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    con.execute("ALTER TABLE call ALTER outcome TYPE VARCHAR")
    con.execute("DROP TYPE call_outcome")
    con.execute("ALTER TABLE function DROP COLUMN key")
    con.execute("ALTER TABLE function DROP COLUMN line")  # version 5
    con.execute("ALTER TABLE thread DROP COLUMN parent")  # version 6
    con.execute("ALTER TABLE thread DROP COLUMN started_by")
    con.execute("DROP VIEW exception")
    con.execute("ALTER TABLE call_aggregate DROP COLUMN self_ns")  # version 8
    con.execute("ALTER TABLE call_aggregate DROP COLUMN direct_ns")
    con.execute("DROP TABLE suspension")  # version 9
    con.execute("DROP TABLE test")  # version 7
    con.execute("DROP TABLE process")
    con.execute("DROP TABLE event")
    con.execute("DROP INDEX value_call")
    con.execute("ALTER TABLE value DROP COLUMN raised_in")
    con.execute("CREATE INDEX value_call ON value (run, call)")
    con.execute("CREATE INDEX call_function ON call (run, function)")
    con.close()
    assert scope("runs").returncode == 0
    assert scope("run", "ok.py").returncode == 0
    con = duckdb.connect(path, read_only=True)
    indexes = {row[0] for row in con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
    version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    runs = con.execute("SELECT count(*) FROM run").fetchone()
    outcomes = con.execute("SELECT DISTINCT typeof(outcome) FROM call").fetchall()
    processes = con.execute("SELECT run, ended_by FROM process").fetchall()
    exceptions = con.execute("SELECT count(*) FROM exception").fetchall()
    lines = con.execute("SELECT run, line FROM function ORDER BY run").fetchall()
    tests = con.execute("SELECT count(*) FROM test").fetchone()
    suspensions = con.execute("SELECT count(*) FROM suspension").fetchone()
    con.close()
    assert "call_function" not in indexes and version == (str(SCHEMA_VERSION),) and runs == (2,)
    assert tests == (0,) and suspensions == (0,)
    assert lines == [(1, None), (2, 1)]
    assert outcomes == [("ENUM('returned', 'raised', 'unfinished')",)]
    assert processes == [(2, "exit")] and exceptions == [(0,)]


def test_combine_copies_every_run_of_other_recordings(project, write, scope, query):
    write("one.py", "def f(n):\n    return n if n < 2 else f(n - 1) + f(n - 2)\n\nf(10)\n")
    write(
        "two.py", "def g():\n    raise KeyError('x')\n\ntry:\n    g()\nexcept KeyError:\n    pass\n"
    )
    assert scope("run", "one.py").returncode == 0
    assert scope("run", "--db", "other.duckdb", "two.py").returncode == 0
    assert scope("run", "--db", "other.duckdb", "one.py").returncode == 0
    result = scope("combine", "other.duckdb")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "other.duckdb run 1 -> run 2\nother.duckdb run 2 -> run 3\n"
    assert query("SELECT id, argv, calls_stored FROM run ORDER BY id") == [
        (1, ["one.py"], 177),
        (2, ["two.py"], 1),
        (3, ["one.py"], 177),
    ]
    per_run = """SELECT c.run, f.qualname, count(*), count(*) FILTER (outcome = 'raised')
                 FROM call c JOIN function f ON f.run = c.run AND f.id = c.function
                 GROUP BY ALL ORDER BY ALL"""
    assert query(per_run) == [(1, "f", 177, 0), (2, "g", 1, 1), (3, "f", 177, 0)]
    assert query("SELECT run, kind FROM event WHERE kind = 'end' ORDER BY run") == [
        (1, "end"),
        (2, "end"),
        (3, "end"),
    ]
    assert scope("status", "--run", "3").returncode == 0


def test_combine_refuses_what_is_not_a_recording(project, write, scope):
    write("ok.py", "")
    assert scope("run", "ok.py").returncode == 0
    assert_one_line_error(scope("combine", "missing.duckdb"), "no recording at missing.duckdb")
    write("notes.txt", "hello")
    assert_one_line_error(scope("combine", "notes.txt"), "not a scope recording")
    assert_one_line_error(scope("combine", ".scope/scope.duckdb"), "into itself")


def test_combine_reports_its_progress_source_by_source(project, write, scope):
    from scope.storage.combine import combine

    write("one.py", "def f():\n    return 1\n\nf()\n")
    for name in ("a.duckdb", "b.duckdb"):
        assert scope("run", "--db", name, "one.py").returncode == 0
    told: list[tuple[int, int]] = []
    target = str(project / "all.duckdb")
    sources = [str(project / "a.duckdb"), str(project / "b.duckdb")]
    copied = combine(target, sources, lambda done, total: told.append((done, total)))
    assert told == [(1, 2), (2, 2)] and [c.run for c in copied] == [1, 2]


def test_an_empty_file_where_the_recording_goes_becomes_the_recording(project: Path, write, scope):
    # What DuckDB leaves when it is killed as it creates a file (a recording
    # service killed as it starts): nothing in it to lose.
    (project / ".scope").mkdir()
    (project / ".scope" / "scope.duckdb").write_bytes(b"")
    write("ok.py", "def f():\n    return 1\nf()\n")
    result = scope("run", "ok.py")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    runs = scope("runs", "--json")
    assert runs.returncode == 0 and len(json.loads(runs.stdout)) == 1, runs.stderr


@pytest.mark.parametrize("kind", ["symlink to an empty file", "fifo"])
def test_an_empty_path_that_is_no_plain_file_is_left_alone(project: Path, write, scope, kind):
    (project / ".scope").mkdir()
    path = project / ".scope" / "scope.duckdb"
    elsewhere = project / "elsewhere"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        elsewhere.write_bytes(b"")
        path.symlink_to(elsewhere)
    write("ok.py", "print('ran')\n")
    result = scope("run", "ok.py")
    if kind == "fifo":
        assert_one_line_error(result, "not a regular file")
    else:
        assert_one_line_error(result, "not a scope recording")
    if kind == "fifo":
        assert stat.S_ISFIFO(os.lstat(path).st_mode)
    else:
        assert path.is_symlink() and elsewhere.read_bytes() == b""


def damage(db: Path, how: str) -> None:
    """Damage a recording as disks and other tools do."""
    if how == "checksums":
        data = bytearray(db.read_bytes())
        for offset in range(12288 + 64, len(data), 4096):  # past DuckDB's headers
            data[offset] ^= 0xFF
        db.write_bytes(bytes(data))
        return
    con = duckdb.connect(str(db))
    if how == "version":
        con.execute("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'")
    else:  # a table replaced by one of another shape
        con.execute("DROP TABLE call")
        con.execute("CREATE TABLE call (x INTEGER)")
    con.close()


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("checksums", "its checksums fail"),
        ("version", "its schema version is 'abc', not a number"),
        ("table", "its call table has no run, id"),
    ],
)
def test_a_damaged_recording_is_named_as_such_in_one_line(project: Path, write, scope, how, said):
    write("ok.py", "def f():\n    return 1\n\nf()\n")
    assert scope("run", "ok.py").returncode == 0
    wait_for_service_to_leave(project)
    damage(project / ".scope" / "scope.duckdb", how)
    for command in (["runs"], ["calls"], ["sql", "SELECT count(*) FROM call"]):
        result = scope(*command)
        assert_one_line_error(result, "is a damaged recording", said)
        assert "in use" not in result.stderr
    result = scope("run", "ok.py")
    assert_one_line_error(result, "is a damaged recording")


@pytest.mark.parametrize("command", [["top"], ["runs"], ["run", "app.py"]])
def test_a_removed_working_folder_is_one_line(tmp_path, command) -> None:  # type: ignore[no-untyped-def]
    gone = tmp_path / "gone"
    gone.mkdir()
    # The shell's folder is removed under it (another terminal, a test's cleanup).
    script = f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); "
    script += f"from scope.launch import main; main({command!r})"
    result = run([sys.executable, "-c", script], tmp_path)
    assert_one_line_error(result, "was removed")
