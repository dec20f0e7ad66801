"""The planner: each function's capture level from the configuration, and ``scope plan``.

Levels come from ``level`` and ``levels`` patterns (the last match wins), and
``module:function`` patterns in ``include`` and ``exclude`` narrow them; the
plan is data, printed by ``scope plan`` exactly as a recorded run applies it.
"""

from __future__ import annotations

import json

import pytest
from scope.instrument.analyze import analyze_source
from scope.instrument.plan import PlanSettings, make_plan, pattern_matches

from scope.config import load_config
from scope.errors import ConfigError

SOURCE = """
def handle(request):
    return parse(request)

def parse(text, password=None):
    return [lambda item: item for _ in text]

class Model:
    def save(self):
        def check():
            pass
        return check

    def __repr__(self):
        return "Model()"

def _private():
    pass
"""


def _pythons_own_qualname() -> str:
    namespace: dict[str, object] = {}
    exec(SOURCE, namespace)
    return namespace["parse"]("x")[0].__qualname__  # type: ignore[operator, index, no-any-return]


#: what this Python names parse's lambda: 3.11 counts the list comprehension as a
#: scope of its own, 3.12 inlines it (PEP 709)
PARSE_LAMBDA = _pythons_own_qualname()


def levels(
    settings: PlanSettings, module: str = "app.api", path: str = "app/api.py"
) -> dict[str, tuple[str, str]]:
    plan = make_plan(module, path, analyze_source(SOURCE), settings)
    return {f.qualname: (f.level, f.reason) for f in plan.functions}


@pytest.mark.parametrize(
    "pattern, module, qualname, matches",
    [
        ("app", "app.api", None, True),
        ("app", "application", None, False),
        ("app.*", "app.api", "anything", True),
        ("app.api:Model", "app.api", "Model.save", True),
        ("app.api:Model", "app.api", "Model.save.<locals>.check", True),
        ("app.api:Model", "app.api", "Modeller", False),
        (":parse", "any.module", "parse", True),
        ("*:_*", "app.api", "_private", True),
        ("*:_*", "app.api", "Model.__repr__", False),
    ],
)
def test_patterns_name_modules_and_what_is_nested_in_them(pattern, module, qualname, matches):
    assert pattern_matches(pattern, module, qualname) is matches


def test_the_default_level_applies_where_no_pattern_matches():
    assert set(levels(PlanSettings("args")).values()) >= {("args", "default level")}
    assert levels(PlanSettings("off"))["handle"] == ("off", "default level")


def test_the_last_matching_level_pattern_wins():
    settings = PlanSettings(
        "calls", levels=(("app.api:Model", "full"), ("app.api:Model.save", "off"))
    )
    found = levels(settings)
    assert found["Model.save"] == ("off", "level off by 'app.api:Model.save'")
    assert found["Model.save.<locals>.check"][0] == "off"  # nested under it
    assert found["handle"] == ("calls", "default level")
    # A dunder scope might call while recording a value stays at calls.
    assert found["Model.__repr__"][0] == "calls"
    assert levels(settings, module="other")["Model.save"] == ("calls", "default level")


def test_function_only_and_exclude_patterns_turn_functions_off():
    found = levels(PlanSettings(only=("app.api:handle", "app.api:parse"), exclude=("*:_*",)))
    assert found["handle"][0] == found["parse"][0] == found[PARSE_LAMBDA][0] == "calls"
    assert found["Model.save"] == (
        "off",
        "not named by any only pattern (app.api:handle, app.api:parse)",
    )
    assert found["_private"] == ("off", "excluded by '*:_*'")
    # Patterns of another module do not narrow this one.
    assert levels(PlanSettings(only=("other:handle",)))["Model.save"][0] == "calls"
    # Include adds: its function patterns narrow only a module recorded for them alone.
    assert levels(PlanSettings(include=("app.api:handle",)))["Model.save"][0] == "calls"
    limited = PlanSettings(include=("app.api:handle",)).limited_to(["app.api:handle"])
    assert levels(limited)["Model.save"][0] == "off"
    assert limited.digest() != PlanSettings(include=("app.api:handle",)).digest()


def test_patterns_name_a_script_running_as_main_by_its_stem():
    settings = PlanSettings(levels=(("api:Model.*", "full"),))
    found = levels(settings, module="__main__", path="/project/api.py")
    assert found["Model.save"][0] == "full"
    assert found["handle"][0] == "calls"


def test_lambdas_of_a_scope_share_one_plan_and_redact_by_name():
    plan = make_plan(
        "m",
        "m.py",
        analyze_source("f = lambda a: a\ng = lambda password, b: b\n"),
        PlanSettings("args"),
    )
    (shared,) = plan.functions
    assert (shared.qualname, shared.kind, shared.params) == ("<lambda>", "lambda", ())
    assert shared.redacted == frozenset({"password"})


def test_levels_come_from_pyproject_environment_and_flags(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.scope]\nlevel = 'calls'\n"
        "[tool.scope.levels]\n'app.db' = 'args'\n'app.db:hot' = 'off'\n"
    )
    from_file = load_config(cwd=str(tmp_path), environ={})
    assert from_file.levels == (("app.db", "args"), ("app.db:hot", "off"))
    combined = load_config(
        cwd=str(tmp_path),
        environ={"SCOPE_LEVELS": "app.db:hot=full"},
        overrides={"levels": (("app.db:hot", "calls"),)},
    )
    assert combined.levels[-2:] == (("app.db:hot", "full"), ("app.db:hot", "calls"))
    assert combined.plan_settings().decide("app.db", "hot") == (
        "calls",
        "level calls by 'app.db:hot'",
    )


@pytest.mark.parametrize(
    "environ, fragment",
    [
        ({"SCOPE_LEVELS": "app"}, "PATTERN=LEVEL"),
        ({"SCOPE_LEVELS": "app=loud"}, "must be one of off, calls, args, full"),
        ({"SCOPE_LEVELS": "=args"}, "PATTERN=LEVEL"),
    ],
)
def test_bad_levels_are_refused_naming_the_setting(tmp_path, environ, fragment):
    with pytest.raises(ConfigError, match="SCOPE_LEVELS") as error:
        load_config(cwd=str(tmp_path), environ=environ)
    assert fragment in str(error.value)


def test_scope_plan_shows_decisions_and_levels(project, write, scope):
    write("app/__init__.py", "")
    write("app/api.py", SOURCE)
    write(".venv/pyvenv.cfg", "home = /usr\n")
    write(".venv/lib/dep.py", "def dep():\n    pass\n")
    result = scope("plan", "app", "json", "--level", "app.api:parse=args", "--json")
    assert result.returncode == 0, result.stderr
    reports = {r["module"]: r for r in json.loads(result.stdout)}
    assert set(reports) == {"app", "app.api", "json"}  # the venv is not walked into
    assert reports["json"]["instrumented"] is False
    functions = {f["qualname"]: f for f in reports["app.api"]["functions"]}
    assert functions["parse"]["level"] == "args"
    assert functions["parse"]["redacted"] == ["password"]
    assert (functions["handle"]["line"], functions["Model.save"]["line"]) == (2, 9)
    assert functions[PARSE_LAMBDA]["line"] == 6
    table = scope("plan", "app/api.py")
    assert table.returncode == 0 and "Model.save" in table.stdout and "lambda" in table.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["plan", "no/such/file.py"], "no such file, folder or module"),
        (["plan", "no_such_module"], "no module named 'no_such_module'"),
        (["plan", "json.decoder.x"], "'json.decoder' is not a package"),
        (["plan", "app.py", "--level", "app=loud"], "'loud' is not one of"),
    ],
)
def test_scope_plan_refuses_bad_targets_in_one_line(project, write, scope, args, fragment):
    write("app.py", "def f():\n    pass\n")
    result = scope(*args)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert fragment in result.stderr
