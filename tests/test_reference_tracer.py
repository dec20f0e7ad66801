"""Stored calls equal what a reference ``sys.setprofile`` tracer sees.

For each program the test runs it under a small profile-hook tracer (which
knows nothing of scope) and under ``scope run``, and compares the multiset of
(thread, parent function, function) triples.  A generator is one call, made
by whichever call first advanced it; its later resumptions are not new calls.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

TRACER = r"""
import json, runpy, sys, threading

target = sys.argv[1]
pairs = []
stacks = {}
started = []  # generator frames already running (kept alive so ids stay unique)

def profile(frame, event, arg):
    code = frame.f_code
    if (code.co_filename != target or code.co_name.startswith("<")
            or not code.co_flags & 0x1):
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

PROGRAMS = {
    "recursion": """
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        def ackermann(m, n):
            if m == 0:
                return n + 1
            if n == 0:
                return ackermann(m - 1, 1)
            return ackermann(m - 1, ackermann(m, n - 1))

        print(fib(12), ackermann(2, 3))
        """,
    "generators": """
        def numbers(n):
            for i in range(n):
                yield square(i)

        def square(x):
            return x * x

        def pairs(n):
            it = numbers(n)
            for a in it:
                yield a, next(it, None)

        def main():
            total = 0
            for a, b in pairs(7):
                total += a + (b or 0)
            return total

        print(main(), sum(numbers(4)))
        """,
    "threads": """
        import threading

        def leaf(x):
            return x * 2

        def worker(n):
            return sum(leaf(i) for i in range(n))

        def spawn():
            results = []
            threads = [
                threading.Thread(target=lambda n=n: results.append(worker(n)), name=f"w{n}")
                for n in (3, 5, 8)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return sorted(results)

        print(spawn())
        """,
    "exceptions": """
        class Problem(Exception):
            pass

        def deep(n):
            if n == 0:
                raise Problem("bottom")
            return deep(n - 1)

        def guarded(n):
            try:
                return deep(n)
            except Problem:
                return cleanup(n)

        def cleanup(n):
            return -n

        def main():
            return [guarded(i) for i in range(4)]

        print(main())
        deep(3)
        """,
}


def stored_triples(query) -> Counter[tuple[str | None, str | None, str]]:
    rows = query(
        """SELECT t.name, pf.qualname, f.qualname
           FROM call c JOIN function f ON f.run = c.run AND f.id = c.function
           LEFT JOIN thread t ON t.run = c.run AND t.id = c.thread
           LEFT JOIN call p ON p.run = c.run AND p.id = c.parent
           LEFT JOIN function pf ON pf.run = p.run AND pf.id = p.function
           WHERE c.run = (SELECT max(id) FROM run)"""
    )
    return Counter((thread, parent, name) for thread, parent, name in rows)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_stored_calls_equal_the_reference_tracer(name, project, write, python, scope, query):
    path = write("prog.py", PROGRAMS[name])
    (project / "tracer.py").write_text(TRACER)
    reference = python("tracer.py", str(path))
    assert reference.returncode == 0, reference.stderr
    expected = Counter(tuple(p) for p in json.loads(reference.stderr.splitlines()[-1]))
    plain = python("prog.py")
    recorded = scope("run", "prog.py")
    assert (recorded.returncode, recorded.stdout, recorded.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )
    assert stored_triples(query) == expected
    assert sum(expected.values()) > 10
