"""SQL run on a recording is a sandbox: it reads the recording and touches nothing else.

``scope sql``, the Python API and the queries a recording service answers run
whatever SQL they are given, and DuckDB can write and read any file, attach other
databases and load extensions from the network.  Each hostile statement below
is refused with a clear message and a non-zero exit, and the file it aimed at is as it
was: run on a file opened by the query itself, and answered by a lingering
recording service.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from scope.query.api import Recording

from scope.errors import QueryError, RecordingError

from .conftest import clean_env, lock_free

VICTIM = "print('the original')\n"


def untouched(project: Path) -> None:
    """The files the hostile statements aim at are as the test made them."""
    assert (project / "victim.py").read_text() == VICTIM
    con = duckdb.connect(str(project / "other.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
    finally:
        con.close()
    for made in ("exported", "second.csv", "out.csv"):
        assert not (project / made).exists(), made


#: (statement, what it tried) as found by adversarial testing
HOSTILE = [
    "COPY (SELECT 'print(1)') TO 'victim.py' (HEADER false, QUOTE '')",
    "ATTACH 'other.duckdb' AS o (READ_WRITE)",
    "ATTACH 'other.duckdb' AS o (READ_WRITE); INSERT INTO o.t VALUES (7)",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_csv('data.csv')",
    "SELECT * FROM 'data.csv'",
    "SELECT * FROM glob('*')",
    "EXPORT DATABASE 'exported'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SELECT 1; COPY (SELECT 1) TO 'second.csv'",
    "ROLLBACK; DELETE FROM call",
    "DELETE FROM call",
    "DROP TABLE call",
]


@pytest.fixture(params=["opened by the query", "answered by the service"])
def recorded(request, write, project: Path, scope) -> tuple[Path, str]:
    """A project with a recording, the files the statements aim at, and how queries
    reach it: a copy nobody holds, or the recording its service lingers with."""
    write("app.py", "def f(n):\n    return n + 1\n\nfor i in range(5):\n    f(i)\n")
    (project / "victim.py").write_text(VICTIM)
    (project / "data.csv").write_text("a\n1\n")
    con = duckdb.connect(str(project / "other.duckdb"))
    con.execute("CREATE TABLE t (a INTEGER)")
    con.close()
    lingering = clean_env({"SCOPE_SERVICE": "1", "SCOPE_SERVICE_LINGER": "20"})
    result = subprocess.run(
        [sys.executable, "-m", "scope", "run", "app.py"],
        cwd=project,
        env=lingering,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    db = project / ".scope" / "scope.duckdb"
    if request.param == "opened by the query":
        copy = project / "copy.duckdb"
        shutil.copy(db, copy)
        return copy, request.param
    assert not lock_free(Path(f"{db}.live") / "service.lock")
    return db, request.param


def calls_in(db: Path) -> int:
    with Recording(str(db)) as recording:
        (count,) = recording.sql("SELECT count(*) FROM call").rows[0]
    return int(count)  # type: ignore[call-overload]


@pytest.mark.parametrize("statement", HOSTILE)
def test_scope_sql_refuses_what_reaches_beyond_the_recording(recorded, project, statement):
    db, via = recorded
    before = calls_in(db)
    result = subprocess.run(
        [sys.executable, "-m", "scope", "sql", "--db", str(db), statement],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("scope: error:"), result.stderr
    refusals = ("Permission Error", "disabled", "read-only", "one SQL statement", "locked")
    assert any(refusal in first for refusal in refusals), first
    untouched(project)
    assert calls_in(db) == before == 5
    if via == "answered by the service":
        assert not lock_free(Path(f"{db}.live") / "service.lock")  # it answered


def test_the_python_api_is_the_same_sandbox(recorded, project, monkeypatch):
    db, _ = recorded
    monkeypatch.chdir(project)
    with Recording(str(db)) as recording:
        for statement in HOSTILE:
            with pytest.raises(QueryError):
                recording.sql(statement)
        assert recording.sql("SELECT count(*) FROM call").rows == [(5,)]
    untouched(project)


def test_a_parquet_export_writes_where_it_was_asked_and_nowhere_else(recorded, project, scope):
    db, _ = recorded
    result = scope("export", "--db", str(db), "--format", "parquet", "-o", "out")
    assert result.returncode == 0, result.stderr
    assert (project / "out" / "call.parquet").is_file()
    con = duckdb.connect()
    try:
        (count,) = con.execute(f"SELECT count(*) FROM '{project}/out/call.parquet'").fetchone()
    finally:
        con.close()
    assert count == 5
    untouched(project)


def network_calls(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run ``args`` under strace; what it did, and every connect() that was not to a
    local (AF_UNIX) socket."""
    if shutil.which("strace") is None:
        pytest.fail("strace is needed (.ci/run installs it)")
    log = cwd / "strace.log"
    result = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=connect,sendto", "-o", str(log), *args],
        cwd=cwd,
        env=clean_env({"SCOPE_SERVICE": "1"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = log.read_text().splitlines()
    remote = [line for line in lines if "AF_INET" in line or "AF_NETLINK" in line]
    return result, "\n".join(remote)


@pytest.mark.parametrize("command", ["run", "calls"])
def test_a_sqlite_file_as_the_recording_is_refused_without_the_network(project, write, command):
    write("app.py", "print('ran')\n")
    sqlite = project / "data.sqlite"
    with sqlite3.connect(sqlite) as con:
        con.execute("CREATE TABLE t (a)")
    args = [sys.executable, "-m", "scope", command, "--db", str(sqlite)]
    result, remote = network_calls([*args, "app.py"] if command == "run" else args, project)
    assert remote == ""
    assert result.returncode != 0
    assert "is not a scope recording" in result.stderr and "Traceback" not in result.stderr


def test_recording_and_querying_open_no_network_socket(project, write):
    write("app.py", "def f():\n    return 1\n\nf()\n")
    result, remote = network_calls([sys.executable, "-m", "scope", "run", "app.py"], project)
    assert result.returncode == 0, result.stderr
    assert remote == ""
    result, remote = network_calls([sys.executable, "-m", "scope", "calls"], project)
    assert result.returncode == 0, result.stderr
    assert remote == "" and "f" in result.stdout


def test_a_second_statement_is_refused_on_any_connection(tmp_path):
    db = tmp_path / "rec.duckdb"
    from scope.storage import database

    database.open_for_writing(str(db)).close()
    con = database.open_for_reading(str(db))
    try:
        with pytest.raises(QueryError, match="one SQL statement; this has 2"):
            database.one_statement(con, "SELECT 1; SELECT 2")
        with pytest.raises(QueryError, match="runs SELECT and EXPLAIN statements, not DELETE"):
            database.one_statement(con, "DELETE FROM call", database.SERVICE_STATEMENTS)
        database.one_statement(con, "FROM call", database.SERVICE_STATEMENTS)
        database.one_statement(con, "EXPLAIN SELECT 1", database.SERVICE_STATEMENTS)
    finally:
        con.close()


def test_the_sandbox_keeps_the_settings_asked_for_and_refuses_all_others(tmp_path):
    from scope.storage import database

    db = tmp_path / "rec.duckdb"
    database.open_for_writing(str(db)).close()
    con = database.open_for_reading(str(db), {"progress_bar_time": 1234})
    try:
        assert con.execute("SELECT current_setting('progress_bar_time')").fetchone() == (1234,)
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET progress_bar_time = 5")
    finally:
        con.close()
    with pytest.raises(RecordingError, match="no recording"):
        database.open_for_reading(str(tmp_path / "none.duckdb"))
