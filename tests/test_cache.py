"""The rewritten-code cache: a warm run skips libcst, and a stale entry is never used.

These runs let Python write bytecode (the other tests forbid it, so that no test
depends on another's cache), in a fresh project folder each.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from scope.instrument.plan import PlanSettings

from scope import __version__

from .conftest import clean_env, run

#: the default settings' entries: scope's version and the digest of the plan settings
TAG = f"{sys.implementation.cache_tag}.scope-{__version__}-{PlanSettings().digest()}"

APP = """
import sys
import helper

def main():
    return helper.twice(21)

print(main(), "libcst" in sys.modules)
"""

HELPER = """
def twice(n):
    return 2 * n
"""


def caching_env(**extra: str) -> dict[str, str]:
    env = clean_env(extra)
    env.pop("PYTHONDONTWRITEBYTECODE")
    return env


def scope_run(project: Path, *args: str, env: dict[str, str] | None = None):
    return run([sys.executable, "-m", "scope", "run", *args], project, env or caching_env())


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.scope-*.pyc"))


def stored_calls(query, run_id: int) -> list[tuple[str, int]]:
    return query(
        """SELECT f.qualname, count(*) FROM call c
           JOIN function f ON f.run = c.run AND f.id = c.function
           WHERE c.run = ? GROUP BY ALL ORDER BY ALL""",
        [run_id],
    )


def test_a_warm_run_uses_the_cache_and_records_the_same(project, write, query):
    write("app.py", APP)
    write("helper.py", HELPER)
    cold, warm = scope_run(project, "app.py"), scope_run(project, "app.py")
    assert cold.stdout == "42 True\n"  # instrumenting needed libcst
    assert warm.stdout == "42 False\n"  # the cache did not
    assert entries(project) == [f"app.{TAG}.pyc", f"helper.{TAG}.pyc"]
    assert stored_calls(query, 1) == stored_calls(query, 2) == [("main", 1), ("twice", 1)]
    # Plain python never runs the instrumented code: it has its own bytecode.
    plain = run([sys.executable, "app.py"], project, caching_env())
    assert plain.stdout == "42 False\n" and plain.stderr == ""
    assert (project / "__pycache__" / f"helper.{sys.implementation.cache_tag}.pyc").exists()


def test_a_changed_source_or_setting_is_instrumented_afresh(project, write, query):
    write("app.py", APP)
    write("helper.py", HELPER)
    assert scope_run(project, "app.py").returncode == 0
    write("helper.py", HELPER + "\ndef unused():\n    pass\n")
    changed = scope_run(project, "app.py")
    assert changed.stdout == "42 True\n"
    assert "unused" in {r[0] for r in query("SELECT qualname FROM function WHERE run = 2")}
    at_args = scope_run(project, "--level", "args", "app.py")
    assert at_args.stdout == "42 True\n"
    assert query("SELECT name, value FROM value WHERE run = 3 AND role = 'argument'") == [
        ("n", "21")
    ]
    # Each setting has its own entry, so going back to the default level is warm.
    assert len(entries(project)) == 4
    assert scope_run(project, "app.py").stdout == "42 False\n"


def test_optimised_runs_have_entries_of_their_own(project, write):
    write("app.py", APP)
    write("helper.py", HELPER)
    assert scope_run(project, "app.py").returncode == 0
    optimised = [sys.executable, "-O", "-m", "scope", "run", "app.py"]
    assert run(optimised, project, caching_env()).stdout == "42 True\n"
    assert run(optimised, project, caching_env()).stdout == "42 False\n"
    names = entries(project)
    assert len(names) == 4 and sum(".opt-1.scope-" in name for name in names) == 2


def test_a_corrupt_entry_is_ignored_and_replaced(project, write, query):
    write("app.py", APP)
    write("helper.py", HELPER)
    assert scope_run(project, "app.py").returncode == 0
    (entry,) = (project / "__pycache__").glob("helper.*.scope-*.pyc")
    entry.write_bytes(entry.read_bytes()[:40])  # torn after the header
    torn = scope_run(project, "app.py")
    assert (torn.returncode, torn.stdout, torn.stderr) == (0, "42 True\n", "")
    assert stored_calls(query, 2) == [("main", 1), ("twice", 1)]
    assert scope_run(project, "app.py").stdout == "42 False\n"  # rewritten whole


def test_no_entry_is_written_under_dont_write_bytecode(project, write):
    write("app.py", APP)
    write("helper.py", HELPER)
    env = clean_env()  # PYTHONDONTWRITEBYTECODE=1
    assert scope_run(project, "app.py", env=env).stdout == "42 True\n"
    assert entries(project) == []


def test_pycache_prefix_is_honoured(project, write, tmp_path):
    write("app.py", APP)
    write("helper.py", HELPER)
    prefix = tmp_path / "prefix"
    env = caching_env(PYTHONPYCACHEPREFIX=str(prefix))
    assert scope_run(project, "app.py", env=env).returncode == 0
    assert not (project / "__pycache__").exists()
    assert len(entries(prefix)) == 2
    assert scope_run(project, "app.py", env=env).stdout == "42 False\n"


def test_a_touched_but_unchanged_source_is_still_warm(project, write):
    write("app.py", APP)
    helper = write("helper.py", HELPER)
    assert scope_run(project, "app.py").returncode == 0
    os.utime(helper, ns=(1_000_000_000, 1_000_000_000))  # as a checkout would leave it
    assert scope_run(project, "app.py").stdout == "42 False\n"  # its hash still matches
    write("helper.py", HELPER.replace("2 * n", "n * 2"))  # same size, new content
    os.utime(helper, ns=(1_000_000_000, 1_000_000_000))
    assert scope_run(project, "app.py").stdout == "42 True\n"
