"""bench's conventions from the CLI against a real server on 127.0.0.1: ``--config``,
``--goodput``, ``--warmup`` and ``--wait-ready``."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
import yaml
from aiohttp import web

from burstlab.results.rundir import RunDir
from burstlab.server.app import make_app
from burstlab.server.fixed import FixedTiming
from burstlab.server.hosting import serve_in_thread
from burstlab.trace.io import write_table
from support.cli import command
from support.frames import constant_rate
from support.inproc import invoke

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Watch:
    """What the server saw: each generation request's id header, in arrival order, and
    the readiness polls it answered 503 to before it became ready."""

    def __init__(self, not_ready_for: int) -> None:
        self.not_ready_for = not_ready_for
        self.polls: list[tuple[str, int]] = []
        self.request_ids: list[str] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in ("/health", "/v1/models"):
            # Ready after a number of polls, not after a time: holds on a busy machine.
            ready = len(self.polls) >= self.not_ready_for
            self.polls.append((request.path, 200 if ready else 503))
            if not ready:
                return web.Response(status=503, text="loading")
        elif request.method == "POST":
            self.request_ids.append(request.headers.get("X-Request-Id", ""))
        return await handler(request)


@contextmanager
def server(not_ready_for: int = 0) -> Iterator[tuple[str, Watch]]:
    watch = Watch(not_ready_for)
    app = make_app(FixedTiming(ttft=0.001, itl=0.001), model="m")
    app.middlewares.append(watch.middleware)
    with serve_in_thread(app) as url:
        yield url, watch


def bench(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), "bench", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def workload(tmp_path: Path) -> Path:
    return write_table(constant_rate(4, 20.0), tmp_path / "w.parquet")


def test_a_config_file_sets_the_run_and_the_command_line_overrides_it(
    tmp_path: Path, workload: Path
) -> None:
    out = tmp_path / "run"
    with server() as (url, watch):
        config = tmp_path / "run.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "workload": str(workload),
                    "url": url,
                    "out": str(out),
                    "model": "m",
                    "max-concurrency": 2,
                    "seed": 5,
                    "goodput": "ttft:500,e2e:10000",
                    "report": False,
                    "quiet": True,
                    "header": ["X-Team: bench"],
                }
            )
        )
        done = bench("--config", config, "--seed", "7")
    assert done.returncode == 0, done.stderr
    saved = RunDir(out).manifest()
    assert saved is not None
    assert saved.config["max_concurrency"] == 2
    assert saved.config["seed"] == 7  # the command line wins
    assert saved.config["headers"] == {"X-Team": "<redacted>"}
    assert saved.slo is not None
    assert (saved.slo.ttft, saved.slo.e2e, saved.slo.tpot) == (0.5, 10.0, None)
    assert len(watch.request_ids) == 4
    assert not (out / "report.html").exists()


def test_goodput_and_slo_together_or_bad_goodput_are_refused(
    tmp_path: Path, workload: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    common = ("bench", workload, "--url", "http://127.0.0.1:9", "-o", out, "--model", "m")
    done = invoke(capsys, *common, "--goodput", "ttft:500", "--slo", "ttft=0.5")
    assert done.is_clean_error("--goodput: give --slo"), done.stderr
    done = invoke(capsys, *common, "--goodput", "ttft:500,tbt:20")
    assert done.is_clean_error("--goodput: 'tbt:20'"), done.stderr
    assert not out.exists()


def test_warmup_requests_go_first_and_stay_out_of_the_run(tmp_path: Path, workload: Path) -> None:
    out = tmp_path / "run"
    with server() as (url, watch):
        done = bench(
            workload,
            "--url",
            url,
            "-o",
            out,
            "--model",
            "m",
            "-q",
            "--no-report",
            "--warmup",
            "3",
        )
    assert done.returncode == 0, done.stderr
    assert "warm-up: 3 requests, 3 ok, 0 failed" in done.stderr
    run = RunDir(out)
    summary, manifest = run.summary(), run.manifest()
    assert summary is not None
    assert manifest is not None
    assert summary.counts.scheduled == 4
    assert summary.counts.ok == 4
    assert summary.metrics["ttft_s"].count == 4
    records = [orjson.loads(line) for line in (out / "records.jsonl").read_bytes().splitlines()]
    assert sorted(r["request_id"] for r in records) == [0, 1, 2, 3]
    warm = [orjson.loads(line) for line in (out / "warmup.jsonl").read_bytes().splitlines()]
    assert [r["outcome"] for r in warm] == ["ok"] * 3
    assert {r["run_id"] for r in warm} == {f"{manifest.run_id}-warmup"}
    # the server saw the three warm-up requests before any of the run's
    assert [i.rsplit("-", 1)[0] for i in watch.request_ids[:3]] == [f"{manifest.run_id}-warmup"] * 3
    assert all(not i.startswith(f"{manifest.run_id}-warmup") for i in watch.request_ids[3:])


def test_wait_ready_polls_until_the_server_answers(tmp_path: Path, workload: Path) -> None:
    out = tmp_path / "run"
    with server(not_ready_for=5) as (url, watch):
        done = bench(workload, "--url", url, "-o", out, "-q", "--no-report", "--wait-ready", "120")
    assert done.returncode == 0, done.stderr
    refused = [p for p in watch.polls if p[1] == 503]
    assert len(refused) == 5
    assert f"waiting up to 120 s for {url} to answer /health or /v1/models" in done.stderr
    assert f"{url} is ready (/v1/models answered 200 after" in done.stderr
    assert {p[0] for p in refused} == {"/health", "/v1/models"}  # both paths are polled
    summary = RunDir(out).summary()
    assert summary is not None
    assert summary.counts.ok == 4


def test_a_server_that_never_gets_ready_is_one_error_and_no_run(
    tmp_path: Path, workload: Path
) -> None:
    out = tmp_path / "run"
    with server(not_ready_for=10**9) as (url, watch):
        done = bench(workload, "--url", url, "-o", out, "--model", "m", "--wait-ready", "1")
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "was not ready within 1 s" in errors[0]
    assert "/health: HTTP 503" in errors[0]
    assert "/v1/models: HTTP 503" in errors[0]
    assert "Traceback" not in done.stderr
    assert len(watch.polls) >= 2
    assert not out.exists()
    assert watch.request_ids == []
