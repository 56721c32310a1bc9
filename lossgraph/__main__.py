"""``python -m lossgraph ...``: the ``lossgraph`` command line (the console script's ``main``)."""

from __future__ import annotations

import sys

from lossgraph.cli import main

if __name__ == "__main__":
    sys.exit(main())
