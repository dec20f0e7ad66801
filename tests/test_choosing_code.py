"""What the user asks to record is what a run records, and ``scope plan`` says the same.

``--include`` adds modules to the user's own code, ``--only`` replaces it,
and both name a script running as ``__main__`` by its file's stem, as
``scope plan`` does.  A pattern that names nothing is pointed out once: in
``scope plan``'s output, and in the run's problems, never on the program's
stderr.
"""

from __future__ import annotations

import json

from .conftest import clean_env

APP = """
import colorsys


class Account:
    def __init__(self, balance):
        self.balance = balance

    def deposit(self, amount):
        self.balance += amount
        return self.balance


def helper(value):
    return colorsys.rgb_to_hsv(value, 0.5, 0.25)


def main():
    account = Account(10)
    account.deposit(5)
    print(helper(account.balance / 100))


main()
"""


def recorded(query) -> dict[tuple[str, str], str]:  # type: ignore[no-untyped-def]
    """(module, function) -> level, for each function the latest run called."""
    rows = query(
        """SELECT DISTINCT f.module, f.qualname, f.level FROM call c
           JOIN function f ON f.run = c.run AND f.id = c.function
           WHERE c.run = (SELECT max(id) FROM run)"""
    )
    return {(module, qualname): level for module, qualname, level in rows}


def planned(scope, *args: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """function -> level, as ``scope plan app.py ARGS`` plans them."""
    result = scope("plan", "app.py", *args, "--json")
    assert result.returncode == 0, result.stderr
    (report,) = json.loads(result.stdout)
    return {f["qualname"]: f["level"] for f in report["functions"]}


def test_include_adds_a_module_to_the_users_code(write, scope, python):  # type: ignore[no-untyped-def]
    write("app.py", APP)
    result = scope("run", "--include", "colorsys", "app.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == python("app.py").stdout


def test_include_adds_and_only_replaces(write, scope, query):  # type: ignore[no-untyped-def]
    write("app.py", APP)
    assert scope("run", "--include", "colorsys", "app.py").returncode == 0
    functions = recorded(query)
    assert {("__main__", "main"), ("__main__", "helper"), ("colorsys", "rgb_to_hsv")} <= set(
        functions
    )
    only = ("--only", "app:helper", "--include", "colorsys:rgb_to_hsv")
    assert scope("run", *only, "app.py").returncode == 0
    assert set(recorded(query)) == {("__main__", "helper"), ("colorsys", "rgb_to_hsv")}


def test_a_level_pattern_for_the_script_is_run_as_planned(write, scope, query):  # type: ignore[no-untyped-def]
    write("app.py", APP)
    option = ("--level", "app:Account.*=full")
    plan = planned(scope, *option)
    assert plan["Account.deposit"] == plan["Account.__init__"] == "full"
    assert plan["helper"] == "calls"
    assert scope("run", *option, "app.py").returncode == 0
    functions = recorded(query)
    assert functions[("__main__", "Account.deposit")] == plan["Account.deposit"]
    assert functions[("__main__", "helper")] == plan["helper"]
    ((amount,),) = query(
        """SELECT v.value FROM value v JOIN call c ON c.run = v.run AND c.id = v.call
           JOIN function f ON f.run = c.run AND f.id = c.function
           WHERE f.qualname = 'Account.deposit' AND v.name = 'amount'"""
    )
    assert amount == "5"


def test_a_pattern_that_names_nothing_is_pointed_out_once(write, scope, python, query):  # type: ignore[no-untyped-def]
    write("app.py", APP)
    typo = ("--level", "app:Acount.*=full", "--only", "app", "--include", "jsn")
    noted = scope("plan", "app.py", *typo)
    assert noted.returncode == 0
    assert noted.stdout.count("matched nothing") == 2
    assert "note: --level 'app:Acount.*' matched nothing in the modules explained" in noted.stdout
    assert "note: --include 'jsn' matched nothing" in noted.stdout
    run = scope("run", *typo, "app.py")
    assert run.returncode == 0
    assert run.stderr == python("app.py").stderr  # not on the program's stderr
    ((problems,),) = query("SELECT problems FROM run ORDER BY id DESC LIMIT 1")
    assert problems == [
        "--level 'app:Acount.*' matched nothing that this run loaded",
        "--include 'jsn' matched nothing that this run loaded",
    ]


TOOL = """
def shout(text):
    return text.upper()


print(shout("installed tool ran"))
"""


def test_a_module_run_with_m_is_recorded_even_when_installed(project, write, scope, query):  # type: ignore[no-untyped-def]
    # A package under a site-packages folder is third-party: never the user's code...
    write("env/site-packages/tool/__init__.py", "")
    write("env/site-packages/tool/__main__.py", TOOL)
    write("app.py", "import runpy\nrunpy.run_module('tool', run_name='__main__')\n")
    env = clean_env({"PYTHONPATH": str(project / "env" / "site-packages")})
    assert scope("run", "app.py", env=env).stdout == "INSTALLED TOOL RAN\n"
    assert recorded(query) == {}
    # ...unless the user asked to run it: then it is what they want to look at.
    result = scope("run", "-m", "tool", env=env)
    assert result.returncode == 0, result.stderr
    assert recorded(query) == {("tool.__main__", "shout"): "calls"}


def test_every_query_of_a_run_without_calls_says_why_once(write, scope, python):  # type: ignore[no-untyped-def]
    write("app.py", "print('no functions here')\n")
    run = scope("run", "app.py")
    assert (run.stdout, run.stderr) == (python("app.py").stdout, "")
    for command in (["calls"], ["top"], ["tree"], ["exceptions"], ["calls", "--json"]):
        answer = scope(*command)
        assert answer.returncode == 0, answer.stderr
        assert answer.stderr.startswith("scope: run 1 recorded no calls: no module of yours with")
    write("lib.py", "def unused():\n    pass\n")
    write("app.py", "import lib\n")
    assert scope("run", "--exclude", "lib", "app.py").returncode == 0
    said = scope("calls").stderr
    assert said.startswith("scope: run 2 recorded no calls: no module of yours with a function")
    assert "--include or --only" in said
    write("app.py", "import lib\n")
    assert scope("run", "app.py").returncode == 0
    said = scope("top").stderr
    assert said == "scope: run 3 recorded no calls: no function of lib ran while it recorded\n"


def test_patterns_scope_adds_itself_are_never_reported(write, scope, python, query):  # type: ignore[no-untyped-def]
    # -m adds its package to include; pytest --scope adds the test files to exclude.
    write("pkg/__init__.py", "")
    write("pkg/tool.py", "def work():\n    return 1\n\nwork()\n")
    assert scope("run", "-m", "pkg.tool").returncode == 0
    # The smallest suite pytest --scope records: one test of the code it tests.
    write("test_one.py", "from pkg.tool import work\n\ndef test_one():\n    assert work() == 1\n")
    assert python("-m", "pytest", "--scope", "-q", "-p", "no:cacheprovider").returncode == 0
    assert query("SELECT problems FROM run ORDER BY id") == [([],), ([],)]


def test_an_include_of_the_users_own_module_is_not_reported(write, scope, query):  # type: ignore[no-untyped-def]
    # Include used to restrict: a habit of naming one's own package there is harmless.
    write("lib.py", "def work():\n    return 1\n")
    write("app.py", "import lib\nlib.work()\n")
    assert scope("run", "--include", "lib", "--include", "nothing_here", "app.py").returncode == 0
    assert query("SELECT problems FROM run") == [
        (["--include 'nothing_here' matched nothing that this run loaded"],)
    ]
