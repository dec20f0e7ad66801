"""An independent reference for what scope should store: a ``sys.setprofile`` tracer.

``reference_calls`` runs a program under a small profile-hook tracer that
knows nothing of scope and returns the multiset of (thread, parent function,
function) triples it saw; ``stored_calls`` reads the same triples from the
latest run of a recording.  A generator is one call, made by whichever call
first advanced it; its later resumptions are not new calls.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .conftest import Result

# Only functions and lambdas of the traced file: optimized code (not module or
# class bodies), not comprehensions (the other names that start with "<").
TRACER = r"""
import json, runpy, sys, threading

target = sys.argv[1]
pairs = []
stacks = {}
started = []  # generator frames already running (kept alive so ids stay unique)

def profile(frame, event, arg):
    code = frame.f_code
    if (code.co_filename != target or not code.co_flags & 0x1
            or (code.co_name.startswith("<") and code.co_name != "<lambda>")):
        return
    stack = stacks.setdefault(threading.get_ident(), [])
    if event == "call":
        is_gen = bool(code.co_flags & 0x20)
        first = not is_gen or not any(f is frame for f in started)
        if first:
            thread = threading.current_thread().name
            pairs.append((thread, stack[-1] if stack else None, code.co_qualname))
        if is_gen and first:
            started.append(frame)
        stack.append(code.co_qualname)
    elif event == "return":
        stack.pop()

sys.argv = sys.argv[1:]
threading.setprofile(profile)
sys.setprofile(profile)
try:
    runpy.run_path(target, run_name="__main__")
except BaseException:
    pass
finally:
    sys.setprofile(None)
    threading.setprofile(None)
print(json.dumps(pairs), file=sys.stderr)
"""


Triples = Counter[tuple[str | None, str | None, str]]


def reference_calls(python: Callable[..., Result], project: Path, program: Path) -> Triples:
    """The calls the tracer sees when ``program`` runs (in ``project``)."""
    (project / "tracer.py").write_text(TRACER)
    reference = python("tracer.py", str(program))
    assert reference.returncode == 0, reference.stderr
    return Counter(tuple(p) for p in json.loads(reference.stderr.splitlines()[-1]))


def stored_calls(query: Callable[..., list[tuple[object, ...]]]) -> Triples:
    """The (thread, parent, function) triples of the latest run."""
    rows = query(
        """SELECT t.name, pf.qualname, f.qualname
           FROM call c JOIN function f ON f.run = c.run AND f.id = c.function
           LEFT JOIN thread t ON t.run = c.run AND t.id = c.thread
           LEFT JOIN call p ON p.run = c.run AND p.id = c.parent
           LEFT JOIN function pf ON pf.run = p.run AND pf.id = p.function
           WHERE c.run = (SELECT max(id) FROM run)"""
    )
    return Counter((thread, parent, name) for thread, parent, name in rows)
