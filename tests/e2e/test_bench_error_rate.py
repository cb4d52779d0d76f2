"""A run whose requests failed exits 6: by default only when every one did, with
``--max-error-rate X`` when more than that share did; the records are kept either way."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from burstlab.cli.bench_cmd import EXIT_ERRORS, failed_beyond
from burstlab.results.summary import Counts
from burstlab.server.app import make_app
from burstlab.server.fixed import FixedTiming
from burstlab.server.hosting import serve_in_thread
from burstlab.trace.io import write_table
from support.cli import command
from support.frames import constant_rate


def run_bench(tmp_path: Path, model: str, *extra: str) -> subprocess.CompletedProcess[str]:
    workload = write_table(constant_rate(4, 20.0), tmp_path / "w.parquet")
    out = tmp_path / f"run-{model}-{len(extra)}"
    options = ["--model", model, "-q", "--no-report", "-o", str(out), *extra]
    with serve_in_thread(make_app(FixedTiming(ttft=0.001, itl=0.001), model="m")) as url:
        return subprocess.run(
            [*command(), "bench", str(workload), "--url", url, *options],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def test_a_run_where_every_request_failed_exits_6_and_keeps_its_records(
    tmp_path: Path,
) -> None:
    done = run_bench(tmp_path, "no-such-model")  # the server answers 404 to each
    assert done.returncode == EXIT_ERRORS, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: every request sent failed (4)"], done.stderr
    lines = (tmp_path / "run-no-such-model-0" / "records.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["outcome"] for line in lines] == ["failed"] * 4


def test_max_error_rate_decides(tmp_path: Path) -> None:
    assert run_bench(tmp_path, "no-such-model", "--max-error-rate", "1").returncode == 0
    assert run_bench(tmp_path, "m", "--max-error-rate", "0").returncode == 0


@pytest.mark.parametrize(
    ("ok", "failed", "limit", "fails"),
    [
        (0, 4, None, True),
        (1, 3, None, False),
        (0, 0, None, False),  # nothing was sent: not a failure of the server
        (9, 1, 0.05, True),
        (19, 1, 0.05, False),
        (0, 4, 1.0, False),
    ],
)
def test_the_failure_share_is_of_the_requests_that_ended(
    ok: int, failed: int, limit: float | None, fails: bool
) -> None:
    counts = Counts(ok=ok, failed=failed, cancelled=3, not_sent=2, scheduled=ok + failed + 5)
    why = failed_beyond(SimpleNamespace(counts=counts), limit)  # type: ignore[arg-type]
    assert (why is not None) == fails
