"""``python -m scope.service RECORDING``: the recording service of one recording file.

Started by the first recorded process of a recording (``scope.capture.service_link``);
see ``scope.storage.service``.
"""

from __future__ import annotations

import sys

from scope.storage.service import main

if __name__ == "__main__":
    sys.exit(main())
