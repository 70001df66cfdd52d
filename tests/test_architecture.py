"""Import hygiene: the engine is usable without any terminal UI library loaded."""

from __future__ import annotations

import subprocess
import sys


def test_engine_imports_no_ui() -> None:
    code = (
        "import sys, engine, engine.worker, engine.cli_worker, engine.server; "
        "print(sorted(m for m in ('textual', 'plotext', 'dashboard', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
