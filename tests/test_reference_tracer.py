"""Stored calls equal what a reference ``sys.setprofile`` tracer sees.

For each program the test runs it under a small profile-hook tracer (which
knows nothing of scope) and under ``scope run``, and compares the multiset of
(thread, parent function, function) triples.  A generator is one call, made
by whichever call first advanced it; its later resumptions are not new calls.
"""

from __future__ import annotations

import pytest

from .reference import reference_calls, stored_calls

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


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_stored_calls_equal_the_reference_tracer(name, project, write, python, scope, query):
    expected = reference_calls(python, project, write("prog.py", PROGRAMS[name]))
    plain = python("prog.py")
    recorded = scope("run", "prog.py")
    assert recorded == plain  # exit status, stdout and stderr
    assert stored_calls(query) == expected
    assert sum(expected.values()) > 10
