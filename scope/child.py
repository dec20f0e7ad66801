"""Recording a child process of a recorded program (see ``scope.capture.processes``).

``start`` is what the temporary ``sitecustomize`` runs in a new interpreter;
``record_child`` starts the child's recording, also in a forked child.  A
child's recording goes to a file of its own in the run's children folder; if it
cannot start, a ``<pid>.failed`` note there says why, and the run reports it:
nothing is ever printed in a child, whose output its parent may be reading.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from dataclasses import fields

from scope import native
from scope.capture.processes import ChildSettings, hide_from_environ, without_hook_dir
from scope.config import Config
from scope.session import Recorder, current_recorder

#: Config fields that hold tuples (JSON brings them back as lists)
_TUPLES = ("include", "exclude", "redact", "audit")


def start(hook_file: str) -> None:
    """Start recording this interpreter if its parent is recorded (from sitecustomize)."""
    settings = ChildSettings.from_environment()
    without_hook_dir(sys.path, os.path.dirname(os.path.abspath(hook_file)))
    if settings is not None:
        hide_from_environ(settings)
    _hand_over_sitecustomize()
    if settings is not None and current_recorder() is None:
        record_child(settings)


def _hand_over_sitecustomize() -> None:
    """Run the program's own ``sitecustomize``, which scope's stood in front of, if any."""
    ours = sys.modules.pop("sitecustomize", None)
    try:
        importlib.import_module("sitecustomize")
    except ModuleNotFoundError as exc:
        if exc.name != "sitecustomize":
            raise
        # importlib expects the module it is executing to be there when it ends
        if ours is not None:
            sys.modules["sitecustomize"] = ours


def child_config(settings: ChildSettings) -> Config:
    """The parent's settings, recording into this process's own file."""
    known = {f.name for f in fields(Config)}
    values = {k: v for k, v in settings.config.items() if k in known and k != "sources"}
    for key in _TUPLES:
        values[key] = tuple(values.get(key, ()))
    values["levels"] = tuple(tuple(pair) for pair in values.get("levels", ()))
    values["db"] = os.path.join(settings.children_dir, f"{os.getpid()}.duckdb")
    return Config(**values)


def record_child(settings: ChildSettings) -> Recorder | None:
    """Record this process into its own file of the run; None (and a note) if it cannot."""
    try:
        recorder = Recorder(child_config(settings), child=settings)
        recorder.start()
        native.note_exit_status(os.path.join(settings.children_dir, f"{os.getpid()}.status"))
        return recorder
    except Exception as exc:
        note = os.path.join(settings.children_dir, f"{os.getpid()}.failed")
        with contextlib.suppress(OSError), open(note, "w") as f:
            f.write(f"process {os.getpid()} {sys.argv!r} was not recorded: {exc}")
        return None
