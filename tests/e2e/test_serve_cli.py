"""``burstlab serve`` end to end: a real process on a free port, one request, a clean stop."""

from __future__ import annotations

import json
import re
import select
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import BIN

READY = re.compile(
    r"serving (\S+) at (http://127\.0\.0\.1:\d+) \(fixed ttft=(\d\.\d{3}) s, itl=(\d\.\d{3}) s\)"
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=60, check=False
    )


def start(*args: str) -> tuple[subprocess.Popen[str], re.Match[str]]:
    """Start ``burstlab serve ARGS`` and wait for its ready line."""
    proc = subprocess.Popen(
        [str(BIN), "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    match = READY.fullmatch(line.strip())
    if match is None:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"no ready line; got {line!r}; stderr: {err}")
    return proc, match


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], re.Match[str], Path]]:
    log = tmp_path / "served.jsonl"
    proc, match = start(
        "--fixed", "ttft=0.02,itl=5ms", "--port", "0", "--model", "m1", "--log", str(log)
    )
    try:
        yield proc, match, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                assert resp.read() == b"ok"
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def post(url: str, body: dict[str, object], request_id: str) -> dict[str, object]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Request-Id": request_id},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.headers["X-Request-Id"] == request_id
        result: dict[str, object] = json.loads(resp.read())
        return result


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_answers_then_stops_cleanly(
    served: tuple[subprocess.Popen[str], re.Match[str], Path], stop: signal.Signals
) -> None:
    proc, match, log = served
    model, url, ttft, itl = match.groups()
    assert (model, ttft, itl) == ("m1", "0.020", "0.005")
    wait_healthy(url)
    body = {"model": "m1", "prompt": [1, 2, 3], "max_tokens": 5, "ignore_eos": True}
    reply = post(url + "/v1/completions", body, "e2e-1")
    assert reply["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    assert reply["model"] == "m1"
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(r["request_id"], r["tokens"]) for r in lines] == [("e2e-1", 5)]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("ttft=fast,itl=0.01", "ttft='fast' is not a time"),
        ("ttft=0.05,speed=2", "unknown key 'speed'"),
        ("eos=0", "eos"),
    ],
)
def test_bad_fixed_spec(spec: str, says: str) -> None:
    out = run("serve", "--fixed", spec, "--port", "0")
    assert out.returncode == 2
    assert out.stderr.startswith("error: ")
    assert "--fixed" in out.stderr
    assert says in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_default_serves_the_simulated_engine() -> None:
    """Without --fixed, the default engine (Llama-2-7B on an A100-80G) times tokens."""
    proc = subprocess.Popen(
        [str(BIN), "serve", "--port", "0", "--time-scale", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        match = re.fullmatch(
            r"serving Llama-2-7B at (http://127\.0\.0\.1:\d+) \(simulated Llama-2-7B on "
            r"A100-80G, time scale 4\)",
            line.strip(),
        )
        assert match is not None, line
        body = json.dumps({"prompt": "a b c", "max_tokens": 5, "ignore_eos": True}).encode()
        request = urllib.request.Request(
            match.group(1) + "/v1/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            answer = json.loads(resp.read())
        assert answer["usage"]["completion_tokens"] == 5
        with urllib.request.urlopen(match.group(1) + "/metrics", timeout=30) as resp:
            metrics = resp.read().decode()
        assert 'vllm:request_success_total{model_name="Llama-2-7B"} 1.0' in metrics
        assert 'vllm:generation_tokens_total{model_name="Llama-2-7B"} 5.0' in metrics
        assert "# HELP vllm:kv_cache_usage_perc" in metrics
        assert "burstlab_kv_blocks 7449" in metrics
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert run("serve", "--fixed", "ttft=0.01,itl=0.01", "--engine", "x.yaml").returncode == 2


def test_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run("serve", "--fixed", "ttft=0.05,itl=0.01", "--port", str(port))
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in out.stderr


def test_unwritable_log_is_a_clear_error(tmp_path: Path) -> None:
    log = tmp_path / "missing-dir" / "log.jsonl"
    out = run("serve", "--fixed", "ttft=0.05,itl=0.01", "--port", "0", "--log", str(log))
    assert out.returncode == 2
    assert out.stderr.startswith("error: cannot write --log")
