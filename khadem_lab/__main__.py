"""``python -m khadem_lab``: the ``khadem-lab`` command (see :mod:`khadem_lab.cli`)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
