"""Records a child process of a recorded program: scope puts this folder first on PYTHONPATH.

Python imports it at start-up in every interpreter the program starts, also one
that cannot import scope (another interpreter, another venv).  Whatever happens,
the child must see what it would without scope: this takes its folder off
``sys.path``, records the child if scope can (``scope.child``), then hands over to
the ``sitecustomize`` it stood in front of (the user's or the distribution's),
which is then the one imported.  If there is none, the import fails as it does
without scope, which ``site`` passes over in silence.  It prints nothing.

Any Python may import it: it keeps to Python 2's syntax, with type comments.
"""

import os
import sys


def leave_path():
    # type: () -> None
    """Take this file's folder off ``sys.path`` (and its finder off the cache)."""
    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    for entry in [p for p in sys.path if os.path.isabs(p) and os.path.realpath(p) == here]:
        sys.path.remove(entry)
        sys.path_importer_cache.pop(entry, None)


def record():
    # type: () -> None
    """Record this process if scope is here and its parent is recorded; else nothing."""
    try:
        from scope import child

        child.start()
    except Exception:  # scope is not importable here, or cannot record: run as without it
        pass


def hand_over():
    # type: () -> None
    """Import the next ``sitecustomize`` on ``sys.path`` in this one's place.

    Whatever it raises is what ``site`` would have seen without scope, so it
    propagates: "No module named 'sitecustomize'" if there is none.
    """
    sys.modules.pop("sitecustomize", None)
    __import__("sitecustomize")


if __name__ == "sitecustomize":  # not when imported under another name
    leave_path()
    if not sys.flags.no_site:  # python -S imports it only if its program does: too late
        record()
    hand_over()
