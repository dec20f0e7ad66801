"""What scope's audit hook (PEP 578) costs the program, per audit event, side by side.

    python benchmarks/audit_overhead.py

CPython builds an audit event's arguments only once a hook exists, and scope's
hook stays for the life of the process; this times the calls that raise events
most often in real code, plain and with the default list recorded (the events
below are not on it: that is the common case, a hook that says no).
"""

from __future__ import annotations

import timeit

from scope import native
from scope.config import DEFAULT_AUDIT

CASES = {
    "sys._getframe()": ("f()", "import sys; f = sys._getframe"),
    "compile('1', 's', 'eval')": ("compile('1', 's', 'eval')", ""),
    "object.__getattribute__ of a code attribute": ("f.__code__", "def f(): pass"),
}


def per_call_ns(statement: str, setup: str) -> float:
    number = 100_000
    return min(timeit.repeat(statement, setup=setup, number=number, repeat=5)) / number * 1e9


def main() -> None:
    plain = {name: per_call_ns(*case) for name, case in CASES.items()}
    native.configure_audit(DEFAULT_AUDIT)
    native.set_enabled(True)
    try:
        hooked = {name: per_call_ns(*case) for name, case in CASES.items()}
    finally:
        native.set_enabled(False)
        native.configure_audit(())
    print(f"{'call':<46} {'plain ns':>9} {'hooked ns':>10} {'added':>8}")
    for name in CASES:
        added = hooked[name] - plain[name]
        print(f"{name:<46} {plain[name]:>9.1f} {hooked[name]:>10.1f} {added:>+8.1f}")


if __name__ == "__main__":
    main()
