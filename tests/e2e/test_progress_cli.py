"""Long commands show their progress on stderr when it is a terminal, never on stdout:
``burstlab analyze ... | next-tool`` reads the result alone. ``--quiet`` turns the
display off, and a stderr that is not a terminal gets none either."""

from __future__ import annotations

import os
import pty
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.cli import command


@dataclass(frozen=True)
class Seen:
    code: int
    stdout: str
    terminal: str  # what was drawn on the terminal that stderr was


def with_terminal_stderr(*args: str | Path, cwd: Path) -> Seen:
    """Run burstlab with stdout a pipe and stderr a pseudo-terminal (as in
    ``burstlab ... | cat`` at a shell)."""
    main, side = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [*command(), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=side,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
    )
    os.close(side)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=300)
    reader.join(timeout=30)
    os.close(main)
    return Seen(proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace"))


def plain(run: subprocess.CompletedProcess[str]) -> None:
    assert "\x1b" not in run.stdout  # no terminal control in the piped result


CASES = {
    "analyze": (["analyze", "sample", "--no-plots", "-o", "an"], "analysing sample"),
    "fit": (["fit", "sample", "-o", "m.json"], "fitting"),
    "generate": (["generate", "sample", "--busiest", "5m", "-o", "w.parquet"], "reading sample"),
    "forecast": (
        ["forecast", "sample", "--no-plots", "-g", "1m", "--granularities", "1m",
         "--models", "last,linear", "-o", "fc"],
        "forecasting",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_progress_is_drawn_on_a_terminal_stderr_and_stdout_stays_clean(
    name: str, tmp_path: Path
) -> None:
    args, stage = CASES[name]
    seen = with_terminal_stderr(*args, cwd=tmp_path)
    assert seen.code == 0, seen.terminal
    assert stage in seen.terminal, seen.terminal
    assert "[1/" in seen.terminal
    assert "\x1b" not in seen.stdout
    assert stage not in seen.stdout
    assert seen.stdout.strip(), "the result goes to stdout"
    quiet = with_terminal_stderr(*args, "--force", "--quiet", cwd=tmp_path)
    assert quiet.code == 0, quiet.terminal
    assert stage not in quiet.terminal
    assert quiet.stdout == seen.stdout


def test_no_progress_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    args, stage = CASES["analyze"]
    done = subprocess.run(
        [*command(), *args], capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert stage not in done.stderr
    assert "\x1b" not in done.stderr
    plain(done)


def test_simulate_and_its_quiet(tmp_path: Path) -> None:
    made = subprocess.run(
        [*command(), "generate", "sample", "--busiest", "30s", "-q", "-o", "w.parquet"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    seen = with_terminal_stderr("simulate", "w.parquet", "--no-report", "-o", "a", cwd=tmp_path)
    assert seen.code == 0, seen.terminal
    assert "[1/1] reading w.parquet" in seen.terminal
    assert "simulated" in seen.stdout
    assert "\x1b" not in seen.stdout
    quiet = with_terminal_stderr(
        "simulate", "w.parquet", "--no-report", "-q", "-o", "b", cwd=tmp_path
    )
    assert quiet.code == 0, quiet.terminal
    assert "reading" not in quiet.terminal
