"""The rewritten-code cache: a warm run skips libcst, and a stale entry is never used.

The cache lives in scope's own folder (``.scope/cache`` of the project), so it
works under ``PYTHONDONTWRITEBYTECODE``, which every test here sets as the
others do; each test has a project folder of its own, so no test depends on
another's cache.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from scope.instrument.cache import ENTRY_SUFFIX, CodeCache, SourceFacts, entry_key
from scope.instrument.plan import ModulePlan, PlanSettings

from .conftest import clean_env, run

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


def scope_run(project: Path, *args: str, env: dict[str, str] | None = None):
    return run([sys.executable, "-m", "scope", "run", *args], project, env or clean_env())


def entries(folder: Path) -> list[str]:
    """The names of the cache entries anywhere under ``folder``."""
    return sorted(p.name for p in folder.rglob(f"*{ENTRY_SUFFIX}"))


def modules_of(names: list[str]) -> list[str]:
    """The module stems of entry names (``helper-<key>.scope.pyc`` -> ``helper``)."""
    return sorted(name.rpartition("-")[0] for name in names)


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
    assert modules_of(entries(project / ".scope" / "cache")) == ["app", "helper"]
    assert stored_calls(query, 1) == stored_calls(query, 2) == [("main", 1), ("twice", 1)]
    # Nothing beside the sources: plain python never runs the instrumented code.
    assert not (project / "__pycache__").exists()
    plain_env = clean_env()
    plain_env.pop("PYTHONDONTWRITEBYTECODE")
    plain = run([sys.executable, "app.py"], project, plain_env)
    assert plain.stdout == "42 False\n" and plain.stderr == ""
    assert os.listdir(project / "__pycache__") == [f"helper.{sys.implementation.cache_tag}.pyc"]


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
    assert run(optimised, project, clean_env()).stdout == "42 True\n"
    assert run(optimised, project, clean_env()).stdout == "42 False\n"
    assert modules_of(entries(project)) == ["app", "app", "helper", "helper"]


def test_a_corrupt_entry_is_ignored_and_replaced(project, write, query):
    write("app.py", APP)
    write("helper.py", HELPER)
    assert scope_run(project, "app.py").returncode == 0
    (entry,) = (project / ".scope" / "cache").glob(f"helper-*{ENTRY_SUFFIX}")
    entry.write_bytes(entry.read_bytes()[:40])  # torn after the header
    torn = scope_run(project, "app.py")
    assert (torn.returncode, torn.stdout, torn.stderr) == (0, "42 True\n", "")
    assert stored_calls(query, 2) == [("main", 1), ("twice", 1)]
    assert scope_run(project, "app.py").stdout == "42 False\n"  # rewritten whole


def test_python_dash_b_still_caches_in_scopes_own_folder(project, write):
    write("app.py", APP)
    write("helper.py", HELPER)
    dash_b = [sys.executable, "-B", "-m", "scope", "run", "app.py"]
    assert run(dash_b, project).stdout == "42 True\n"
    assert run(dash_b, project).stdout == "42 False\n"
    assert modules_of(entries(project)) == ["app", "helper"]
    assert not (project / "__pycache__").exists()


def test_cache_dir_names_the_folder_and_a_bound_of_zero_keeps_nothing(project, write, tmp_path):
    write("app.py", APP)
    write("helper.py", HELPER)
    elsewhere = tmp_path / "elsewhere"
    env = clean_env({"SCOPE_CACHE_DIR": str(elsewhere)})
    assert scope_run(project, "app.py", env=env).returncode == 0
    assert modules_of(entries(elsewhere)) == ["app", "helper"]
    assert not (project / ".scope" / "cache").exists()
    assert scope_run(project, "app.py", env=env).stdout == "42 False\n"
    off = clean_env({"SCOPE_CACHE_MAX_MB": "0"})
    assert scope_run(project, "app.py", env=off).stdout == "42 True\n"
    assert scope_run(project, "app.py", env=off).stdout == "42 True\n"
    assert not (project / ".scope" / "cache").exists()


def test_a_touched_but_unchanged_source_is_still_warm(project, write):
    write("app.py", APP)
    helper = write("helper.py", HELPER)
    assert scope_run(project, "app.py").returncode == 0
    os.utime(helper, ns=(1_000_000_000, 1_000_000_000))  # as a checkout would leave it
    assert scope_run(project, "app.py").stdout == "42 False\n"  # its hash still matches
    write("helper.py", HELPER.replace("2 * n", "n * 2"))  # same size, new content
    os.utime(helper, ns=(1_000_000_000, 1_000_000_000))
    assert scope_run(project, "app.py").stdout == "42 True\n"


def stored_entry(cache: CodeCache, folder: Path, name: str, source: bytes) -> Path:
    """Store an entry for ``name``.py (written into ``folder``) and return its path."""
    path = folder / f"{name}.py"
    path.write_bytes(source)
    key = entry_key(name, str(path), PlanSettings())
    code = compile(source, str(path), "exec")
    made = ModulePlan(name, str(path), ())
    cache.store(str(path), key, (SourceFacts.of(str(path)), source), made, code)
    entry = cache.entry_path(str(path), key)
    assert entry is not None
    return Path(entry)


def test_the_folder_is_bounded_and_the_entries_used_longest_ago_go_first(tmp_path):
    folder = tmp_path / "cache"
    source = b"x = [" + b"1, " * 2000 + b"]\n"  # an entry of a few kB
    unbounded = CodeCache(str(folder), max_bytes=1 << 30)
    made = [stored_entry(unbounded, tmp_path, f"m{i}", source) for i in range(4)]
    one = made[0].stat().st_size
    cache = CodeCache(str(folder), max_bytes=int(10.5 * one))
    hours_ago = time.time_ns() - 2 * 3600 * 10**9
    for age, entry in enumerate(made):  # hours old: m3 the oldest, then m2, ...
        os.utime(entry, ns=(hours_ago - age * 10**9,) * 2)
    for i in range(4, 10):
        stored_entry(cache, tmp_path, f"m{i}", source)
    assert len(entries(folder)) == 10
    # m3, the oldest by time, is used now: loading it refreshes it.
    path = tmp_path / "m3.py"
    key = entry_key("m3", str(path), PlanSettings())
    assert cache.load(str(path), key, SourceFacts.of(str(path)), path.read_bytes) is not None
    stored_entry(cache, tmp_path, "m10", source)  # past the bound: trimmed to 4/5 of it
    kept = {name.rpartition("-")[0] for name in entries(folder)}
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 8.4 * one
    assert kept == {f"m{i}" for i in range(3, 11)}  # used lately, or made lately


def test_an_entry_larger_than_the_bound_is_not_kept(tmp_path):
    cache = CodeCache(str(tmp_path / "cache"), max_bytes=1000)
    stored_entry(cache, tmp_path, "big", b"x = '" + b"y" * 5000 + b"'\n")
    assert entries(tmp_path) == []


def test_scope_cache_info_and_clear(project, write):
    write("app.py", APP)
    write("helper.py", HELPER)
    assert scope_run(project, "app.py").returncode == 0
    folder = project / ".scope" / "cache"
    (folder / "notes.txt").write_text("the user's own file\n")
    size = sum(p.stat().st_size for p in folder.glob(f"*{ENTRY_SUFFIX}"))
    info = run([sys.executable, "-m", "scope", "cache", "info"], project)
    assert info.returncode == 0
    assert info.stdout.startswith(f"{folder}: 2 entries, ") and "(at most 256 MB)" in info.stdout
    cleared = run([sys.executable, "-m", "scope", "cache", "clear"], project)
    assert cleared.returncode == 0
    assert cleared.stdout == f"removed 2 entries ({size / 1e3:.1f} kB) from {folder}\n"
    assert entries(project) == [] and (folder / "notes.txt").exists()
    assert scope_run(project, "app.py").stdout == "42 True\n"  # instrumented afresh
    again = run([sys.executable, "-m", "scope", "cache", "clear"], project)
    assert again.stdout.startswith("removed 2 entries")


def test_a_bad_cache_setting_is_one_line(project, write):
    write("app.py", APP)
    for variable, value in (("SCOPE_CACHE_MAX_MB", "lots"), ("SCOPE_CACHE_MAX_MB", "-1")):
        result = scope_run(project, "app.py", env=clean_env({variable: value}))
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert "SCOPE_CACHE_MAX_MB" in result.stderr and len(result.stderr.splitlines()) == 1


SLOW_TO_INSTRUMENT = """
import time
from scope import native

def imports_on_a_cold_cache():
    with native.scope_work():  # what the import hook does around instrumenting a module
        time.sleep(0.3)
    return sum(range(1000))

def outer():
    return imports_on_a_cold_cache()

outer()
"""


def test_time_spent_instrumenting_is_not_charged_to_the_open_calls(project, write, query):
    write("app.py", SLOW_TO_INSTRUMENT)
    assert scope_run(project, "app.py").returncode == 0
    rows = query(
        """SELECT f.qualname, c.duration_ns, c.duration_ns - c.suspended_ns, c.suspensions
           FROM call c JOIN function f ON f.run = c.run AND f.id = c.function ORDER BY c.id"""
    )
    assert [row[0] for row in rows] == ["outer", "imports_on_a_cold_cache"]
    for _, wall, active, suspensions in rows:
        assert wall >= 300_000_000  # the wall time is what it was
        assert active < 100_000_000  # the active time leaves scope's work out
        assert suspensions == 0


COLD_IMPORT = """
def load():
    import big
    return big.f0(1)

load()
"""


def test_a_cold_import_inside_a_call_leaves_the_rewrite_out(project, write, query):
    """A module with many functions takes libcst a while; the caller is not charged."""
    write("app.py", COLD_IMPORT)
    write("big.py", "".join(f"def f{i}(a, b=1):\n    return a if b else {i}\n" for i in range(400)))
    result = scope_run(project, "--level", "args", "app.py")
    assert result.returncode == 0, result.stderr
    ((wall, active),) = query(
        """SELECT c.duration_ns, c.duration_ns - c.suspended_ns FROM call c
           JOIN function f ON f.run = c.run AND f.id = c.function WHERE f.qualname = 'load'"""
    )
    assert active < wall / 2  # instrumenting 400 functions outweighs running their defs
