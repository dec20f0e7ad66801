"""Drives tests/programs/traced.py under a tracer, pdb or coverage.py, and prints what
each saw; tests/test_trace_fidelity.py runs it with and without scope and compares.

    python trace_driver.py settrace|pdb|coverage
"""

import contextlib
import io
import os
import pdb
import sys

import traced


def settrace_events(name, args):
    """(function, event, line, exception type) for each event in traced.py: what
    tests/test_trace_fidelity.py's ``trace`` collects in process, here in a program
    copied out of the tests, which cannot import them."""
    events = []

    def tracer(frame, event, arg):
        if frame.f_code.co_filename == traced.__file__:
            kind = arg[0].__name__ if event == "exception" else None
            events.append((frame.f_code.co_name, event, frame.f_lineno, kind))
        return tracer

    sys.settrace(tracer)
    try:
        getattr(traced, name)(*args)
    except Exception:
        pass
    finally:
        sys.settrace(None)
    return events


def debug(name, args, commands):
    """What pdb prints when it runs ``commands`` through ``name(*args)``."""
    out = io.StringIO()
    debugger = pdb.Pdb(stdin=io.StringIO(commands), stdout=out, nosigint=True, readrc=False)
    debugger.use_rawinput = False
    try:
        debugger.runcall(getattr(traced, name), *args)
    except Exception as error:
        out.write(f"raised {type(error).__name__}\n")
    return out.getvalue()


def line_of(function, text):
    """The line of ``function``'s source that contains ``text`` (for a breakpoint)."""
    code = getattr(traced, function).__code__
    with open(traced.__file__) as source:
        lines = source.read().splitlines()
    for number in range(code.co_firstlineno, len(lines) + 1):
        if text in lines[number - 1]:
            return number
    raise LookupError(text)


#: the event loop's own frames in a session would make it long: those cases are left to settrace
LOOPED = ("drive_coro", "drive_coro_raises", "drive_agen")
WALKS = ["step\n" * 14, "next\n" * 8, "return\nstep\nstep\n"]
PDB_SESSIONS = [
    (case, walk + "continue\n") for case in traced.CASES if case[0] not in LOOPED for walk in WALKS
] + [
    (
        ("raises", 1),
        f"break {traced.__file__}:{line_of('raises', 'raise ValueError')}\n"
        "continue\nwhere\nnext\nnext\ncontinue\n",
    ),
    (
        ("drive_gen", 3),
        f"break {traced.__file__}:{line_of('gen', 'yield i')}\n"
        "continue\ncontinue\nnext\nnext\nnext\ncontinue\n",
    ),
    (("loop", 4), f"until {line_of('loop', 'return total')}\nnext\ncontinue\n"),
]


def main(mode):
    if mode == "settrace":
        for name, *args in traced.CASES:
            print(name, args, settrace_events(name, args))
    elif mode == "pdb":
        for (name, *args), commands in PDB_SESSIONS:
            print(f"== {name} {args} {commands!r}")
            print(debug(name, args, commands))
    elif mode == "coverage":
        import coverage

        branch = os.environ.get("COVERAGE_CORE") != "sysmon"
        measured = coverage.Coverage(branch=branch, data_file=None, include=[traced.__file__])
        measured.start()
        for name, *args in traced.CASES:
            with contextlib.suppress(Exception):
                getattr(traced, name)(*args)
        measured.stop()
        data = measured.get_data()
        print("lines", sorted(data.lines(traced.__file__) or []))
        print("arcs", sorted(data.arcs(traced.__file__) or []))
        print("missing", measured.analysis2(traced.__file__)[3])


if __name__ == "__main__":
    main(sys.argv[1])
