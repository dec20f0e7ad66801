"""``scope exceptions`` shows each kind of exception once, counted, with its newest
example, and says how a SystemExit ended the program; ``--all`` lists each."""

from __future__ import annotations

import json

import pytest

PROGRAM = """
import sys

def check(i):
    if i % 7 == 3:
        raise ValueError(f"bad value {i} at 0x{i * 4096:x}")
    return i

def lookup(key):
    return {}[key]

def run():
    for i in range(70):
        try:
            check(i)
        except ValueError:
            pass
    try:
        lookup("missing")
    except KeyError:
        pass

def main():
    run()
    sys.exit(3)

main()
"""


@pytest.mark.parametrize("level", ["calls", "args"])
def test_alike_exceptions_are_one_entry_with_the_newest_first(write, scope, level):  # type: ignore[no-untyped-def]
    write("app.py", PROGRAM)
    assert scope("run", "--level", level, "app.py").returncode == 3
    kinds = json.loads(scope("exceptions", "--json").stdout)
    assert [(k["count"], k["example"]["type"]) for k in kinds] == [
        (1, "SystemExit"),
        (1, "KeyError"),
        (10, "ValueError"),
    ]
    newest = kinds[2]["example"]
    assert newest["raised_in"]["qualname"] == "check"
    assert newest["caught_in"]["qualname"] == "run"
    if level == "args":
        assert kinds[2]["shape"] == "ValueError('bad value N at 0x…')"
        assert newest["summary"] == "ValueError('bad value 66 at 0x42000')"
    assert kinds[0]["example"]["exit_status"] == 3
    shown = scope("exceptions").stdout
    assert "× 10" in shown and "the newest:" in shown
    assert "ended the program with status 3" in shown
    assert "caught outside your code" not in shown
    every = json.loads(scope("exceptions", "--all", "--json").stdout)
    assert [e["type"] for e in every] == ["ValueError"] * 10 + ["KeyError", "SystemExit"]
    assert len(json.loads(scope("exceptions", "--limit", "2", "--json").stdout)) == 2
