"""``scope.native.live`` is ``scope.live``: the live folder of a recording.

The module moved out of ``scope.native`` so that a query, which reads the live
folder to find a running recording service, does not load the native
extension.  This name stays for code that still imports it from here; it is
the same module object, so what is set on one is seen through the other.
"""

from __future__ import annotations

import sys

from scope import live as _live
from scope.live import *  # noqa: F403  (what type checkers see here)

sys.modules[__name__] = _live
