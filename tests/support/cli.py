"""The ``burstlab`` executable of the interpreter running the tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

#: The console script installed beside the interpreter (the venv's ``bin/burstlab``).
BIN = Path(sys.executable).parent / "burstlab"


def command() -> list[str]:
    """The console script beside the interpreter, else the one on PATH, else ``python -c``
    calling the real ``main()`` (so it handles errors as the installed command does)."""
    if BIN.exists():
        return [str(BIN)]
    found = shutil.which("burstlab")
    if found:
        return [found]
    return [sys.executable, "-c", "from burstlab.cli.app import main; main()"]
