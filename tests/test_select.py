"""Which modules are the user's: under the roots, never stdlib, site-packages, venvs or scope."""

from __future__ import annotations

import json
import os
import sysconfig

import click
from scope.instrument.select import ModuleSelector

import scope


def test_user_code_under_the_roots_is_instrumented(tmp_path):
    selector = ModuleSelector([str(tmp_path)])
    assert selector.decide("app", str(tmp_path / "app.py")).instrument
    assert not selector.decide("other", "/somewhere/else/other.py").instrument


def test_stdlib_third_party_and_scope_are_never_instrumented(tmp_path):
    selector = ModuleSelector(["/"])
    assert not selector.decide("json", json.__file__).instrument
    assert not selector.decide("click", click.__file__).instrument
    assert selector.decide("scope", scope.__file__).reason == "scope itself"
    stdlib = sysconfig.get_paths()["stdlib"]
    assert not selector.decide("os", os.path.join(stdlib, "os.py")).instrument


def test_a_virtualenv_inside_the_project_is_not_user_code(tmp_path):
    venv = tmp_path / ".venv"
    (venv / "lib").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr\n")
    selector = ModuleSelector([str(tmp_path)])
    decision = selector.decide("dep", str(venv / "lib" / "dep.py"))
    assert not decision.instrument and "virtual environment" in decision.reason


def test_include_and_exclude_patterns(tmp_path):
    selector = ModuleSelector(
        [str(tmp_path)], include=["app.*", "*/extra/*.py"], exclude=["app.vendored"]
    )
    assert selector.decide("app.core", str(tmp_path / "app" / "core.py")).instrument
    assert selector.decide("tools", "/opt/extra/tools.py").instrument
    assert not selector.decide("app.vendored.six", str(tmp_path / "app/vendored/six.py")).instrument
    # With include patterns, unmatched modules are left alone even under the roots.
    assert not selector.decide("other", str(tmp_path / "other.py")).instrument


def test_a_file_name_pattern_matches_file_names_not_the_folders_above(tmp_path):
    # pytest --scope leaves test files out with python_files patterns such as these.
    selector = ModuleSelector([str(tmp_path)], exclude=["test_*.py", "conftest.py"])
    inside = tmp_path / "test_project" / "pkg"
    assert selector.decide("pkg", str(inside / "__init__.py")).instrument
    assert not selector.decide("test_pkg", str(inside / "test_pkg.py")).instrument
    assert not selector.decide("conftest", str(inside / "conftest.py")).instrument


def test_function_patterns_select_their_module_and_leave_the_rest_to_the_plan(tmp_path):
    selector = ModuleSelector([str(tmp_path)], include=["app.api:handle*"], exclude=["app:_*"])
    # include app.api:handle* includes module app.api (the plan then narrows it)
    assert selector.decide("app.api", "/elsewhere/app/api.py").instrument
    assert not selector.decide("app.db", str(tmp_path / "app" / "db.py")).instrument
    # exclude app:_* turns functions off, not the modules
    selector = ModuleSelector([str(tmp_path)], exclude=["app:_*"])
    assert selector.decide("app.db", str(tmp_path / "app" / "db.py")).instrument
