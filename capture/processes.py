"""Following a recorded program into the processes it starts.

A forked child (``os.fork``, multiprocessing's fork start method) carries the
recorder along: ``scope.session`` starts a fresh recording in it.  A child that
starts a new interpreter (``subprocess`` running ``sys.executable``,
multiprocessing's spawn and forkserver methods, ``ProcessPoolExecutor``) is
reached through the environment it inherits:

* ``SCOPE_CHILD_OF`` holds the recording's settings as JSON (``ChildSettings``);
* ``PYTHONPATH`` gains a folder holding a ``sitecustomize.py``, which Python
  imports at start-up.  It takes its folder off ``sys.path`` again, starts
  recording (``scope.child``) and hands over to the program's own
  ``sitecustomize`` if there is one; in an interpreter without scope, it only
  steps aside.  With a recording service, the folder is scope's own
  ``hook`` folder: a child whose interpreter starts after its parent has ended
  (a ``Popen`` not waited for) still finds it.  Without one, it is a temporary
  copy, removed when the recording ends: the merge of the children's files is
  over by then.

Both are set in the process's environment with ``os.putenv``, not in
``os.environ``: the program's view of its environment stays what it would be
without scope (a child hides them from its own ``os.environ`` the same way), and
children started with the inherited environment are recorded.  A child given a
copy of ``os.environ`` instead is not.  Nothing is installed anywhere: the
variables are removed when the recording that made them ends.

Every process records into a file of its own in the children folder (DuckDB lets
one process at a time write a file); the top recording merges them into its own
file when it ends (``scope.storage.children``).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import scope

#: the variable a child finds its recording's settings in
ENV_SETTINGS = "SCOPE_CHILD_OF"

#: the folder holding the ``sitecustomize.py`` a child imports at start-up (shipped
#: with scope: any Python must survive it, and it prints nothing)
HOOK_DIR = os.path.join(os.path.dirname(os.path.abspath(scope.__file__)), "hook")


@dataclass(frozen=True)
class ChildSettings:
    """What a child process needs to record like its parent."""

    #: the folder every process of the run writes its own file into
    children_dir: str
    #: the folder holding sitecustomize.py (taken off the child's path)
    hook_dir: str
    #: the recording settings (``scope.config.Config`` fields, JSON-friendly)
    config: dict[str, Any]
    #: the folders whose modules are the user's (the parent's roots)
    roots: list[str]
    #: PYTHONPATH as the program sees it (without the hook folder); None if unset
    python_path: str | None = None
    #: the run's key, when a recording service stores it (its processes share the run)
    run_key: str | None = None

    def to_json(self) -> str:
        """The settings as the environment carries them."""
        return json.dumps(asdict(self))

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> ChildSettings | None:
        """The settings this process inherited, or None if it is not a recorded child."""
        text = (os.environ if environ is None else environ).get(ENV_SETTINGS)
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None


class ChildPropagation:
    """Puts the settings and the temporary hook into the environment, and takes them out."""

    def __init__(
        self,
        children_dir: str,
        config: dict[str, Any],
        roots: list[str],
        run_key: str | None = None,
    ) -> None:
        self.children_dir = children_dir
        self.config = config
        self.roots = roots
        self.run_key = run_key
        self.hook_dir: str | None = None
        #: what the environment carries to children, while installed
        self.settings: ChildSettings | None = None

    def install(self) -> None:
        """Create the hook folder and point the process's environment at it."""
        if self.run_key is None:  # each child writes a file there, merged at the end
            os.makedirs(self.children_dir, exist_ok=True)
        if self.run_key is None:
            import shutil  # storing in the program only: the service's children need neither
            import tempfile

            self.hook_dir = tempfile.mkdtemp(prefix="scope-hook-")
            shutil.copy(os.path.join(HOOK_DIR, "sitecustomize.py"), self.hook_dir)
        else:  # a child started late still finds it; it is its service's to store
            self.hook_dir = HOOK_DIR
        path = os.environ.get("PYTHONPATH")
        self.settings = ChildSettings(
            self.children_dir, self.hook_dir, self.config, self.roots, path, self.run_key
        )
        os.putenv(ENV_SETTINGS, self.settings.to_json())
        os.putenv("PYTHONPATH", self.hook_dir + (os.pathsep + path if path else ""))

    def uninstall(self) -> None:
        """Give the process back the environment ``os.environ`` says it has; remove the hook."""
        if self.hook_dir is None:
            return
        for name in (ENV_SETTINGS, "PYTHONPATH"):
            value = os.environ.get(name)
            if value is None:
                os.unsetenv(name)
            else:
                os.putenv(name, value)
        if self.hook_dir != HOOK_DIR:
            import shutil

            with contextlib.suppress(OSError):
                shutil.rmtree(self.hook_dir)
        self.hook_dir = None
        self.settings = None


def hide_from_environ(settings: ChildSettings) -> None:
    """Show a child's program its environment as its parent's program saw it.

    The variables stay in the process's environment, for its own children.
    """
    environ: Any = os.environ  # its _data, encodekey and encodevalue are not in the stubs
    data: dict[bytes, bytes] = environ._data
    data.pop(environ.encodekey(ENV_SETTINGS), None)
    key = environ.encodekey("PYTHONPATH")
    if settings.python_path is None:
        data.pop(key, None)
    else:
        data[key] = environ.encodevalue(settings.python_path)
