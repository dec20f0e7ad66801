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
    # Include adds: the user's own modules stay recorded, and so does the standard library
    # a pattern names.
    assert selector.decide("other", str(tmp_path / "other.py")).instrument
    json_path = json.__file__
    assert not selector.decide("json", json_path).instrument
    assert ModuleSelector([str(tmp_path)], include=["json"]).decide("json", json_path).instrument


def test_only_replaces_the_users_code_and_include_adds_to_it(tmp_path):
    selector = ModuleSelector([str(tmp_path)], only=["app.*"], include=["json"])
    assert selector.decide("app.core", str(tmp_path / "app" / "core.py")).instrument
    decision = selector.decide("other", str(tmp_path / "other.py"))
    assert (decision.instrument, decision.reason) == (False, "not matched by any only pattern")
    assert selector.decide("json", json.__file__).instrument
    # exclude wins over both
    selector = ModuleSelector([str(tmp_path)], only=["app.*"], exclude=["app.core"])
    assert not selector.decide("app.core", str(tmp_path / "app" / "core.py")).instrument


def test_a_script_running_as_main_is_matched_under_its_stem(tmp_path):
    script = str(tmp_path / "app.py")
    assert ModuleSelector([], only=["app"]).decide("__main__", script).instrument
    assert (
        not ModuleSelector([str(tmp_path)], exclude=["app"]).decide("__main__", script).instrument
    )
    assert ModuleSelector([], only=["app:main"]).decide("__mp_main__", script).instrument
    assert not ModuleSelector([], only=["app"]).decide("__main__", "<string>").instrument


def test_a_file_name_pattern_matches_file_names_not_the_folders_above(tmp_path):
    # pytest --scope leaves test files out with python_files patterns such as these.
    selector = ModuleSelector([str(tmp_path)], exclude=["test_*.py", "conftest.py"])
    inside = tmp_path / "test_project" / "pkg"
    assert selector.decide("pkg", str(inside / "__init__.py")).instrument
    assert not selector.decide("test_pkg", str(inside / "test_pkg.py")).instrument
    assert not selector.decide("conftest", str(inside / "conftest.py")).instrument


def test_function_patterns_select_their_module_and_leave_the_rest_to_the_plan(tmp_path):
    selector = ModuleSelector([str(tmp_path)], include=["app.api:handle*"], exclude=["app:_*"])
    # include app.api:handle* adds module app.api, for those functions only
    decision = selector.decide("app.api", "/elsewhere/app/api.py")
    assert (decision.instrument, decision.functions) == (True, ("app.api:handle*",))
    # a module of the user's stays whole
    decision = selector.decide("app.api", str(tmp_path / "app" / "api.py"))
    assert (decision.instrument, decision.functions) == (True, ())
    assert selector.decide("app.db", str(tmp_path / "app" / "db.py")).instrument
    # only app.api:handle* selects module app.api; the plan narrows it
    selector = ModuleSelector([str(tmp_path)], only=["app.api:handle*"])
    assert selector.decide("app.api", "/elsewhere/app/api.py").instrument
    assert not selector.decide("app.db", str(tmp_path / "app" / "db.py")).instrument
    # exclude app:_* turns functions off, not the modules
    selector = ModuleSelector([str(tmp_path)], exclude=["app:_*"])
    assert selector.decide("app.db", str(tmp_path / "app" / "db.py")).instrument
