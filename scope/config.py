"""Configuration: ``[tool.scope]`` in pyproject.toml, then ``SCOPE_*`` variables, then flags.

Later sources win (``levels`` patterns add up: a later pattern wins over an
earlier one for the functions both match).  Every value is validated when it is read, and an unknown
key or a bad value raises ``ConfigError`` naming the key and where it came
from.  Unknown ``SCOPE_*`` variables are ignored: other tools (scope's own
corpus scripts among them) use the prefix too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from scope.errors import ConfigError
from scope.levels import LEVELS

if TYPE_CHECKING:  # the instrumentation loads only for what instruments (not queries)
    from scope.instrument.plan import PlanSettings

OVERFLOW_POLICIES = ("drop", "block")
CLOCKS = ("auto", "tsc", "monotonic")
LOG_LEVELS = ("off", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_DB = os.path.join(".scope", "scope.duckdb")
DEFAULT_CACHE_DIR = os.path.join(".scope", "cache")
#: audit events (PEP 578) recorded by default: what a program does to the world
DEFAULT_AUDIT = (
    "open",
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.kill",
    "os.remove",
    "os.rename",
    "shutil.rmtree",
    "socket.connect",
    "socket.bind",
    "socket.getaddrinfo",
    "urllib.Request",
    "import",
    "sys.unraisablehook",
)


@dataclass(frozen=True)
class Config:
    """Validated settings for recording and querying."""

    #: the folder holding pyproject.toml (else the working directory)
    project_root: str
    #: the recording file
    db: str
    #: modules, paths or ``module:function`` patterns to instrument too, or never to
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: patterns that replace the default choice of the user's code (include adds to them)
    only: tuple[str, ...] = ()
    #: the include and exclude patterns scope added itself (the package ``-m`` runs,
    #: pytest's test files), which a run does not report as matching nothing
    added_by_scope: tuple[str, ...] = ()
    #: the capture level of every function no ``levels`` pattern names
    level: str = "calls"
    #: (pattern, level) pairs, in order: the last pattern that matches a function wins
    levels: tuple[tuple[str, str], ...] = ()
    #: calls stored one row each per function before aggregating (0 = unlimited)
    max_calls_per_function: int = 100_000
    #: records per thread ring
    ring_size: int = 1 << 18
    #: suspensions (yield, await) at least this many µs long are stored one by one
    suspension_min_us: int = 100
    #: block (wait for the writer, bounded, then drop and count) or drop at once
    overflow: str = "block"
    #: extra name patterns whose values are redacted
    redact: tuple[str, ...] = ()
    #: bytes per thread for value summaries (args and full levels)
    arena_size: int = 1 << 20
    #: longest text or bytes kept of a str or bytes value
    value_bytes: int = 64
    #: items of a container kept at the full level
    value_items: int = 4
    #: at the full level, summarise other objects with their repr() (runs user code)
    call_repr: bool = False
    #: what stamps records: the CPU's invariant TSC (calibrated) or CLOCK_MONOTONIC
    clock: str = "auto"
    #: audit events (PEP 578) recorded as events of the call that caused them ([] : none)
    audit: tuple[str, ...] = DEFAULT_AUDIT
    #: log records at or above this level are kept as events ("off": none)
    log_level: str = "off"
    #: pytest records every test without being given --scope
    pytest: bool = False
    #: a recording service process stores the recording, not the recorded program
    #: (false: scope's writer threads store it from inside the program)
    service: bool = True
    #: with the service, ``scope run`` returns only once the run is stored
    wait: bool = True
    #: whose calls ``pytest --scope`` keeps: all, failed, slow:SECONDS (comma-separated)
    keep: str = "all"
    #: the folder of rewritten code kept between runs ("" : ``.scope/cache`` of the project)
    cache_dir: str = ""
    #: the most that folder holds, in MB (0: keep nothing, instrument afresh each run)
    cache_max_mb: int = 256
    #: runs the recording keeps: as each run closes, older ones go (0: keep every run)
    retain_runs: int = 0
    #: where each value came from, for messages
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def retention(self) -> Retention:
        """Whose calls a recorded test session keeps (``keep``, validated on load)."""
        return parse_retention(self.keep)

    @property
    def code_cache_folder(self) -> str:
        """Where rewritten code is kept between runs (``cache_dir``, else the project's)."""
        return self.cache_dir or os.path.join(self.project_root, DEFAULT_CACHE_DIR)

    def plan_settings(self) -> PlanSettings:
        """The settings that decide each function's capture level."""
        from scope.instrument.plan import PlanSettings

        return PlanSettings(
            self.level, self.levels, self.include, self.exclude, self.redact, only=self.only
        )


def _as_str(key: str, value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} {where} must be a non-empty string, not {value!r}")
    return value


def _as_patterns(key: str, value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ConfigError(f"{key} {where} must be a list of patterns, not {value!r}")
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{key} {where} has an empty or non-string pattern: {item!r}")
    return tuple(i.strip() for i in items)


def _as_event_names(key: str, value: Any, where: str) -> tuple[str, ...]:
    """Audit event names: a list, or a comma-separated string ("" or "none": none)."""
    if isinstance(value, str) and value.strip().lower() in ("", "none"):
        return ()
    names = _as_patterns(key, value, where) if value != [] else ()
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ConfigError(f"{key} {where}: {name!r} is not an audit event name")
    return names


def _as_bool(key: str, value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key} {where} must be true or false, not {value!r}")


def _as_choice(choices: tuple[str, ...]) -> Callable[[str, Any, str], str]:
    def check(key: str, value: Any, where: str) -> str:
        if value not in choices:
            raise ConfigError(f"{key} {where} must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    return check


def _as_count(minimum: int, maximum: int) -> Callable[[str, Any, str], int]:
    def check(key: str, value: Any, where: str) -> int:
        if isinstance(value, str):
            try:
                value = int(value.strip().replace("_", ""))
            except ValueError:
                raise ConfigError(f"{key} {where} must be a whole number, not {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} {where} must be a whole number, not {value!r}")
        if not minimum <= value <= maximum:
            raise ConfigError(f"{key} {where} must be between {minimum} and {maximum}, not {value}")
        return value

    return check


@dataclass(frozen=True)
class Retention:
    """Which tests' calls a recorded test session keeps (``keep``); every outcome is kept."""

    #: every test's (``all``)
    everything: bool = True
    #: failing tests' (``failed``: a phase failed or errored)
    failed: bool = False
    #: tests that took at least this long, all phases together (``slow:SECONDS``)
    slower_than_ns: int | None = None

    def keeps(self, failed: bool, duration_ns: int) -> bool:
        """Whether a test that ``failed`` (or not) and took ``duration_ns`` keeps its calls."""
        if self.everything or (self.failed and failed):
            return True
        return self.slower_than_ns is not None and duration_ns >= self.slower_than_ns


def parse_retention(text: str) -> Retention:
    """``all``, ``failed``, ``slow:0.5`` (seconds; ``500ms`` too), or several, comma-separated.

    Raises ``ValueError`` with the reason.
    """
    everything = failed = False
    slower_than: int | None = None
    for item in (part.strip() for part in text.split(",")):
        word, _, threshold = item.partition(":")
        if item == "all":
            everything = True
        elif item == "failed":
            failed = True
        elif word == "slow" and threshold:
            slower_than = _seconds_as_ns(threshold.strip())
        else:
            raise ValueError(f"{item!r} is not all, failed or slow:SECONDS")
    return Retention(everything, failed, slower_than)


def _seconds_as_ns(text: str) -> int:
    scale, number = 1e9, text
    for suffix, factor in (("ms", 1e6), ("s", 1e9)):
        if text.endswith(suffix):
            scale, number = factor, text[: -len(suffix)]
            break
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (seconds, or 250ms)") from None
    if not value >= 0:
        raise ValueError(f"{text!r} is not a duration (seconds, or 250ms)")
    return int(value * scale)


def _as_retention(key: str, value: Any, where: str) -> str:
    text = _as_str(key, value, where).strip()
    try:
        parse_retention(text)
    except ValueError as exc:
        raise ConfigError(f"{key} {where}: {exc}") from None
    return text


def _as_levels(key: str, value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """``{pattern: level}`` (a TOML table) or ``"pattern=level,..."`` (a variable or flag)."""
    if isinstance(value, str):
        pairs = []
        for item in (i.strip() for i in value.split(",")):
            pattern, sep, level = item.rpartition("=")
            if not sep or not pattern.strip():
                raise ConfigError(f"{key} {where} must be PATTERN=LEVEL items, not {item!r}")
            pairs.append((pattern.strip(), level.strip()))
    elif isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list | tuple):
        pairs = list(value)
    else:
        raise ConfigError(f"{key} {where} must map patterns to levels, not {value!r}")
    for pattern, level in pairs:
        if not isinstance(pattern, str) or not pattern.strip():
            raise ConfigError(f"{key} {where} has an empty or non-string pattern: {pattern!r}")
        if level not in LEVELS:
            raise ConfigError(
                f"{key} {where}: the level of {pattern!r} must be one of "
                f"{', '.join(LEVELS)}, not {level!r}"
            )
    return tuple((pattern.strip(), level) for pattern, level in pairs)


#: key -> validator; the environment variable is SCOPE_<KEY>.
VALIDATORS: dict[str, Callable[[str, Any, str], Any]] = {
    "db": _as_str,
    "include": _as_patterns,
    "only": _as_patterns,
    "exclude": _as_patterns,
    "level": _as_choice(LEVELS),
    "levels": _as_levels,
    "max_calls_per_function": _as_count(0, 2**62),
    "ring_size": _as_count(1024, 1 << 30),
    "suspension_min_us": _as_count(0, 1 << 40),
    "overflow": _as_choice(OVERFLOW_POLICIES),
    "redact": _as_patterns,
    "arena_size": _as_count(1 << 12, 1 << 30),
    "value_bytes": _as_count(1, 512),
    "value_items": _as_count(0, 64),
    "call_repr": _as_bool,
    "clock": _as_choice(CLOCKS),
    "audit": _as_event_names,
    "log_level": _as_choice(LOG_LEVELS),
    "pytest": _as_bool,
    "service": _as_bool,
    "wait": _as_bool,
    "keep": _as_retention,
    "cache_dir": _as_str,
    "cache_max_mb": _as_count(0, 1 << 20),
    "retain_runs": _as_count(0, 1 << 30),
}


def find_project_root(start: str) -> str | None:
    """The nearest folder at or above ``start`` that holds a pyproject.toml."""
    folder = os.path.abspath(start)
    while True:
        if os.path.isfile(os.path.join(folder, "pyproject.toml")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _from_pyproject(root: str) -> dict[str, Any]:
    import tomllib  # here: a child process, configured by its parent, reads no file

    path = os.path.join(root, "pyproject.toml")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8; tomllib lets this one through
        raise ConfigError(f"{path} is not valid TOML: not UTF-8 ({exc.reason})") from None
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(f"tool in {path} must be a table ([tool])")
    section = tool.get("scope", {})
    if not isinstance(section, dict):
        raise ConfigError(f"[tool.scope] in {path} must be a table")
    for key in section:
        if key not in VALIDATORS:
            known = ", ".join(sorted(VALIDATORS))
            raise ConfigError(f"unknown key {key!r} in [tool.scope] of {path} (known: {known})")
    return dict(section)


def _from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    values = {}
    for key in VALIDATORS:
        variable = f"SCOPE_{key.upper()}"
        if variable in environ and environ[variable] != "":
            values[key] = environ[variable]
    return values


def pytest_requested(cwd: str, environ: Mapping[str, str]) -> bool:
    """Whether ``SCOPE_PYTEST`` or ``[tool.scope] pytest`` ask pytest to record, read as
    leniently as possible: for telling whether a configuration that fails to load was
    meant for a recorded test session."""
    values = dict(_from_environment(environ))
    root = find_project_root(cwd)
    if "pytest" not in values and root is not None:
        import tomllib

        try:
            with open(os.path.join(root, "pyproject.toml"), "rb") as f:
                tool = tomllib.load(f).get("tool", {})
        except (OSError, ValueError):  # not TOML, or not UTF-8
            return False
        section = tool.get("scope", {}) if isinstance(tool, dict) else None
        if isinstance(section, dict) and "pytest" in section:
            values["pytest"] = section["pytest"]
    try:
        return "pytest" in values and _as_bool("pytest", values["pytest"], "")
    except ConfigError:
        return False


def _working_folder() -> str:
    try:
        return os.getcwd()
    except FileNotFoundError:
        raise ConfigError(
            "the folder this runs in was removed; run scope from a folder that exists"
        ) from None


def load_config(
    cwd: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read and validate the configuration for a command run in ``cwd``.

    ``overrides`` are command-line values (``None`` values are ignored).
    """
    cwd = os.path.abspath(cwd or _working_folder())
    environ = os.environ if environ is None else environ
    found_root = find_project_root(cwd)
    root = found_root or cwd
    layers: list[tuple[dict[str, Any], str, str]] = []
    if found_root is not None:
        pyproject = os.path.join(found_root, "pyproject.toml")
        layers.append((_from_pyproject(found_root), f"in [tool.scope] of {pyproject}", found_root))
    layers.append((_from_environment(environ), "from the environment", cwd))
    flags = {k: v for k, v in (overrides or {}).items() if v is not None and v != ()}
    for key in flags:
        if key not in VALIDATORS:
            raise ConfigError(f"unknown setting {key!r}")
    layers.append((flags, "on the command line", cwd))

    config = Config(project_root=root, db=os.path.join(root, DEFAULT_DB))
    sources: dict[str, str] = {}
    for values, where, base in layers:
        for key, raw in values.items():
            label = f"SCOPE_{key.upper()}" if where == "from the environment" else key
            value = VALIDATORS[key](label, raw, where)
            if key in ("db", "cache_dir"):
                value = os.path.join(base, os.path.expanduser(value))
            elif key == "levels":  # more specific layers add patterns, which win
                value = config.levels + value
            config = replace(config, **{key: value})
            sources[key] = where
    return replace(config, sources=sources)
