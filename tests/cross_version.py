"""The same program, recorded on every tested CPython, must give the same recording.

``tests/test_compat.py`` records ``MIXED`` (generators, coroutines and asyncio
tasks, threads, exceptions, lambdas in comprehensions) and, where
``SCOPE_CROSS_VERSION_DIR`` is set, writes a summary of the recording there,
named after the interpreter.  ``.ci/run`` sets it for each version's test
session, then runs this file to compare the summaries:

    python tests/cross_version.py FOLDER

It exits 1, printing what differs, unless every version recorded the same calls
(function, parent, depth, thread, outcome and suspensions), tasks and threads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MIXED = """
import asyncio, threading

def numbers(n):
    for i in range(n):
        yield square(i)

def square(x):
    return x * x

def fails(x):
    if x > 2:
        raise ValueError(x)
    return x

def guarded(x):
    try:
        return fails(x)
    except ValueError:
        return -1

async def fetch(i):
    await asyncio.sleep(0)
    return [f(i) for f in [lambda v: v + 1 for _ in range(2)]]

async def gather_all():
    tasks = [asyncio.create_task(fetch(i), name=f"fetch-{i}") for i in range(3)]
    return await asyncio.gather(*tasks)

def worker(n):
    return sum(numbers(n))

print(sum(numbers(4)), [guarded(x) for x in range(5)])
print(asyncio.run(gather_all()))
t = threading.Thread(target=worker, args=(3,), name="worker")
t.start()
t.join()
"""

#: one row per call: (thread, function, parent function, depth, outcome, suspensions)
CALLS = """
    SELECT coalesce(t.name, ''), f.qualname, coalesce(pf.qualname, ''), c.depth,
           c.outcome::VARCHAR, c.suspensions
    FROM call c JOIN function f ON f.run = c.run AND f.id = c.function
    LEFT JOIN call p ON p.run = c.run AND p.id = c.parent
    LEFT JOIN function pf ON pf.run = p.run AND pf.id = p.function
    LEFT JOIN thread t ON t.run = c.run AND t.id = c.thread
    WHERE c.run = (SELECT max(id) FROM run)
"""
TASKS = """
    SELECT k.name, f.qualname, coalesce(cf.qualname, '')
    FROM task k JOIN call c ON c.run = k.run AND c.id = k.id
    JOIN function f ON f.run = c.run AND f.id = c.function
    LEFT JOIN call cc ON cc.run = k.run AND cc.id = k.created_by
    LEFT JOIN function cf ON cf.run = cc.run AND cf.id = cc.function
    WHERE k.run = (SELECT max(id) FROM run)
"""
THREADS = """
    SELECT coalesce(t.name, ''), coalesce(pt.name, ''), coalesce(sf.qualname, '')
    FROM thread t LEFT JOIN thread pt ON pt.run = t.run AND pt.id = t.parent
    LEFT JOIN call s ON s.run = t.run AND s.id = t.started_by
    LEFT JOIN function sf ON sf.run = s.run AND sf.id = s.function
    WHERE t.run = (SELECT max(id) FROM run)
"""


def normal_qualname(qualname: str) -> str:
    """A qualname without the comprehension scopes only 3.11 has (PEP 709)."""
    for name in ("<listcomp>.", "<setcomp>.", "<dictcomp>."):
        qualname = qualname.replace(name, "")
    return qualname


def summary(rows: dict[str, list[tuple[object, ...]]]) -> dict[str, list[list[object]]]:
    """Query results as sorted lists, qualnames made comparable across versions."""
    return {
        name: sorted(
            [normal_qualname(v) if isinstance(v, str) else v for v in row] for row in found
        )
        for name, found in rows.items()
    }


def compare(folder: Path) -> int:
    files = sorted(folder.glob("*.json"))
    if len(files) < 2:
        print(f"cross-version: {len(files)} summaries in {folder}; at least two are needed")
        return 1
    first, *others = files
    expected = json.loads(first.read_text())
    failed = 0
    for other in others:
        found = json.loads(other.read_text())
        for part in expected:
            if found.get(part) != expected[part]:
                failed = 1
                print(f"cross-version: {other.stem} recorded other {part} than {first.stem}:")
                print(f"  {first.stem}: {expected[part]}\n  {other.stem}: {found.get(part)}")
    names = ", ".join(f.stem for f in files)
    print(f"cross-version: {names}: " + ("differ" if failed else "the same recording"))
    return failed


if __name__ == "__main__":
    sys.exit(compare(Path(sys.argv[1])))
