"""Call ids as people write them: ``1:42`` for call 42 of thread 1, ``3:1:42`` in the
third child process, instead of 13 to 16 digits.

A stored call id is ``process << 52 | thread << 40 | n`` (``native.SLOT_SHIFT``
and ``PROCESS_SHIFT``: the process is 0 for the recorded program itself, k for
the k-th child process merged into its run).  Every command that prints a call
id prints the short form, every command that takes one accepts either, and
``--json`` and SQL keep the number.
"""

from __future__ import annotations

import re

#: where a call id's thread and process begin (native.SLOT_SHIFT, native.PROCESS_SHIFT;
#: kept here so that queries need not load the recorder)
THREAD_SHIFT = 40
PROCESS_SHIFT = 52
#: where a thread slot's process begins (storage.children.THREAD_SHIFT)
SLOT_PROCESS_SHIFT = PROCESS_SHIFT - THREAD_SHIFT

_SHORT = re.compile(r"^#?(?:(\d+):)?(\d+):(\d+)$")
_RAW = re.compile(r"^#?(\d+)$")


def short_id(call_id: int) -> str:
    """``thread:n``, or ``process:thread:n`` for a call of a child process."""
    process = call_id >> PROCESS_SHIFT
    thread = (call_id >> THREAD_SHIFT) & ((1 << (PROCESS_SHIFT - THREAD_SHIFT)) - 1)
    n = call_id & ((1 << THREAD_SHIFT) - 1)
    return f"{process}:{thread}:{n}" if process else f"{thread}:{n}"


def parse_call_id(text: str) -> int:
    """The call id ``text`` names, short (``1:42``, ``3:1:42``) or whole; ``ValueError``
    if it names none."""
    text = text.strip()
    raw = _RAW.match(text)
    if raw:
        return int(raw.group(1))
    short = _SHORT.match(text)
    if not short:
        raise ValueError(f"{text!r} is not a call id (thread:call, as 1:42, or the number)")
    process, thread, n = (int(part) if part else 0 for part in short.groups())
    if thread >= 1 << (PROCESS_SHIFT - THREAD_SHIFT) or n >= 1 << THREAD_SHIFT:
        raise ValueError(f"{text!r} is not a call id (its thread or call is out of range)")
    return process << PROCESS_SHIFT | thread << THREAD_SHIFT | n
