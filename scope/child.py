"""Recording a child process of a recorded program (see ``scope.capture.processes``).

``start`` is what the temporary ``sitecustomize`` runs in a new interpreter;
``record_child`` starts the child's recording, also in a forked child.  A
child's recording goes to a file of its own in the run's children folder; if it
cannot start, a ``<pid>.failed`` note there says why, and the run reports it:
nothing is ever printed in a child, whose output its parent may be reading.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import fields

from scope import native
from scope.capture.processes import ChildSettings, hide_from_environ
from scope.config import Config
from scope.instrument.hook import file_reader
from scope.session import Recorder, current_recorder

#: Config fields that hold tuples (JSON brings them back as lists)
_TUPLES = ("include", "exclude", "only", "redact", "audit")


def start() -> None:
    """Start recording this interpreter if its parent is recorded (from sitecustomize).

    The hook has taken its folder off ``sys.path``; it hands over to the
    program's own ``sitecustomize`` after this, which is then recorded too.
    """
    settings = ChildSettings.from_environment()
    if settings is not None:
        hide_from_environ(settings)
    if settings is not None and current_recorder() is None:
        recorder = record_child(settings)
        if recorder is not None:
            _take_over_main(recorder)


def program_of(orig_argv: list[str]) -> tuple[str, str] | None:
    """("script", path) or ("code", text) that the interpreter will run, else None.

    None for ``-m`` (imported, so instrumented anyway), stdin and the REPL.
    """
    words = iter(orig_argv[1:])
    for word in words:
        if word == "--":
            script = next(words, None)
            return ("script", script) if script else None
        if not word.startswith("-") or word == "-":
            return ("script", word) if word != "-" else None
        if word in ("-W", "-X"):
            next(words, None)
            continue
        if word.startswith(("-W", "-X", "--")):
            continue
        flags = word[1:]
        for position, flag in enumerate(flags):
            if flag == "c":
                text = flags[position + 1 :] or next(words, None)
                return ("code", text) if text is not None else None
            if flag == "m":
                return None
    return None


def _take_over_main(recorder: Recorder) -> None:
    """Have the interpreter's own program (a script of the user's, or -c text) run instrumented."""
    program = program_of(sys.orig_argv)
    if program is None or sys.flags.inspect or recorder.instrumenter is None:
        return
    kind, value = program
    instrumenter = recorder.instrumenter
    read: Callable[[], bytes]
    if kind == "code":
        filename = "<string>"
        read = value.encode
    else:
        filename = value if os.path.isabs(value) else os.path.join(os.getcwd(), value)
        read = file_reader(filename)
    decision = recorder.decision_for("__main__", filename)
    if not decision.instrument:
        return

    def compile_main(code: object) -> object:
        if current_recorder() is not recorder:
            return None
        return instrumenter.compile("__main__", filename, read, decision.functions)

    native.take_over_main(filename, compile_main)


def child_config(settings: ChildSettings) -> Config:
    """The parent's settings, recording into this process's own file."""
    known = {f.name for f in fields(Config)}
    values = {k: v for k, v in settings.config.items() if k in known and k != "sources"}
    for key in _TUPLES:
        values[key] = tuple(values.get(key, ()))
    values["levels"] = tuple(tuple(pair) for pair in values.get("levels", ()))
    if settings.run_key is None:  # its own file, merged into the run at its end
        values["db"] = os.path.join(settings.children_dir, f"{os.getpid()}.duckdb")
    return Config(**values)


def record_child(settings: ChildSettings) -> Recorder | None:
    """Record this process into its own file of the run; None (and a note) if it cannot."""
    try:
        recorder = Recorder(child_config(settings), child=settings)
        recorder.start()
        if settings.run_key is None:
            native.note_exit_status(os.path.join(settings.children_dir, f"{os.getpid()}.status"))
        return recorder
    except Exception as exc:
        note = os.path.join(settings.children_dir, f"{os.getpid()}.failed")
        with contextlib.suppress(OSError), open(note, "w") as f:
            f.write(f"process {os.getpid()} {sys.argv!r} was not recorded: {exc}")
        return None
