"""``python -m realtime``: the ``menteo-realtime`` command, for an environment without its
console script on ``PATH``."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
