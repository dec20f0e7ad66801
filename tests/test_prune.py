"""Recordings stay small: small runs make small files, ``scope rm`` and ``scope
prune`` remove runs and give their space back, and ``retain_runs`` keeps a
recording to its newest runs as it is recorded into."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from scope.storage.pruning import parse_age

from .conftest import clean_env, wait_for_service_to_leave

# Removing runs rewrites a DuckDB file, the same from every CPython; recording the
# runs it removes is tested on each version by the rest of the suite.
pytestmark = pytest.mark.matrix_once

#: a program of about 170 recorded calls
SMALL = """
def leaf(i):
    return i + 1


def branch(n):
    return sum(leaf(i) for i in range(n))


for k in range(8):
    branch(20)
"""

#: a program whose runs take a few MB (values recorded at the args level)
LARGE = """
def f(i, text):
    return i * 2


for i in range(20000):
    f(i, "x" * (i % 50))
"""


def recording(project: Path) -> Path:
    return project / ".scope" / "scope.duckdb"


def record(scope, project: Path, *args: str, program: str = "small.py") -> None:
    result = scope("run", *args, program)
    assert result.returncode == 0, result.stderr
    wait_for_service_to_leave(project)


def run_ids(query) -> list[int]:
    return [int(row[0]) for row in query("SELECT id FROM run ORDER BY id")]


def rows_per_run(query) -> dict[str, dict[int, int]]:
    """Rows of each table that has them per run, counted by run."""
    counts: dict[str, dict[int, int]] = {}
    tables = [
        row[0]
        for row in query(
            "SELECT table_name FROM duckdb_columns() WHERE column_name = 'run' "
            "AND table_name IN (SELECT table_name FROM duckdb_tables())"
        )
    ]
    for table in tables:
        found = query(f'SELECT run, count(*) FROM "{table}" GROUP BY run')
        counts[str(table)] = {int(run): int(n) for run, n in found}
    return counts


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("scope: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""


@pytest.fixture
def three_runs(project: Path, write, scope, query) -> Path:
    """A project whose recording holds three runs of a small program."""
    write("small.py", SMALL)
    for _ in range(3):
        record(scope, project)
    assert run_ids(query) == [1, 2, 3]
    return project


def test_a_small_run_makes_a_small_file(project: Path, write, scope, query):
    # DuckDB's 256 kB blocks, one at least per table, column and index, made
    # this 4.5 MB; 64 kB blocks make it about 1 MB.
    write("small.py", SMALL)
    record(scope, project)
    assert query("SELECT calls_stored FROM run") == [(168,)]
    assert os.path.getsize(recording(project)) < 2_000_000
    assert query("SELECT block_size FROM pragma_database_size()") == [(65536,)]


def test_a_recording_made_of_larger_blocks_is_still_read_written_and_combined(
    project: Path, write, scope, query
):
    write("small.py", SMALL)
    record(scope, project)
    old = project / "old.duckdb"
    con = duckdb.connect(str(old))  # DuckDB's own default: 256 kB blocks
    con.execute(f"ATTACH '{recording(project)}' AS made (READ_ONLY)")
    con.execute(f'COPY FROM DATABASE made TO "{old.stem}"')
    con.execute("DETACH made")
    assert con.execute("SELECT block_size FROM pragma_database_size()").fetchone() == (262144,)
    con.close()
    record(scope, project, "--db", str(old))
    assert scope("runs", "--db", str(old)).returncode == 0
    combined = scope("combine", str(old))
    assert combined.returncode == 0, combined.stderr
    assert run_ids(query) == [1, 2, 3]
    removed = scope("rm", "1", "--db", str(old))
    assert removed.returncode == 0, removed.stderr
    assert scope("calls", "--db", str(old)).returncode == 0


def test_rm_removes_one_run_and_leaves_the_others_as_they_were(three_runs: Path, scope, query):
    before = rows_per_run(query)
    result = scope("rm", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"removed run 2 from {recording(three_runs)}: ")
    assert run_ids(query) == [1, 3]
    after = rows_per_run(query)
    for table, counts in before.items():
        assert after[table] == {run: n for run, n in counts.items() if run != 2}, table
    for run in ("1", "3"):
        calls = scope("calls", "--run", run, "--json")
        assert calls.returncode == 0 and '"leaf"' in calls.stdout, calls.stderr
    assert query("SELECT count(*) FROM exception WHERE run = 2") == [(0,)]


def test_a_recording_opened_again_does_not_remember_a_removed_run(three_runs: Path, scope):
    # The viewer keeps its Recording and opens the file again after letting go of it:
    # a run it resolved before may have been removed meanwhile.
    from scope.query.api import Recording

    from scope.errors import QueryError

    recording_file = str(recording(three_runs))
    held = Recording(recording_file)
    assert held.resolve_run(2) == 2 and held.function_stats(2)
    held.con.close()
    assert scope("rm", "2").returncode == 0
    held.con = Recording(recording_file).con
    with pytest.raises(QueryError, match="no run 2"):
        held.resolve_run(2)
    held.close()


@pytest.mark.parametrize("storer", ["service", "program"])
def test_a_removed_runs_number_is_never_given_again(
    three_runs: Path, scope, query, storer, monkeypatch
):
    # A run named in a note or a bug report must not come to mean another program.
    if storer == "program":
        monkeypatch.setenv("SCOPE_TESTS_SERVICE", "0")
    assert scope("rm", "3").returncode == 0
    record(scope, three_runs)
    assert run_ids(query) == [1, 2, 4]
    assert scope("rm", "4", "2").returncode == 0
    record(scope, three_runs)
    assert run_ids(query) == [1, 5]


def test_prune_keeps_the_newest_runs(three_runs: Path, scope, query):
    result = scope("prune", "--keep", "1")
    assert result.returncode == 0, result.stderr
    assert "removed runs 1, 2 " in result.stdout
    assert run_ids(query) == [3]
    again = scope("prune", "--keep", "1")
    assert again.returncode == 0 and again.stdout.startswith("no run to remove"), again


def test_prune_removes_runs_older_than_an_age(three_runs: Path, scope, query):
    con = duckdb.connect(str(recording(three_runs)))
    ten_days = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=10)
    con.execute("UPDATE run SET started_at = ? WHERE id = 1", [ten_days])
    con.execute("UPDATE run SET started_at = ? WHERE id = 2", [ten_days + dt.timedelta(days=4)])
    con.close()
    result = scope("prune", "--older-than", "7d")
    assert result.returncode == 0, result.stderr
    assert "removed run 1 " in result.stdout
    assert run_ids(query) == [2, 3]
    assert scope("prune", "--older-than", "5d").returncode == 0
    assert run_ids(query) == [3]


#: command lines a user can get wrong, and what scope says of each
BAD_INPUT = [
    (["rm", "7"], "no run 7 in "),
    (["rm", "2", "7", "9"], "no runs 7, 9 in "),
    (["rm", "two"], "'two' is not a run number"),
    (["prune", "--keep", "-1"], "--keep takes a number of runs (0 or more), not '-1'"),
    (["prune", "--keep", "many"], "--keep takes a number of runs"),
    (["prune"], "prune needs one of --keep N and --older-than AGE"),
    (["prune", "--keep", "1", "--older-than", "7d"], "not both"),
    (["prune", "--older-than", "7"], "--older-than: '7' is not an age"),
    (["prune", "--older-than", "7y"], "unit, m (minutes), h (hours), d (days) or w (weeks)"),
    (["prune", "--older-than", "-2d"], "is not an age"),
]


def test_bad_input_is_one_line_and_removes_nothing(three_runs: Path, scope, query):
    before = rows_per_run(query)
    for args, message in BAD_INPUT:  # one recording for all: each run takes a while
        assert_one_line_error(scope(*args), message)
        assert rows_per_run(query) == before, args


def test_runs_removed_but_not_compacted_are_said_so(three_runs: Path, scope, query):
    (three_runs / ".scope" / "scope.duckdb.compact").mkdir()  # where the copy goes
    assert_one_line_error(
        scope("rm", "1"), "run 1 was removed from ", "could not be compacted to a smaller file"
    )
    assert run_ids(query) == [2, 3]
    assert scope("calls", "--run", "2").returncode == 0


def test_rm_of_a_recording_that_is_not_there(project: Path, scope):
    assert_one_line_error(scope("rm", "1", "--db", "missing.duckdb"), "no recording at ")
    assert not (project / "missing.duckdb").exists()


def test_the_file_shrinks_when_runs_are_removed(project: Path, write, scope, query):
    write("large.py", LARGE)
    for _ in range(3):
        record(scope, project, "--level", "args", program="large.py")
    before = os.path.getsize(recording(project))
    result = scope("prune", "--keep", "1")
    assert result.returncode == 0, result.stderr
    after = os.path.getsize(recording(project))
    assert after < before * 0.6, (before, after)
    assert result.stdout.rstrip().endswith(f"({before:,} -> {after:,} bytes)")
    assert not Path(f"{recording(project)}.compact").exists()
    assert query("SELECT count(*) FROM call") == [(20000,)]
    assert query("SELECT count(*) FROM value") == query("SELECT count(*) FROM value WHERE run = 3")
    assert (os.stat(recording(project)).st_mode & 0o777) == 0o600


@pytest.mark.parametrize("stored_by", ["service", "program"])
def test_retain_runs_on_the_command_line(
    project: Path, write, scope, query, monkeypatch: pytest.MonkeyPatch, stored_by: str
):
    if stored_by == "program":
        monkeypatch.setenv("SCOPE_TESTS_SERVICE", "0")
    write("small.py", SMALL)
    for _ in range(4):
        record(scope, project, "--retain-runs", "2")
    assert run_ids(query) == [3, 4]
    assert rows_per_run(query)["call"] == {3: 168, 4: 168}
    record(scope, project)  # without it: every run kept
    assert run_ids(query) == [3, 4, 5]


def test_retain_runs_in_pyproject(project: Path, write, scope, query):
    (project / "pyproject.toml").write_text(
        "[project]\nname = 'demo'\n\n[tool.scope]\nretain_runs = 1\n"
    )
    write("small.py", SMALL)
    for _ in range(3):
        record(scope, project)
    assert run_ids(query) == [3]
    record(scope, project, "--retain-runs", "0")  # the flag wins: keep every run
    assert run_ids(query) == [3, 4]


def test_retain_runs_must_be_a_count(project: Path, write, scope):
    (project / "pyproject.toml").write_text(
        "[project]\nname = 'demo'\n\n[tool.scope]\nretain_runs = -3\n"
    )
    write("small.py", SMALL)
    assert_one_line_error(scope("run", "small.py"), "retain_runs", "between 0 and")


@pytest.mark.parametrize("stored_by", ["service", "program"])
def test_runs_are_not_removed_while_a_program_records(
    project: Path, write, scope, query, stored_by: str
):
    env = clean_env({"SCOPE_SERVICE": "0"} if stored_by == "program" else None)
    write("small.py", SMALL)
    record(scope, project)
    write(
        "waits.py",
        """
        import os, time

        open("started", "w").close()
        while not os.path.exists("go"):
            time.sleep(0.02)
        """,
    )
    program = subprocess.Popen(
        [sys.executable, "-m", "scope", "run", "waits.py"], cwd=project, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not (project / "started").exists():
            assert program.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        assert_one_line_error(scope("rm", "1"), "a program is recording into it")
        assert_one_line_error(scope("prune", "--keep", "0"), "a program is recording into it")
    finally:
        (project / "go").touch()
        assert program.wait(timeout=60) == 0
    wait_for_service_to_leave(project)
    assert run_ids(query) == [1, 2]
    assert scope("prune", "--keep", "0").returncode == 0
    assert run_ids(query) == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600), (" 1d ", 86400)],
)
def test_ages(text: str, seconds: int):
    assert parse_age(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "7", "d", "1.5d", "-1d", "7 d", "1y", "7D"])
def test_not_ages(text: str):
    with pytest.raises(ValueError, match="is not an age"):
        parse_age(text)
