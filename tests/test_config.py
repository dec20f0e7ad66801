"""Configuration: pyproject, then SCOPE_* variables, then flags; validated, naming the key."""

from __future__ import annotations

import os

import pytest

from scope.config import DEFAULT_DB, load_config
from scope.errors import ConfigError

from .conftest import wait_for_service_to_leave


def test_defaults_put_the_recording_in_the_project_root(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    config = load_config(cwd=str(sub), environ={})
    assert config.project_root == str(tmp_path)
    assert config.db == os.path.join(str(tmp_path), DEFAULT_DB)
    assert (config.level, config.overflow, config.max_calls_per_function) == (
        "calls",
        "block",
        100_000,
    )


def test_later_sources_win(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.scope]\nlevel = 'args'\nexclude = ['a.*']\nring_size = 4096\ndb = 'rec/x.duckdb'\n"
    )
    from_file = load_config(cwd=str(tmp_path), environ={})
    assert (from_file.level, from_file.exclude, from_file.ring_size) == ("args", ("a.*",), 4096)
    assert from_file.db == os.path.join(str(tmp_path), "rec/x.duckdb")
    from_env = load_config(
        cwd=str(tmp_path), environ={"SCOPE_LEVEL": "full", "SCOPE_EXCLUDE": "b.*, c"}
    )
    assert (from_env.level, from_env.exclude) == ("full", ("b.*", "c"))
    from_flag = load_config(
        cwd=str(tmp_path), environ={"SCOPE_LEVEL": "full"}, overrides={"level": "off", "db": None}
    )
    assert from_flag.level == "off" and from_flag.sources["level"] == "on the command line"
    assert from_flag.db == from_file.db


def test_unknown_scope_variables_are_left_to_other_tools(tmp_path):
    assert load_config(cwd=str(tmp_path), environ={"SCOPE_CORPUS_CACHE": "/x"}).level == "calls"


@pytest.mark.parametrize(
    "toml, fragment",
    [
        ("levle = 'calls'", "unknown key 'levle'"),
        ("level = 'loud'", "level in [tool.scope]"),
        ("ring_size = 12", "between 1024"),
        ("max_calls_per_function = -1", "max_calls_per_function"),
        ("include = 'x'", None),
        ("include = [1]", "non-string pattern"),
        ("overflow = 'wait'", "drop, block"),
        ("db = ''", "non-empty"),
    ],
)
def test_bad_pyproject_values_name_the_key(tmp_path, toml, fragment):
    (tmp_path / "pyproject.toml").write_text(f"[tool.scope]\n{toml}\n")
    if fragment is None:
        assert load_config(cwd=str(tmp_path), environ={}).include == ("x",)
        return
    with pytest.raises(ConfigError, match=r".*") as info:
        load_config(cwd=str(tmp_path), environ={})
    assert fragment in str(info.value)


def test_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(cwd=str(tmp_path), environ={"SCOPE_RING_SIZE": "lots"})
    assert "SCOPE_RING_SIZE" in str(info.value)


@pytest.mark.parametrize("storer", ["service", "program"])
def test_recording_through_a_link_stores_into_its_target(
    project, write, scope, storer, monkeypatch
):
    # The service's sandbox allows the recording's files by name: given the link's
    # name, DuckDB's log beside the target was refused and the run failed.
    if storer == "program":
        monkeypatch.setenv("SCOPE_TESTS_SERVICE", "0")
    (project / "elsewhere").mkdir()
    (project / "link.duckdb").symlink_to(project / "elsewhere" / "r.duckdb")
    write("app.py", "def f():\n    return 1\n\nprint(f())\n")
    for _ in range(2):
        result = scope("run", "--db", "link.duckdb", "app.py")
        assert result.returncode == 0 and result.stdout == "1\n", result.stderr
        wait_for_service_to_leave(project, db=project / "elsewhere" / "r.duckdb")
    runs = scope("runs", "--db", "link.duckdb", "--json")
    assert runs.returncode == 0 and runs.stdout.count('"argv"') == 2, runs.stderr
    assert (project / "link.duckdb").is_symlink()
