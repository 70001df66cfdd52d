"""``python -m dashboard``: the same as ``corral dash``."""

from __future__ import annotations

import sys

from corral.cli import main

raise SystemExit(main(["dash", *sys.argv[1:]]))
