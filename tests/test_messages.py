"""Warnings and log records: kept as events of the call that produced them, shown as before."""

from __future__ import annotations

from .conftest import clean_env

PROGRAM = """
import logging, warnings

log = logging.getLogger("app")

def deprecated_thing():
    warnings.warn("old API", DeprecationWarning, stacklevel=1)

def risky():
    warnings.warn("careful")
    log.warning("disk at %d%%", 91)
    log.info("not kept below the level")

def main():
    warnings.simplefilter("default")
    deprecated_thing()
    risky()
    print(len(logging.getLogger().handlers))

logging.basicConfig(format="%(levelname)s %(message)s")
main()
"""


def events(query) -> list[tuple[str, str, str | None]]:
    return query(
        """SELECT e.kind, e.detail, f.qualname FROM event e
           LEFT JOIN call c ON c.id = e.call LEFT JOIN function f ON f.id = c.function
           WHERE e.kind IN ('warning', 'log') ORDER BY e.time_ns"""
    )


def test_warnings_are_kept_and_shown_as_python_shows_them(write, python, scope, query):
    write("app.py", PROGRAM)
    plain, recorded = python("app.py"), scope("run", "app.py")
    assert plain.returncode == 0 and "old API" in plain.stderr
    assert recorded == plain
    kept = events(query)
    assert [(kind, call) for kind, _, call in kept] == [
        ("warning", "deprecated_thing"),
        ("warning", "risky"),
    ]
    assert kept[0][1].startswith("DeprecationWarning: old API (") and ":7)" in kept[0][1]


def test_log_records_at_the_level_asked_for(write, scope, query):
    write("app.py", PROGRAM)
    result = scope("run", "app.py", env=clean_env({"SCOPE_LOG_LEVEL": "WARNING"}))
    assert result.returncode == 0
    logs = [(detail, call) for kind, detail, call in events(query) if kind == "log"]
    assert logs == [("WARNING app: disk at 91%", "risky")]


def test_warnings_are_put_back_when_recording_stops(write, python):
    write(
        "app.py",
        """
        import warnings, scope
        show = warnings._showwarnmsg
        with scope.recording():
            during = warnings._showwarnmsg is show
        print(during, warnings._showwarnmsg is show)
        """,
    )
    result = python("app.py")
    assert (result.returncode, result.stdout, result.stderr) == (0, "False True\n", "")
