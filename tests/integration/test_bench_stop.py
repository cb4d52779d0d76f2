"""``burstlab bench`` stopped from outside, as a user or a machine stops it: SIGTERM,
one Ctrl-C (the grace period), two Ctrl-Cs, a full disk, a second run pointed at the
same directory. Each test waits for the run to have written N records, never for a
fixed time, so it holds on a busy machine."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from burstlab.results.records import load_records
from burstlab.results.rundir import RunDir
from burstlab.server.app import make_app
from burstlab.server.fixed import FixedTiming
from burstlab.server.hosting import serve_in_thread
from burstlab.trace.io import write_table
from support.cli import command
from support.frames import constant_rate

pytestmark = pytest.mark.slow


class Server:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def finished(self) -> list[dict[str, object]]:
        text = self.log.read_text() if self.log.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """Fixed timing: a 40-token reply takes 0.05 + 39 * 0.05 = 2 s."""
    log = tmp_path / "server.jsonl"
    with serve_in_thread(make_app(FixedTiming(ttft=0.05, itl=0.05), log_path=log)) as url:
        yield Server(url, log)


def start(
    tmp_path: Path,
    url: str,
    run_dir: Path,
    *extra: str,
    n: int = 2000,
    rate: float = 50.0,
    tokens: int = 40,
    env: dict[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
) -> subprocess.Popen[str]:
    workload = tmp_path / f"w{n}-{rate:g}-{tokens}.parquet"
    if not workload.exists():
        write_table(constant_rate(n, rate, tokens), workload)
    args = [str(workload), "--url", url, "-o", str(run_dir), "-q", "--backend", "vllm", *extra]
    return subprocess.Popen(
        [*command(), "bench", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec,  # noqa: PLW1509 - only sets a resource limit, before exec
    )


def wait_for_records(run_dir: Path, n: int, proc: subprocess.Popen[str]) -> None:
    """Until the run has written at least ``n`` records (the run must still be going)."""
    path = run_dir / "records.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr is not None else ""
            pytest.fail(f"bench ended (exit {proc.returncode}) before {n} records: {err}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {n} records in {path} after 120 s")


def wait_for_line(proc: subprocess.Popen[str], text: str) -> str:
    """The first stderr line holding ``text`` (what the run prints when a signal lands)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            line = proc.stderr.readline()
            if text in line:
                return line
            if not line:
                break
    proc.kill()
    pytest.fail(f"bench never printed {text!r}")


def summary_of(run_dir: Path) -> dict[str, object]:
    return json.loads((run_dir / "summary.json").read_text())  # type: ignore[no-any-return]


def assert_accounted(run_dir: Path, scheduled: int) -> dict[str, int]:
    """Every scheduled request has exactly one record, and the files say interrupted."""
    summary = summary_of(run_dir)
    counts: dict[str, int] = summary["counts"]  # type: ignore[assignment]
    assert summary["status"] == "interrupted"
    assert summary["lost"] == 0
    assert counts["scheduled"] == scheduled
    assert counts["ok"] + counts["failed"] + counts["cancelled"] + counts["not_sent"] == scheduled
    table = load_records(run_dir)
    assert sorted(table["request_id"].to_list()) == list(range(scheduled))
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "interrupted"
    assert manifest["reason"] == summary["stopped_by"]
    assert set(table["run_id"].to_list()) == {manifest["run_id"]}
    return counts


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_the_run_like_ctrl_c(server: Server, tmp_path: Path, workers: int) -> None:
    run_dir = tmp_path / "run"
    proc = start(tmp_path, server.url, run_dir, "--workers", str(workers), "--grace", "60")
    wait_for_records(run_dir, 20, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "SIGTERM: stopping" in err
    assert "Traceback" not in err
    counts = assert_accounted(run_dir, 2000)
    assert summary_of(run_dir)["stopped_by"] == "sigterm"
    assert counts["ok"] >= 20
    assert counts["cancelled"] == 0  # each request takes 2 s; the grace is 60
    assert counts["not_sent"] > 0


def test_ctrl_c_lets_requests_in_flight_finish(server: Server, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(tmp_path, server.url, run_dir, "--grace", "60", "--no-report")
    wait_for_records(run_dir, 20, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    counts = assert_accounted(run_dir, 2000)
    assert summary_of(run_dir)["stopped_by"] == "sigint"
    assert counts["cancelled"] == 0
    assert counts["ok"] >= 20
    # in flight at the signal: sent, so past their intended time, and all finished
    table = load_records(run_dir)
    sent = table.filter(table["sent_s"].is_not_null())
    assert (sent["outcome"] == "ok").all()
    assert (sent["output_tokens_achieved"] == 40).all()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_ctrl_c_cancels_and_keeps_what_arrived(
    server: Server, tmp_path: Path, workers: int
) -> None:
    run_dir = tmp_path / "run"
    proc = start(tmp_path, server.url, run_dir, "--workers", str(workers), "--grace", "600")
    wait_for_records(run_dir, 10, proc)
    proc.send_signal(signal.SIGINT)
    wait_for_line(proc, "Ctrl-C: stopping")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    counts = assert_accounted(run_dir, 2000)
    assert counts["cancelled"] > 0  # the grace alone would have let every one finish
    cancelled = load_records(run_dir).filter(pl.col("outcome") == "cancelled")
    with_tokens = 0
    for row in cancelled.iter_rows(named=True):
        assert row["sent_s"] is not None
        assert row["end_s"] is None
        if row["chunk_s"]:
            with_tokens += 1
            assert row["first_s"] == row["chunk_s"][0]
            assert row["output_tokens_achieved"] == len(row["chunk_s"]) < 40
    assert with_tokens > 0


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails with EFBIG

    return apply


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_stops_sending_and_says_why(
    server: Server, tmp_path: Path, workers: int
) -> None:
    """A file-size limit makes the records file full after about 40 records: a real
    ``OSError`` from the kernel, in every worker process, without mounting anything."""
    run_dir = tmp_path / "run"
    proc = start(
        tmp_path,
        server.url,
        run_dir,
        "--workers",
        str(workers),
        n=1000,
        rate=100.0,
        tokens=10,
        preexec=_file_size_limit(40_000),
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "records.jsonl" in errors[0]
    assert "Traceback" not in err
    summary = summary_of(run_dir)
    assert summary["status"] == "interrupted"
    assert summary["stopped_by"] == "disk_full"
    manifest = json.loads((run_dir / "run.json").read_text())
    assert (manifest["status"], manifest["reason"]) == ("interrupted", "disk_full")
    table = load_records(run_dir)  # what was written before the failure reads back intact
    assert 0 < table.height < 1000
    assert table.height + summary["lost"] == 1000  # type: ignore[operator]
    # the failure stopped the sending: most of the schedule never reached the server
    assert len(server.finished()) < 500
    assert not (run_dir / "report.html").exists()


def test_a_second_run_into_the_same_directory_is_refused(server: Server, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = start(tmp_path, server.url, run_dir, "--grace", "60", "--no-report")
    wait_for_records(run_dir, 10, first)
    second = start(tmp_path, server.url, run_dir, "--no-report")
    _, err = second.communicate(timeout=120)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
    assert second.returncode == 2, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert "Traceback" not in err
    assert first.returncode == 143
    assert_accounted(run_dir, 2000)  # one record per request, all of the first run


def test_a_run_holding_the_lock_refuses_another(server: Server, tmp_path: Path) -> None:
    with RunDir.create(tmp_path / "run"):
        proc = start(tmp_path, server.url, tmp_path / "run", "--no-report", n=5)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "another burstlab run is writing" in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert (tmp_path / "run" / "records.jsonl").read_bytes() == b""


def test_an_authorization_header_never_reaches_a_file(server: Server, tmp_path: Path) -> None:
    secret = "hdr-canary-5e1f0c"
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            *command(),
            "bench",
            str(write_table(constant_rate(10, 50.0, 3), tmp_path / "w.parquet")),
            "--url",
            server.url,
            "-o",
            str(run_dir),
            "-q",
            "--header",
            f"Authorization: Bearer {secret}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert (run_dir / "report.html").exists()
    for path in [*run_dir.rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in out + err
    manifest = json.loads((run_dir / "run.json").read_text())
    assert "Authorization: <redacted>" in manifest["argv"]


def test_the_api_key_and_an_authorization_header_are_an_error(
    server: Server, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    proc = start(
        tmp_path,
        server.url,
        run_dir,
        "--header",
        "Authorization: Bearer x-canary",
        n=5,
        env={"OPENAI_API_KEY": "sk-canary-9"},
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "$OPENAI_API_KEY" in errors[0]
    assert "--header Authorization" in errors[0]
    assert "sk-canary-9" not in err
    assert not run_dir.exists()
