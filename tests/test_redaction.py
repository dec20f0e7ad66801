"""Secrets are never stored: one rule (``scope.redaction``), applied to every string.

``tests/programs/secrets_everywhere.py`` plants a secret in each place adversarial
testing found one stored in clear: an exception's message, a return value,
argv, an ``os.system`` command line, a warning, an attribute, parameters with
names off the old list, ``*args``, a ``str`` subclass as a dict key, a pattern
of the ``redact`` setting, and well-known token shapes.  The recording, its
write-ahead log and every export are then searched for the secret: in every
text column by SQL (DuckDB compresses strings, so the bytes alone prove
nothing), and in the raw bytes as well.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from scope.redaction import REDACTED, name_is_secret, native_patterns, scrub, scrub_argv

from .conftest import clean_env, wait_for_service_to_leave

PROGRAM = Path(__file__).parent / "programs" / "secrets_everywhere.py"
SECRET = "S3CR3T"


def text_hits(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every value of every column of every table that holds the secret."""
    columns = con.execute(
        """SELECT table_name, column_name FROM duckdb_columns()
           WHERE database_name = current_database() AND schema_name = 'main'"""
    ).fetchall()
    hits = []
    for table, column in columns:
        found = con.execute(
            f'SELECT "{column}"::VARCHAR FROM "{table}" WHERE "{column}"::VARCHAR LIKE ?',
            [f"%{SECRET}%"],
        ).fetchall()
        hits += [f"{table}.{column}: {row[0]}" for row in found]
    return hits


@pytest.mark.parametrize("service", ["1", "0"], ids=["by the service", "in the program"])
def test_no_secret_reaches_the_recording_or_an_export(project, service):
    shutil.copy(PROGRAM, project / "app.py")
    (project / "pyproject.toml").write_text("[tool.scope]\nredact = ['my_*_thing']\n")
    env = clean_env({"SCOPE_SERVICE": service})
    plain = subprocess.run(
        [sys.executable, "app.py", "--password", f"{SECRET}-4"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    recorded = subprocess.run(
        [
            sys.executable,
            "-m",
            "scope",
            "run",
            "--level",
            "full",
            "app.py",
            "--password",
            f"{SECRET}-4",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # The program itself sees every secret: redaction is scope's, not the program's.
    assert (recorded.returncode, recorded.stdout, recorded.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )
    assert f"{SECRET}-2" in plain.stderr
    wait_for_service_to_leave(project)
    db = project / ".scope" / "scope.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert text_hits(con) == []
        redacted = con.execute(
            "SELECT count(*) FROM value WHERE value LIKE ?", [f"%{REDACTED}%"]
        ).fetchone()
        (argv,) = con.execute("SELECT argv FROM run").fetchone() or ((),)
    finally:
        con.close()
    assert redacted is not None and redacted[0] >= 20  # the values are there, redacted
    assert argv == ["app.py", "--password", REDACTED]
    for name in ("t.json", "s.json", "o.json", "pq"):
        fmt = {"t.json": "chrome", "s.json": "speedscope", "o.json": "otlp", "pq": "parquet"}
        done = subprocess.run(
            [sys.executable, "-m", "scope", "export", "-f", fmt[name], "-o", name],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert SECRET not in (project / "t.json").read_text()
    assert SECRET not in (project / "s.json").read_text()
    assert SECRET not in (project / "o.json").read_text()
    parquet = duckdb.connect()
    try:
        for file in (project / "pq").glob("*.parquet"):
            rows = parquet.execute(f"SELECT * FROM '{file}'").fetchall()
            assert SECRET not in repr(rows), file
    finally:
        parquet.close()
    for path in [db, *db.parent.glob("scope.duckdb*.wal")]:
        assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("bad password hunter2", "bad password <redacted>"),
        ("token: abc123", "token: <redacted>"),
        ('{"api_key": "k1"}', '{"api_key": "<redacted>"}'),
        ("--secret-key=k2 -v", "--secret-key=<redacted> -v"),
        ("Authorization: Bearer eyJhbGciOi.x", "Authorization: Bearer <redacted>"),
        ("https://bob:pa55@example.com/x", "https://bob:<redacted>@example.com/x"),
        ("key AKIAABCDEFGHIJKLMNOP here", "key <redacted> here"),
        ("ghp_" + "a" * 36, "<redacted>"),
        ("xoxb-1234567890-abc", "<redacted>"),
        ("-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----", None),
        ("-----BEGIN PRIVATE KEY-----\nMHc (cut short", None),
        ("hello world, 42 apples", "hello world, 42 apples"),
        ("/home/u/tokens/app.py", "/home/u/tokens/app.py"),
    ],
)
def test_secret_shapes_are_scrubbed_and_the_rest_is_kept(text, kept):
    scrubbed = scrub(text)
    if kept is None:  # a private key: only its header is left
        assert scrubbed.startswith("-----BEGIN") and scrubbed.endswith(REDACTED)
        assert "MHc" not in scrubbed
    else:
        assert scrubbed == kept
    assert scrub(scrubbed) == scrubbed  # stored twice (a run taken up again): the same


def test_the_word_after_a_secret_option_is_redacted():
    argv = ["app.py", "--password", "p1", "-v", "x", "--api-key=k", "--pw", "p2", "--name", "n"]
    assert scrub_argv(argv) == [
        "app.py",
        "--password",
        REDACTED,
        "-v",
        "x",
        f"--api-key={REDACTED}",
        "--pw",
        REDACTED,
        "--name",
        "n",
    ]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("userPassword", True),
        ("DB_PASSWD", True),
        ("pw", True),
        ("pwd", True),
        ("old_pwd", True),
        ("private_key", True),
        ("session_key", True),
        ("secret_key", True),
        ("access_token", True),
        ("cookie", True),
        ("credentials", True),
        ("auth", True),
        ("http_auth", True),
        ("my_odd_thing", True),
        ("cwd", False),
        ("author", False),
        ("keyword", False),
        ("pwm", False),
        ("data", False),
    ],
)
def test_names_follow_one_rule_in_python_and_in_native_code(name, secret):
    assert name_is_secret(name, ["my_*_thing"]) is secret
    # The native side matches dict keys against the same patterns (lowered).
    assert native_patterns(["My_*_Thing"])[-1] == "my_*_thing"
