"""What scope never stores: secrets, by the name that holds them and by their shape.

One rule, in three parts, used everywhere a string could reach a recording:

* **Names.**  A parameter, attribute or dict key whose name matches a pattern of
  ``SECRET_NAMES`` (or of the ``redact`` setting) has its value replaced by
  ``<redacted>`` before it leaves the program.  A pattern matches a whole name,
  case-insensitively, ``*`` standing for any characters and every other
  character for itself: the native side (``native/py_values.c``) matches dict
  keys by the same rule, so a pattern means the same in both.  A function whose
  name matches (``get_api_key``) has its return value redacted too.
* **argv.**  The word after an option whose name matches (``--password S3CR3T``).
* **Shapes.**  Every string stored (values, exception messages, events, argv)
  has what looks like a secret replaced (``scrub``): a value after a secret
  word (``password=...``, ``token: ...``, ``Authorization: Bearer ...``), the
  password of a URL (``https://user:pass@host``), AWS, GitHub and Slack tokens,
  and PEM private keys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

#: what a redacted value is stored as
REDACTED = "<redacted>"

#: name patterns whose values are never stored (see the module's doc)
SECRET_NAMES = (
    "*password*",
    "*passwd*",
    "*passphrase*",
    "*secret*",
    "*token*",
    "*api_key*",
    "*apikey*",
    "*authorization*",
    "*credential*",
    "*cookie*",
    "*private_key*",
    "*privatekey*",
    "*session_key*",
    "*access_key*",
    "pw",
    "pwd",
    "*_pw",
    "*_pwd",
    "auth",
    "*_auth",
)


@lru_cache(maxsize=64)
def _name_matcher(patterns: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = ("".join(".*" if c == "*" else re.escape(c) for c in p) for p in patterns)
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE | re.DOTALL)


def name_is_secret(name: str, extra: Sequence[str] = ()) -> bool:
    """Whether values named ``name`` are never stored (``extra``: the ``redact`` setting)."""
    return _name_matcher((*SECRET_NAMES, *extra)).fullmatch(name) is not None


def native_patterns(extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The patterns the native side matches dict keys with, lowered (it lowers keys)."""
    return tuple(p.lower() for p in (*SECRET_NAMES, *extra))


_WORD = (
    r"pass(?:word|wd|phrase)|pwd|secret|token|api[_-]?key|credentials?|cookie"
    r"|private[_-]?key|session[_-]?key|access[_-]?key|authorization"
)

#: (pattern, replacement): each keeps what says what the secret was.  Compiled on the
#: first ``scrub`` (``_compiled``): most processes that import this never store a string.
_SHAPES = (
    # a PEM private key, to its end or to the end of what was kept of it
    (
        r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
        rf"-----BEGIN \1PRIVATE KEY-----{REDACTED}",
    ),
    # Authorization: Bearer xyz / Basic xyz, and a bare "Bearer xyz"
    (r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}", rf"\1\2{REDACTED}"),
    # a URL's password: scheme://user:password@host
    (r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@", rf"\1{REDACTED}@"),
    # AWS access keys, GitHub and Slack tokens
    (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", REDACTED),
    (r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})", REDACTED),
    (r"\bxox[abposr]-[A-Za-z0-9-]{8,}", REDACTED),
    # a secret word, then a value: password=x, "token": "x", --api-key x, secret S3CR3T
    (
        rf"(?i)((?:{_WORD})[\w-]*['\"]?\s*(?:[:=]\s*|\s+)['\"]?)(?!{re.escape(REDACTED)}|bearer\b|basic\b)"
        r"[^\s'\",;&)}\]]+",
        rf"\1{REDACTED}",
    ),
)
#: what every string with a secret in it has: strings without are returned at once
_CANDIDATE = rf"(?i){_WORD}|bearer|basic|://|AKIA|ASIA|gh[pousr]_|github_pat_|xox|-----"


@lru_cache(maxsize=1)
def _compiled() -> tuple[re.Pattern[str], tuple[tuple[re.Pattern[str], str], ...]]:
    """``_CANDIDATE`` and ``_SHAPES``, compiled."""
    shapes = tuple((re.compile(pattern), replacement) for pattern, replacement in _SHAPES)
    return re.compile(_CANDIDATE), shapes


def scrub(text: str) -> str:
    """``text`` with whatever looks like a secret in it replaced (see the module's doc)."""
    candidate, shapes = _compiled()
    if candidate.search(text) is None:
        return text
    for pattern, replacement in shapes:
        text = pattern.sub(replacement, text)
    return text


def scrub_argv(argv: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """``argv`` with the word after each secret-looking option redacted, and every
    word scrubbed (``--password=x`` is a word of its own)."""
    kept: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            kept.append(REDACTED)
            hide_next = False
            continue
        kept.append(scrub(word))
        option = word.lstrip("-")
        if word.startswith("-") and option and "=" not in option:
            hide_next = name_is_secret(option.replace("-", "_"), extra)
    return kept
