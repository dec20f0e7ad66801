"""Query answers as JSON (``--json``), for scripts.

Apart from ``scope.query.render`` so that ``--json`` does not load rich.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any


def to_json(value: Any) -> str:
    """Dataclasses (and lists of them) as JSON."""

    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {k: plain(v) for k, v in dataclasses.asdict(obj).items()}
        if isinstance(obj, list | tuple):
            return [plain(v) for v in obj]
        if isinstance(obj, dict):
            return {k: plain(v) for k, v in obj.items()}
        if isinstance(obj, set | frozenset):
            return sorted(plain(v) for v in obj)
        return obj

    return json.dumps(plain(value), default=str, indent=2)
