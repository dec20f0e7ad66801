"""Where the corpus scripts are, and an overlay of them that adds scope's own projects.

``../shared/corpus`` fetches real projects from PyPI and runs their test suites
(see its README).  Its scripts read their recipes from beside themselves, so
scope's own projects (``tests/corpus/recipes.sh``) join them through an
overlay: a folder of links to the shared scripts whose ``lib/recipes.sh`` adds
ours to theirs.  Used by ``tests/test_corpus.py`` and
``benchmarks/pytest_overhead.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: scope's recipes and the pins of their test dependencies
OWN_RECIPES = ROOT / "tests" / "corpus"
SHARED_PROJECTS = ("more-itertools", "toolz", "attrs", "sqlparse", "click", "jinja2", "boltons")
OWN_PROJECTS = ("pyparsing", "decorator", "asgiref")
PROJECTS = SHARED_PROJECTS + OWN_PROJECTS


def corpus_scripts() -> Path | None:
    """The folder of the corpus scripts, if this machine has it."""
    candidates = [ROOT.parent / "shared" / "corpus", Path("/work/shared/corpus")]
    if "SCOPE_CORPUS_SCRIPTS" in os.environ:
        candidates.insert(0, Path(os.environ["SCOPE_CORPUS_SCRIPTS"]))
    return next((c for c in candidates if (c / "compare.sh").is_file()), None)


def overlay(shared: Path, folder: Path) -> Path:
    """The shared scripts in ``folder``, linked, with scope's recipes added to theirs."""
    lib = folder / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    for name in ("setup.sh", "run.sh", "compare.sh"):
        (folder / name).symlink_to(shared / name)
    for name in ("common.sh", "junit_tool.py", "plugins"):
        (lib / name).symlink_to(shared / "lib" / name)
    (lib / "recipes.sh").write_text(
        f"SCOPE_CORPUS_SHARED_LIB={shared / 'lib'}\n. {OWN_RECIPES / 'recipes.sh'}\n"
    )
    pins = [(shared / "lib" / "constraints.txt"), (OWN_RECIPES / "constraints.txt")]
    (lib / "constraints.txt").write_text("".join(p.read_text() for p in pins))
    return folder


#: the interpreter the projects' virtual environments are made with: the one running
#: this, so that the corpus tests scope on the version under test
PYTHON = sys.executable
#: the version the work folder is named after (venvs of different versions never mix)
PYTHON_TAG = f"py{sys.version_info[0]}.{sys.version_info[1]}"


def work_dir() -> Path:
    """Where the corpus keeps each project's source, venv and results, for this Python."""
    cache = os.environ.get("SCOPE_CORPUS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "scope-corpus"
    )
    return Path(os.environ.get("SCOPE_CORPUS_WORK") or os.path.join(cache, f"work-{PYTHON_TAG}"))


@contextlib.contextmanager
def project_lock(project: str) -> Iterator[None]:
    """Hold ``project``'s folder alone: its venv and results are shared by every
    session on this machine (another test session, another xdist worker)."""
    folder = work_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{project}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def corpus_env(extra_pip: str) -> dict[str, str]:
    """The environment the corpus scripts run in: no scope settings, caches on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOPE_") or "CORPUS" in k}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the corpus runs as users run: caches on
    env["SCOPE_CORPUS_EXTRA_PIP"] = extra_pip
    env.setdefault("SCOPE_CORPUS_PYTHON", PYTHON)
    env.setdefault("SCOPE_CORPUS_WORK", str(work_dir()))
    return env


#: what each project's venv gets besides its own test dependencies: this checkout
#: of scope, and pytest-xdist for the ``pytest --scope -n 2`` runs
EXTRA_PIP = f"-e {ROOT} pytest-xdist==3.8.0 execnet==2.1.2"


#: what builds scope's extension: a project's venv whose scope was installed from
#: this checkout with these files unchanged needs no new install (the install is
#: editable, so Python changes reach it; C changes need a build)
BUILD_INPUTS = ("pyproject.toml", "setup.py", "native/*.c", "native/*.h", "native/build.py")


def install_stamp() -> str:
    """This checkout's path and a digest of what builds its extension."""
    digest = hashlib.sha256(str(ROOT).encode())
    for pattern in BUILD_INPUTS:
        for path in sorted(ROOT.glob(pattern)):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _stamp_file(project: str) -> Path:
    return work_dir() / project / "scope-installed"


def extra_pip_for(project: str) -> str:
    """``EXTRA_PIP``, or nothing if ``project``'s venv already has this checkout's
    scope built from the same sources (installing it again takes 15 s or more).
    Call with ``project_lock`` held."""
    stamp = _stamp_file(project)
    current = stamp.is_file() and stamp.read_text() == install_stamp()
    return "" if current else EXTRA_PIP


def note_installed(project: str) -> None:
    """Say that ``project``'s venv now has this checkout's scope (see ``extra_pip_for``)."""
    _stamp_file(project).write_text(install_stamp())
