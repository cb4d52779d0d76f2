"""Run the ``burstlab`` command in this process, as its console script does.

:func:`invoke` calls :func:`burstlab.cli.app.run`, the function behind ``main()``,
so a test sees the exit status and the stderr a user would see (one ``error:``
line, no usage box) at a fraction of a subprocess's cost. An exception that
escapes ``run`` is a bug; it is reported as the traceback a user would get,
with exit status 1.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from burstlab.cli.app import run


@dataclass(frozen=True)
class Result:
    """What a command did: its exit status and what it wrote."""

    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    def is_clean_error(self, name: str | None = None) -> bool:
        """Exit 2 with exactly one ``error:`` line (naming ``name``, when given), at
        most a ``hint:`` line beside it, and no traceback."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        others = [line for line in lines if not line.startswith(("error:", "hint:", "warning:"))]
        errors = self.error_lines
        return (
            self.code == 2
            and len(errors) == 1
            and not others
            and "Traceback" not in self.stderr
            and (name is None or name in errors[0])
        )


def invoke(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Result:
    """``burstlab ARGS...`` in this process."""
    capsys.readouterr()
    try:
        code = run([str(a) for a in args])
    except SystemExit as exc:  # a command that exits by itself
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception:  # a bug: what the console script would print
        captured = capsys.readouterr()
        return Result(1, captured.out, captured.err + traceback.format_exc())
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)
