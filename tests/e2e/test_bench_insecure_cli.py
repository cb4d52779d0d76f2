"""``bench --insecure`` says on stderr, in one line, that TLS is not verified."""

from __future__ import annotations

import subprocess
from pathlib import Path

from burstlab.server.app import make_app
from burstlab.server.fixed import FixedTiming
from burstlab.server.hosting import serve_in_thread
from burstlab.trace.io import write_table
from support.cli import command
from support.frames import constant_rate


def run_bench(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    workload = write_table(constant_rate(2, 20.0), tmp_path / "w.parquet")
    with serve_in_thread(make_app(FixedTiming(ttft=0.001, itl=0.001), model="m")) as url:
        return subprocess.run(
            [
                *command(),
                "bench",
                str(workload),
                "--url",
                url,
                "--model",
                "m",
                "-q",
                "--no-report",
                "-o",
                str(tmp_path / f"run{len(extra)}"),
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def test_insecure_prints_one_warning_line(tmp_path: Path) -> None:
    done = run_bench(tmp_path, "--insecure")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "--insecure" in line]
    assert len(warnings) == 1, done.stderr
    assert warnings[0].startswith("warning: ")
    assert "not verified" in warnings[0]


def test_no_warning_without_insecure(tmp_path: Path) -> None:
    done = run_bench(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--insecure" not in done.stderr
