"""A run keeps the program as the user typed it after ``scope run``, and shows it so."""

from __future__ import annotations

import json
import shlex


def test_runs_show_what_the_user_typed(write, scope, query):  # type: ignore[no-untyped-def]
    write("pkg/__init__.py", "")
    write("pkg/tool.py", "import sys\nprint(sys.argv[1:])\n")
    write("app.py", "import sys\nprint(sys.argv)\n")
    typed = [
        ["-m", "pkg.tool", "x", "--flag"],
        ["-c", "import sys; print(sys.argv)", "a b"],
        ["app.py", "y"],
    ]
    for command in typed:
        assert scope("run", *command).returncode == 0
    assert [argv for (argv,) in query("SELECT argv FROM run ORDER BY id")] == typed
    listed = scope("runs").stdout
    for command in typed:
        assert shlex.join(command) in listed
    runs = json.loads(scope("runs", "--json").stdout)
    assert [run["argv"] for run in runs] == typed
