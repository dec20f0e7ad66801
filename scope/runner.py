"""Run a program the way ``python`` would, under a recorder.

``Program`` says what to run (a script path, a module name or code) and with
which arguments.  ``run_program`` sets up ``sys.argv``, ``sys.path[0]`` and a
fresh ``__main__`` module as the interpreter does, starts the recorder, runs
the program and returns an ``Outcome`` without letting anything escape, so the
caller can end the process outside click's own exception handling.
``Outcome.finish`` then ends the process exactly as the interpreter would have:
the same exit status, and for an uncaught exception the same traceback, with
scope's own frames removed.

The model is coverage.py's ``execfile.py``; modules run through the
interpreter's own ``runpy._run_module_as_main``, so their tracebacks show the
same ``<frozen runpy>`` frames as under ``python -m``.  The program runs through
``native.run_at_bottom``, so no frame of scope's (or click's, or runpy's for
``scope`` itself) is below it: ``inspect.stack()``, ``sys._getframe`` and the
recursion limit see what they see under ``python``.
"""

from __future__ import annotations

import builtins
import codecs
import os
import re
import runpy
import signal
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import BuiltinImporter, SourceFileLoader

from scope import native
from scope.capture.threads import describe
from scope.errors import ProgramCannotStart
from scope.interpreter import PYBEHAVIOR
from scope.session import Recorder

_SCOPE_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__ or ""))
    for m in (sys.modules["scope"], sys.modules["scope.session"])
)


@dataclass(frozen=True)
class Program:
    """What to run: ``kind`` is "script", "module" or "code"; ``target`` the path, name or code."""

    kind: str
    target: str
    args: Sequence[str] = ()

    @property
    def command(self) -> list[str]:
        """The program as the user typed it after ``scope run``: ``app.py x``, ``-m app x``
        or ``-c 'code' x`` (what the run's ``argv`` keeps)."""
        if self.kind == "script":
            return [self.target, *self.args]
        return [self.argv0, self.target, *self.args]

    @property
    def argv0(self) -> str:
        """``sys.argv[0]`` before the program runs (runpy replaces it for modules)."""
        return {"script": self.target, "module": "-m", "code": "-c"}[self.kind]


@dataclass
class Outcome:
    """How the program ended: normally, by ``SystemExit``, or by another exception."""

    exception: BaseException | None = None

    @property
    def exit_status(self) -> int:
        """The status a shell would see for this ending."""
        exc = self.exception
        if exc is None:
            return 0
        if isinstance(exc, SystemExit):
            if exc.code is None:
                return 0
            if isinstance(exc.code, int):
                return exc.code & 0xFF
            return 1
        if isinstance(exc, KeyboardInterrupt):
            return 128 + signal.SIGINT
        return 1

    def finish(self, recorder: Recorder | None) -> None:
        """End the process as the interpreter would have (returns only for a normal end)."""
        exc = self.exception
        if exc is None:
            return None
        if isinstance(exc, SystemExit):
            raise exc
        # The default hook prints exc.__traceback__, not its third argument.
        exc = exc.with_traceback(_without_scope_frames(exc.__traceback__))
        sys.excepthook(type(exc), exc, exc.__traceback__)
        if isinstance(exc, KeyboardInterrupt):
            # The interpreter ends by SIGINT here, so the shell sees 130; flush first.
            if recorder is not None:
                recorder.stop()
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        raise SystemExit(1)


def _is_scope_frame(tb: types.TracebackType) -> bool:
    filename = os.path.abspath(tb.tb_frame.f_code.co_filename)
    return any(filename.startswith(d + os.sep) for d in _SCOPE_DIRS)


def _without_scope_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    while tb is not None and _is_scope_frame(tb):
        tb = tb.tb_next
    return tb


def _as_python_names(target: str) -> str:
    """A script or folder path as Python names it: joined to the cwd, not normalised."""
    return target if os.path.isabs(target) else os.path.join(os.getcwd(), target)


def _fresh_main(program: Program) -> types.ModuleType:
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    if PYBEHAVIOR.main_annotations_dict:
        main.__dict__["__annotations__"] = {}
    main.__loader__ = BuiltinImporter
    if program.kind == "script":
        path = _as_python_names(program.target)
        main.__file__ = path
        main.__dict__["__cached__"] = None
        main.__loader__ = SourceFileLoader("__main__", path)
    return main


def _path0(program: Program) -> str:
    if program.kind == "script":
        return os.path.dirname(os.path.realpath(program.target))
    if program.kind == "module":
        return os.getcwd()
    return ""


def check_program(program: Program) -> None:
    """Refuse, before recording starts, a script Python would refuse, as Python does.

    ``-m`` modules are not checked here: finding one runs its parent packages'
    code, which must run recorded; ``runpy`` reports a missing one as it does
    under ``python -m``.
    """
    if program.kind != "script":
        return
    path = _as_python_names(program.target)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "__main__.py")):
            # runpy's message, with its prefix
            message = f"{sys.executable}: can't find '__main__' module in {path!r}"
            raise ProgramCannotStart(message, 1)
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        # The interpreter's own message (Modules/main.c), and its exit status.
        message = (
            f"{sys.orig_argv[0]}: can't open file {path!r}: [Errno {exc.errno}] {exc.strerror}"
        )
        raise ProgramCannotStart(message, 2) from None


#: A coding declaration, as Python's tokenizer finds one (PEP 263).
_CODING = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*[-\w.]+", re.ASCII)
#: A first line after which the second may still declare the coding: blank, or a comment.
_BLANK = re.compile(rb"^[ \t\f]*(?:[#\r\n]|$)", re.ASCII)


def undeclared_non_utf8(source: bytes, filename: str) -> SyntaxError | None:
    """The error Python reports for a script that is not UTF-8 and declares no encoding.

    ``None`` if ``source`` is UTF-8, starts with a UTF-8 BOM or declares its
    coding.  Python reads a script from its file a line at a time and refuses
    the first line that is not UTF-8 before its parser reports anything, with
    the message built here; ``compile``, given the same bytes, decodes only
    string literals (a bad byte there is an "(unicode error)") and lets a
    comment pass.  As Python's tokenizer does, this splits lines at line
    feeds and carriage returns, looks for the declaration on the first line
    and, after a blank or comment line, on the second, and leaves a line that
    holds a null byte (Python's error then is about that byte) to ``compile``.
    """
    if source.startswith(codecs.BOM_UTF8):
        return None
    try:
        source.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return None
    seeking_coding = True
    for number, line in enumerate(source.splitlines(keepends=True), 1):
        if seeking_coding and number <= 2:
            if _CODING.match(line):
                return None
            seeking_coding = _BLANK.match(line) is not None
        text = line.split(b"\0", 1)[0]
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as exc:
            return SyntaxError(
                f"Non-UTF-8 code starting with '\\x{text[exc.start]:02x}' in file {filename} "
                f"on line {number}, but no encoding declared; "
                "see https://peps.python.org/pep-0263/ for details"
            )
        if len(text) < len(line):
            return None
    return None


def _run_script(program: Program, main: types.ModuleType, recorder: Recorder) -> None:
    if os.path.isdir(program.target):
        native.run_at_bottom(runpy._run_module_as_main, "__main__", False)  # type: ignore[attr-defined]
        return
    path = _as_python_names(program.target)
    with native.scope_work(), open(path, "rb") as f:
        source = f.read()
    error = undeclared_non_utf8(source, path)
    if error is not None:
        raise error
    native.run_at_bottom(_compile_main(recorder, path, source), main.__dict__)


def _compile_main(recorder: Recorder, filename: str, source: str | bytes) -> types.CodeType:
    """The code of ``__main__``: instrumented if the patterns take it (they apply to the
    main script as to any module), else, or on a syntax error, Python's own."""
    raw = source.encode() if isinstance(source, str) else source
    instrumenter = recorder.instrumenter
    code = None
    decision = recorder.decision_for("__main__", filename)
    if instrumenter is not None and decision.instrument:
        code = instrumenter.compile("__main__", filename, lambda: raw, decision.functions)
    if code is None:
        code = compile(source, filename, "exec", dont_inherit=True)
    return code


def _run_module(program: Program) -> None:
    native.run_at_bottom(runpy._run_module_as_main, program.target, True)  # type: ignore[attr-defined]


def prepare(program: Program) -> None:
    """Set ``sys.argv``, ``sys.path[0]`` and ``__main__`` as the interpreter would."""
    check_program(program)
    sys.argv[:] = [program.argv0, *program.args]
    sys.path[0] = _path0(program)
    if program.kind == "script" and os.path.isdir(program.target):
        sys.path[0] = _as_python_names(program.target)
    sys.modules["__main__"] = _fresh_main(program)


def run_program(program: Program, recorder: Recorder) -> Outcome:
    """Run ``program`` (already ``prepare``d, recorder started); capture how it ended."""
    main = sys.modules["__main__"]
    try:
        if program.kind == "module":
            _run_module(program)
        elif program.kind == "script":
            _run_script(program, main, recorder)
        else:
            code = _compile_main(recorder, "<string>", program.target)
            native.run_at_bottom(code, main.__dict__)
    except BaseException as exc:
        outcome = Outcome(exc)
        if not isinstance(exc, SystemExit):
            recorder.event("uncaught exception", describe(exc), native.raised_in(exc))
    else:
        outcome = Outcome()
    recorder.exit_status = outcome.exit_status
    return outcome
