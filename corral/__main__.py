"""Run the ``corral`` command as ``python -m corral``."""

from corral.cli import main

raise SystemExit(main())
