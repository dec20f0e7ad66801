"""``scope view`` as a user runs it: a server on 127.0.0.1 that prints its URL, answers
the page, and stops on Ctrl-C or once idle; ``-o`` still writes the static page."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .conftest import clean_env, wait_for_service_to_leave

PROGRAM = "def f(n):\n    return n if n < 2 else f(n - 1) + f(n - 2)\n\nf(12)\n"


def recorded(project: Path, write, scope) -> None:  # type: ignore[no-untyped-def]
    write("app.py", PROGRAM)
    assert scope("run", "app.py").returncode == 0
    wait_for_service_to_leave(project)


def start_view(project: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """``scope view --no-open ARGS`` in the background, and the URL it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "scope", "view", "--no-open", *args],
        cwd=project,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+/[\w-]+/", line)
    if not found:
        # An empty line is its stdout closing: it is ending, and says why on stderr.
        process.kill()
        _, err = process.communicate(timeout=30)
        raise AssertionError(f"scope view printed {line!r}, and on stderr: {err}")
    return process, found.group(0)


def test_view_serves_the_run_and_stops_on_ctrl_c(project, write, scope) -> None:  # type: ignore[no-untyped-def]
    recorded(project, write, scope)
    process, url = start_view(project)
    try:
        with urllib.request.urlopen(url + "api/run", timeout=30) as answer:
            run = json.load(answer)
        assert run["run"] == 1 and "__main__.f" in run["functions"].values()
        base = url.rsplit("/", 2)[0] + "/"
        try:
            urllib.request.urlopen(base + "api/run", timeout=30)
            raise AssertionError("answered without the token")
        except urllib.error.HTTPError as refused:
            assert refused.code == 403
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped" in out


def test_view_stops_once_idle(project, write, scope) -> None:  # type: ignore[no-untyped-def]
    recorded(project, write, scope)
    began = time.monotonic()
    process, _ = start_view(project, "--idle", "1")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "idle" in out and time.monotonic() - began < 30


def test_view_output_still_writes_the_static_page(project, write, scope) -> None:  # type: ignore[no-untyped-def]
    recorded(project, write, scope)
    result = scope("view", "-o", "page.html")
    assert result.returncode == 0, result.stderr
    page = (project / "page.html").read_text()
    assert "Content-Security-Policy" in page and "__main__.f" in page


def test_view_of_a_missing_run_is_one_line(project, write, scope) -> None:  # type: ignore[no-untyped-def]
    recorded(project, write, scope)
    result = scope("view", "--no-open", "--run", "7")
    assert result.returncode != 0
    assert "no run 7" in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(project / "scope-run7.html")


LONG_NAME = (
    "def a_function_with_a_rather_long_descriptive_name(i):\n    return i\n\n"
    "a_function_with_a_rather_long_descriptive_name(1)\n"
)


def test_a_search_that_backtracks_forever_does_not_hang_the_server(project, write, scope) -> None:  # type: ignore[no-untyped-def]
    # Python's re would try 2**46 ways to match this name, holding the GIL: every
    # request, and Ctrl-C, would wait for it.  The timeout only guards a hang.
    write("app.py", LONG_NAME)
    assert scope("run", "app.py").returncode == 0
    wait_for_service_to_leave(project)
    process, url = start_view(project)
    try:
        pattern = urllib.parse.quote(r"(\w|\w)*Z")
        with urllib.request.urlopen(f"{url}api/search?pattern={pattern}", timeout=120) as answer:
            assert json.load(answer) == {"functions": []}
        with urllib.request.urlopen(f"{url}api/search?pattern=descriptive_n.me%24") as answer:
            assert len(json.load(answer)["functions"]) == 1
    finally:
        process.kill()
        process.communicate(timeout=30)


FOLLOWED = """
import pathlib, time

def tick(i):
    return i

i = 0
while not pathlib.Path("stop").exists():
    tick(i)
    i += 1
    time.sleep(0.01)
"""


def run_listed(scope) -> bool:  # type: ignore[no-untyped-def]
    """Whether ``scope runs`` lists a run yet."""
    runs = scope("runs", "--json")
    return runs.returncode == 0 and bool(json.loads(runs.stdout))


def ask_run(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url + "api/run", timeout=30) as answer:
        return json.load(answer)  # type: ignore[no-any-return]


def test_view_follows_a_run_being_recorded(project, write, scope) -> None:  # type: ignore[no-untyped-def]
    write("app.py", FOLLOWED)
    program = subprocess.Popen(
        [sys.executable, "-m", "scope", "run", "app.py"], cwd=project, env=clean_env()
    )
    try:
        # A page asked for before the run has begun says there is no recording yet.
        deadline = time.monotonic() + 60
        while not run_listed(scope) and time.monotonic() < deadline:
            time.sleep(0.1)
        process, url = start_view(project)
    except BaseException:
        (project / "stop").write_text("")
        program.wait(timeout=60)
        raise
    try:
        try:
            run = ask_run(url)
            deadline = time.monotonic() + 60
            # Until its functions and calls are stored (a batch's functions can be
            # stored a moment before its calls).
            while not (run["functions"] and run["lanes"]) and time.monotonic() < deadline:
                time.sleep(0.2)
                run = ask_run(url)
            assert run["live"] is True
            # A run being recorded has no thread rows yet: its calls still need a lane.
            assert [lane["thread"] for lane in run["lanes"]] == [1]  # type: ignore[attr-defined]
            # The flame graph and top functions of a window come through the service too.
            span = run["span_ns"]
            for route in ("flame", "flame?by=self", f"top?since=0&until={span}"):
                with urllib.request.urlopen(f"{url}api/{route}", timeout=60) as answer:
                    assert answer.status == 200 and json.loads(answer.read())
        finally:
            (project / "stop").write_text("")
            assert program.wait(timeout=60) == 0
        wait_for_service_to_leave(project)
        # The recording service the page was reading through has gone: read the file.
        run = ask_run(url)
        assert run["live"] is False and run["lanes"]
        with urllib.request.urlopen(url + "api/window?since=0&until=1000&pixel=1") as answer:
            assert answer.status == 200
        with urllib.request.urlopen(url + "api/flame", timeout=60) as answer:
            assert json.loads(answer.read())["nodes"]
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "stopped" in out


def test_a_run_recorded_while_the_page_is_open_is_stored(project, write, scope) -> None:  # type: ignore[no-untyped-def]
    # The page may stay open for half an hour: meanwhile the file must not stay
    # locked, or the next `scope run` could not store its run (DuckDB: one writer,
    # no writer while a reader has the file open).
    recorded(project, write, scope)
    process, url = start_view(project)
    try:
        assert ask_run(url)["run"] == 1
        again = scope("run", "app.py")
        assert again.returncode == 0 and "did not confirm" not in again.stderr, again.stderr
        wait_for_service_to_leave(project)
        assert len(ask_run(url)["functions"]) == 1  # type: ignore[arg-type]
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in err, err
    runs = scope("runs", "--json")
    assert [run["id"] for run in json.loads(runs.stdout)] == [1, 2], runs.stderr


BROWSER = """
import pathlib, sys
pathlib.Path(sys.argv[1]).write_text(repr(sys.argv[2:]))
"""


def test_the_browser_is_not_given_the_token_on_its_command_line(project, write, scope) -> None:  # type: ignore[no-untyped-def]
    # Every user of the machine can read a process's command line (ps): the browser
    # is given a file of the user's own that sends it on to the address.
    recorded(project, write, scope)
    write("browser.py", BROWSER)
    given = project / "given"
    env = clean_env({"DISPLAY": ":0", "BROWSER": f"{sys.executable} browser.py {given} %s"})
    process = subprocess.Popen(
        [sys.executable, "-m", "scope", "view"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        found = re.search(r"http://127\.0\.0\.1:\d+/([\w-]+)/", process.stdout.readline())
        assert found
        deadline = time.monotonic() + 60
        while not given.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        [argument] = ast.literal_eval(given.read_text())
        assert found.group(1) not in argument
        opened = Path(argument.removeprefix("file://"))
        assert found.group(0) in opened.read_text()
        assert opened.stat().st_mode & 0o077 == 0
        assert ask_run(found.group(0))["run"] == 1  # serving: Ctrl-C now stops it
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in err, err
    assert not opened.exists()  # cleaned away as the server stops
