"""Client capacity: the highest constant request rate burstlab's client holds on time.

What it does
------------
1. Starts a minimal OpenAI-compatible server in its own process, pinned to CPU
   ``1``: raw ``asyncio.Protocol`` on uvloop, HTTP/1.1 keep-alive, requests
   parsed by hand (``Content-Length`` bodies, pipelined or split across reads).
   ``POST /v1/completions`` and ``/v1/chat/completions`` are answered after a
   fixed TTFT (``--ttft-ms``, default 1 ms, ``loop.call_later``) with the whole
   stream in one ``transport.write`` of pre-built bytes: ``max_tokens`` (default
   ``--tokens`` 20) one-token chunks, ``finish_reason: "length"`` on the last, a
   usage chunk with ``choices: []``, then ``data: [DONE]``; one HTTP chunk per
   SSE event, as real servers send them. ``GET /v1/models`` and ``/health``
   answer at once. It costs ~35-60 µs of CPU per request (~0.2 of its core at
   6,000 req/s), so it is not the bottleneck; burstlab's aiohttp mock server
   would be, on a 2-core machine.
2. Offers burstlab's client (``burstlab.bench.run.bench``, backend ``vllm``,
   ``/v1/completions``, 32-token prompts, 20-token streams) a constant rate for
   ``--seconds`` (default 6) per step, each step in a fresh child process:
   ``--rates`` (default 500 ... 8000 req/s), stopping after the first step that
   is not held, then ``--refine`` (default 2) bisection steps between the last
   held and the first failed rate. Once with one process, pinned to CPU 0; once
   with ``BenchConfig(workers=2)``: the two worker processes (and their mostly
   idle parent) may run on both cores, so they share CPU 1 with the server
   (there is no third core); the server's CPU share is printed per step. Once
   with ``BenchConfig(executor="ray", workers=2)`` on a local Ray started in the
   step's process with ``ray.init(num_cpus=2)``: two actors of one core each,
   the Ray executor's whole path (placement, clock offsets, ``t0`` sent per
   node, records streamed to the driver) on one machine; its CPU counts Ray's
   own processes (GCS, raylet, the actors), which are the step's descendants.
   The clock offset measured for each node (and its round trip, drift and the
   start spread) is printed under each step.
3. If GuideLLM can run (``--guidellm PATH``, default ``guidellm`` on PATH), runs
   its client against the same server, pinned to CPU 0 like burstlab's single
   process, with a constant profile at the same kind of ladder (from 100 req/s):
   once with its default worker processes and once with
   ``GUIDELLM__MAX_WORKER_PROCESSES=1``. Data offline: a local JSONL file of N
   rows ``{"prompt": <32 words>, "prompt_tokens_count": 32,
   "output_tokens_count": 20}`` (``--data kind=json_file``; no Hugging Face
   tokenizer or download is needed), ``HF_HUB_OFFLINE=1``; the run ends when the
   N rows are used (N = rate x seconds). Its lag is ``resolve_start -
   targeted_start`` from its own per-request timings (a 5,000-request reservoir
   sample, ``--metrics sample_size``), and its achieved rate is its own
   ``successful / duration``; its mean ``request_targeted_start_delay`` is
   printed beside them.

Definitions
-----------
``lag`` = ``dispatched - intended`` (burstlab's ``schedule_lag_s``: the request's
task started this late). A request is *on time* when it was sent and its lag is
at most 5 ms. A step is *held* when lag p99 <= 5 ms, >= 99% of the scheduled
requests are on time, and every request ended ok (no failure, none unsent).
``achieved`` is ok requests per second over the run (first send to last end).
``CPU µs/req`` is the client's CPU time (user + system, the child and all its
descendants, sampled with psutil at 10 Hz) over the steady window from 0.5 s
after ``t0`` to the last intended send, divided by the requests intended in that
window; ``cores`` is the same CPU time over the window's length. ``other`` is the
CPU the rest of the machine used meanwhile (``/proc/stat`` busy time minus the
client, the server and this script), in cores. The machine is shared: before
each try the script waits (up to 60 s) until other load stays below ``--busy``
(0.3 cores) for a second; a try with ``other`` above it is measured again, up to
twice; a step that is not held is run once more; the best try is kept.
Near its limit an open-loop client is bistable: one stall makes streams pile up,
new connections open, and the run collapses into seconds of lag (and, past
~6,000 req/s, ``connect`` failures); so the highest rate held varies by a
step (±250 req/s) from run to run.
burstlab's own client-bound verdict (RELIABILITY.md 2.2) is printed as ``own``.

Goal (issue): >= 3,000 req/s held from one process, with lag p99 <= 5 ms and
>= 99% on time. The ratio printed is burstlab (one process) / GuideLLM (best of
its two settings) highest rate held, both on the same one core. Failing a goal
is reported, not an error. Results also go to ``<out-dir>/client_capacity.json``.

``--diagnose-spin`` adds a diagnostic ladder (not the shipped client): the same
single-process runs with ``burstlab.bench.runner.Pacer.until`` replaced by a
plain ``asyncio.sleep`` (no yield-until-the-instant loop), to show the CPU the
client's work takes apart from its wait loop.

Run
---
``.venv/bin/python benchmarks/client_capacity.py`` (about 10 minutes with
GuideLLM). Options: ``--rates``, ``--workers-rates``, ``--guidellm-rates``,
``--refine``, ``--seconds``, ``--guidellm PATH`` / ``--no-guidellm``,
``--diagnose-spin``, ``--ttft-ms``, ``--tokens``, ``--busy``, ``--out-dir``.
Needs 2 CPUs, psutil (``burstlab[bench]``) and Linux (CPU affinity, /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVER_CPU = 1
CLIENT_CPU = 0
ON_TIME_S = 0.005
GOAL_RPS = 3000.0
INPUT_TOKENS = 32
DEFAULT_RATES = "500,1000,2000,3000,4000,5000,6000,7000,8000"
DEFAULT_WORKER_RATES = "1000,2000,4000,5000,6000,7000,8000,10000"
GUIDELLM_RATES = "100,250,500,1000,2000,3000,4000,5000"
GUIDELLM_SAMPLE = 5000
RAY = "burstlab, --executor ray (2 actors)"


# --- 1. the server: raw asyncio.Protocol on uvloop, pre-built SSE bytes --------------------------

_MAX_HEAD = 64 << 10
_MAX_BODY = 16 << 20
_CACHE_MAX = 4096
_WORD = " tok"


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk holding one SSE event."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _sse_response(api: str, model: str, tokens: int, prompt_tokens: int) -> bytes:
    """A complete chunked HTTP response: ``tokens`` one-token chunks (the last with
    finish_reason "length"), a usage chunk with ``choices: []``, then ``[DONE]``."""
    dumps = json.dumps
    parts = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    ]
    head: dict[str, Any]
    if api == "chat":
        head = {"id": "chatcmpl-cap", "object": "chat.completion.chunk", "created": 0}
        head["model"] = model
        role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        parts.append(_chunk(dumps({**head, "choices": [role]}).encode()))
        for k in range(tokens):
            reason = "length" if k == tokens - 1 else None
            choice: dict[str, Any] = {"index": 0, "delta": {"content": _WORD}}
            choice["finish_reason"] = reason
            parts.append(_chunk(dumps({**head, "choices": [choice]}).encode()))
    else:
        head = {"id": "cmpl-cap", "object": "text_completion", "created": 0, "model": model}
        for k in range(tokens):
            reason = "length" if k == tokens - 1 else None
            choice = {"index": 0, "text": _WORD, "logprobs": None, "finish_reason": reason}
            parts.append(_chunk(dumps({**head, "choices": [choice]}).encode()))
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": tokens,
        "total_tokens": prompt_tokens + tokens,
    }
    parts.append(_chunk(dumps({**head, "choices": [], "usage": usage}).encode()))
    parts.append(_chunk(b"[DONE]"))
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def _json_response(status: str, obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        len(body),
        body,
    )


def _whole_response(api: str, model: str, tokens: int, prompt_tokens: int) -> bytes:
    """The non-streaming reply (``"stream": false``), for completeness."""
    text = _WORD * tokens
    if api == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
    else:
        choice = {"index": 0, "text": text, "logprobs": None}
    choice["finish_reason"] = "length"
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens}
    usage["total_tokens"] = prompt_tokens + tokens
    obj = {"id": "cap", "object": "text_completion", "created": 0, "model": model}
    return _json_response("200 OK", {**obj, "choices": [choice], "usage": usage})


def _prompt_tokens(api: str, body: dict[str, Any]) -> int:
    """Cheap prompt size: a token-id list's length, or whitespace-separated words."""
    if api == "chat":
        messages = body.get("messages") or []
        return sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        return len(prompt)
    return len(str(prompt).split())


class _ServerState:
    """What all connections share: the timing, counters and a cache of pre-built replies."""

    def __init__(self, ttft_s: float, default_tokens: int) -> None:
        try:
            import orjson

            self.loads = orjson.loads
        except ImportError:  # pragma: no cover - orjson is a burstlab dependency
            self.loads = json.loads
        self.ttft_s = ttft_s
        self.default_tokens = default_tokens
        self.cache: dict[tuple[str, str, int, int, bool], bytes] = {}
        self.requests = 0
        self.connections = 0
        self.models = _json_response(
            "200 OK", {"object": "list", "data": [{"id": "m", "object": "model"}]}
        )
        self.health = _json_response("200 OK", {"status": "ok"})
        self.missing = _json_response("404 Not Found", {"error": {"message": "no such route"}})

    def reply(self, api: str, raw: bytes) -> bytes:
        try:
            body = self.loads(raw)
        except ValueError:
            return _json_response("400 Bad Request", {"error": {"message": "bad JSON"}})
        if not isinstance(body, dict):
            return _json_response("400 Bad Request", {"error": {"message": "not an object"}})
        tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        tokens = max(1, min(int(tokens), 4096)) if tokens else self.default_tokens
        model = str(body.get("model") or "m")[:200]
        stream = bool(body.get("stream", False))
        key = (api, model, tokens, _prompt_tokens(api, body), stream)
        out = self.cache.get(key)
        if out is None:
            build = _sse_response if stream else _whole_response
            out = build(api, model, tokens, key[3])
            if len(self.cache) >= _CACHE_MAX:
                self.cache.clear()
            self.cache[key] = out
        self.requests += 1
        return out


_ROUTES = {b"/v1/completions": "completions", b"/v1/chat/completions": "chat"}


class _Connection(asyncio.Protocol):
    """One keep-alive connection: parses requests (pipelined or split across reads)
    and answers them in order, each after the fixed TTFT, in one ``write``."""

    def __init__(self, state: _ServerState) -> None:
        self.state = state
        self.buf = bytearray()
        self.queue: collections.deque[list[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = transport  # type: ignore[assignment]
        self.state.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        del exc  # a reset or a clean close: either way the connection is gone
        self.transport = None
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while self.transport is not None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    self._fail(b"431 Request Header Fields Too Large")
                return
            lines = bytes(buf[:end]).split(b"\r\n")
            try:
                method, path, _version = lines[0].split(b" ", 2)
            except ValueError:
                self._fail(b"400 Bad Request")
                return
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        self._fail(b"400 Bad Request")
                        return
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
                elif name == b"transfer-encoding":
                    self._fail(b"501 Not Implemented")
                    return
            if not 0 <= length <= _MAX_BODY:
                self._fail(b"413 Content Too Large")
                return
            start = end + 4
            if len(buf) < start + length:
                return  # the rest of the body is still on its way
            body = bytes(buf[start : start + length])
            del buf[: start + length]
            self._handle(method, path.partition(b"?")[0], body, close)

    def _handle(self, method: bytes, path: bytes, body: bytes, close: bool) -> None:
        api = _ROUTES.get(path)
        if method == b"POST" and api is not None:
            entry = [False, self.state.reply(api, body), close]
            self.queue.append(entry)
            self.loop.call_later(self.state.ttft_s, self._ready, entry)
            return
        if method == b"GET" and path == b"/v1/models":
            out = self.state.models
        elif method == b"GET" and path == b"/health":
            out = self.state.health
        else:
            out = self.state.missing
        entry = [False, out, close]
        self.queue.append(entry)
        self._ready(entry)

    def _ready(self, entry: list[Any]) -> None:
        """Mark a reply due; write every due reply at the head of the queue (in order)."""
        entry[0] = True
        queue = self.queue
        while queue and queue[0][0] and self.transport is not None:
            _, out, close = queue.popleft()
            self.transport.write(out)
            if close:
                self.transport.close()

    def _fail(self, status: bytes) -> None:
        if self.transport is not None:
            self.transport.write(b"HTTP/1.1 %s\r\nContent-Length: 0\r\n\r\n" % status)
            self.transport.close()


def serve(port: int, ttft_s: float, tokens: int, cpu: int | None) -> None:
    """Serve on 127.0.0.1:``port`` until SIGTERM/SIGINT. Prints ``listening PORT``
    first, and at the end the requests and connections served and its CPU seconds."""
    import uvloop

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    state = _ServerState(ttft_s, tokens)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Connection(state), "127.0.0.1", port, backlog=4096, reuse_address=True
        )
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await stop.wait()

    uvloop.run(main())
    report = {"requests": state.requests, "connections": state.connections}
    print(json.dumps(report | {"cpu_s": time.process_time()}), flush=True)


class Server:
    """The capacity server in its own process (this script with ``--serve``)."""

    def __init__(self, ttft_s: float, tokens: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--ttft-ms", repr(ttft_s * 1e3),
             "--tokens", str(tokens), "--cpu", str(SERVER_CPU)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening "):
            self.proc.kill()
            self.proc.wait()
            raise SystemExit(f"the capacity server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> dict[str, Any]:
        """Stop the server; its final counters (empty if it had died)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        with contextlib.suppress(ValueError, IndexError):
            result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
            return result
        return {}


# --- 2. CPU accounting while a client runs ----------------------------------------------------


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / _TICK


def _tree_cpu_s(proc: Any) -> float:
    """User + system CPU seconds of ``proc`` (a psutil.Process) and its live descendants."""
    import psutil

    total = 0.0
    with contextlib.suppress(psutil.Error):
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
    return total


@dataclass
class Sampler:
    """Samples, every ``period`` s, the CPU seconds of a client process tree, of the
    server, of this process and of the whole machine, on ``perf_counter`` time."""

    client_pid: int
    server_pid: int
    period: float = 0.1
    rows: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        import psutil

        try:
            client = psutil.Process(self.client_pid)
            server = psutil.Process(self.server_pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            now = time.perf_counter()
            try:
                server_s = sum(server.cpu_times()[:2])
            except psutil.Error:
                server_s = float("nan")
            self.rows.append(
                (now, _tree_cpu_s(client), server_s, time.process_time(), _machine_busy_s())
            )
            self._stop.wait(self.period)

    def window(self, start: float, end: float) -> dict[str, float] | None:
        """CPU in cores over [start, end] (perf_counter seconds), interpolated between
        samples: ``client``, ``server``, ``other`` (the rest of the machine), plus
        ``client_s`` (CPU seconds) and ``seconds``; None without samples around it."""
        rows = self.rows
        if len(rows) < 2 or end <= start:
            return None
        start, end = max(start, rows[0][0]), min(end, rows[-1][0])
        if end - start < 0.5:
            return None

        def at(t: float) -> list[float]:
            for a, b in itertools.pairwise(rows):
                if a[0] <= t <= b[0]:
                    w = (t - a[0]) / max(b[0] - a[0], 1e-9)
                    return [x + w * (y - x) for x, y in zip(a[1:], b[1:], strict=True)]
            return list(rows[-1][1:])

        lo, hi = at(start), at(end)
        client, server, me, busy = (h - lo_ for h, lo_ in zip(hi, lo, strict=True))
        span = end - start
        return {
            "seconds": span,
            "client_s": client,
            "client": client / span,
            "server": server / span,
            "other": max(0.0, busy - client - server - me) / span,
        }


# --- 3. one burstlab step, in a child process -------------------------------------------------


def workload(n: int, rate: float, output_tokens: int) -> Any:
    """The canonical request table: ``n`` requests at a constant ``rate``."""
    import polars as pl

    from burstlab.trace.schema import conform

    return conform(
        pl.DataFrame(
            {
                "arrival_s": [i / rate for i in range(n)],
                "model": ["m"] * n,
                "log_type": ["api"] * n,
                "session_id": [None] * n,
                "turn": [None] * n,
                "input_tokens": [INPUT_TOKENS] * n,
                "output_tokens": [output_tokens] * n,
                "failed": [False] * n,
                "elapsed_s": [None] * n,
            },
            schema_overrides={"session_id": pl.String, "turn": pl.Int32, "elapsed_s": pl.Float64},
        )
    ).collect()


def _plain_sleep_until() -> None:
    """Diagnostic only: replace burstlab's wait-until-the-instant with a plain sleep."""
    from burstlab.bench import runner

    async def until(self: Any, target: float) -> None:
        wait = target - self.clock.now()
        if wait > 0:
            await asyncio.sleep(wait)

    runner.Pacer.until = until  # type: ignore[method-assign]


def _lag_stats(lag: Any, scheduled: int) -> dict[str, float]:
    """p50/p99/max of ``lag`` (seconds, NaN = never sent) and the on-time share of
    ``scheduled`` requests (a request never sent is not on time)."""
    import numpy as np

    sent = lag[np.isfinite(lag)]
    if sent.size == 0:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "on_time": 0.0}
    p50, p99 = np.percentile(sent, [50, 99])
    return {
        "p50": float(p50),
        "p99": float(p99),
        "max": float(sent.max()),
        "on_time": float((sent <= ON_TIME_S).sum()) / max(scheduled, 1),
    }


def measure_burstlab(
    url: str,
    rate: float,
    seconds: float,
    *,
    workers: int,
    tokens: int,
    plain: bool,
    executor: str = "process",
) -> dict[str, Any]:
    """One constant-rate run of burstlab's client in this (fresh) process. Counts, lag
    and the achieved rate come from the run's records; burstlab's own client-bound
    verdict from its summary."""
    import numpy as np
    import polars as pl

    from burstlab.bench.run import BenchConfig, bench
    from burstlab.results.rundir import RunDir

    if plain:
        _plain_sleep_until()
    n = max(2, round(rate * seconds))
    table = workload(n, rate, tokens)
    if executor == "ray":
        import ray

        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    config = BenchConfig(url=url, model="m", backend="vllm", workers=workers, executor=executor)
    with tempfile.TemporaryDirectory(prefix="burstlab-capacity-") as tmp:
        run_dir = Path(tmp) / "run"
        result = bench(table, config, run_dir)
        run = RunDir(run_dir)
        records, manifest = run.records(), run.manifest()
    assert records is not None
    assert manifest is not None
    lag = records["schedule_lag_s"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    outcome = records["outcome"]
    ok = records.filter(outcome == "ok")
    failed = records.filter(outcome == "failed")
    span = (ok["end_s"].max() or 0.0) - (ok["sent_s"].min() or 0.0)  # type: ignore[operator]
    kinds = failed.select(
        pl.concat_str("error_kind", "error_subkind", separator=".", ignore_nulls=True)
    ).to_series()
    summary = result.summary
    return {
        "rate": rate,
        "scheduled": n,
        "span_s": (n - 1) / rate,
        "t0_perf_ns": manifest.t0_perf_ns,
        "achieved": ok.height / span if span > 0 else 0.0,
        "lag": _lag_stats(np.asarray(lag, dtype=float), n),
        "ok": ok.height,
        "failed": failed.height,
        "unsent": n - ok.height - failed.height,
        "failures": dict(collections.Counter(kinds.to_list())),
        "ttft_p50_s": (ok["first_s"] - ok["sent_s"]).median(),
        "own": summary.client.model_dump(),
        "cluster": manifest.cluster.model_dump() if manifest.cluster is not None else None,
    }


# --- 4. one GuideLLM step ---------------------------------------------------------------------


def guidellm_usable(path: str | None) -> tuple[str | None, str]:
    """The guidellm executable and its version, or None and why it cannot be used."""
    exe = shutil.which(path or "guidellm")
    if exe is None:
        return None, f"{path or 'guidellm'!r} not found (pass --guidellm PATH)"
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{exe} --version failed: {exc}"
    if out.returncode != 0:
        return None, f"{exe} --version exited {out.returncode}: {out.stderr.strip()[-300:]}"
    version = out.stdout.strip().rsplit(" ", 1)[-1]
    help_out = subprocess.run(
        [exe, "run", "--help"], capture_output=True, text=True, timeout=120, check=False
    ).stdout
    if "kind=" not in help_out or "json_file" not in help_out:
        return None, f"guidellm {version}: its `run` has not the kind=... options (needs >= 0.6)"
    return exe, version


def _guidellm_data(path: Path, n: int, tokens: int) -> None:
    """``n`` rows of 32-word prompts with 32 prompt / ``tokens`` output token counts."""
    words = ("the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "as")
    with path.open("w") as fh:
        for i in range(n):
            prompt = " ".join(words[(i + k) % len(words)] for k in range(INPUT_TOKENS))
            row = {"prompt": prompt, "prompt_tokens_count": INPUT_TOKENS}
            fh.write(json.dumps(row | {"output_tokens_count": tokens}) + "\n")


def guidellm_command(exe: str, url: str, rate: float, data: Path, out: Path) -> list[str]:
    return [
        exe, "run",
        "--backend", f"kind=openai_http,target={url},model=m,request_format=/v1/completions",
        "--profile", f"kind=constant,rate={rate:g}",
        "--data", f"kind=json_file,path={data}",
        "--output", f"kind=json,path={out}",
        "--metrics", f"kind=generative,sample_size={GUIDELLM_SAMPLE}",
        "--disable-console",
    ]  # fmt: skip


def guidellm_result(path: Path, rate: float, n: int) -> dict[str, Any]:
    """The step's figures from GuideLLM's JSON report."""
    import numpy as np

    report = json.loads(path.read_text())
    bench = report["benchmarks"][0]
    made = bench["scheduler_metrics"]["requests_made"]
    sampled = [
        r
        for group in ("successful", "errored", "incomplete")
        for r in (bench["requests"].get(group) or [])
    ]
    timings = [r["info"]["timings"] for r in sampled]
    lag = np.array(
        [
            t["resolve_start"] - t["targeted_start"]
            if t.get("resolve_start") is not None and t.get("targeted_start") is not None
            else np.nan
            for t in timings
        ],
        dtype=float,
    )
    stats = _lag_stats(lag, len(sampled))
    # the sample is of requests made; requests never made are not on time
    stats["on_time"] *= min(1.0, made["total"] / max(n, 1))
    start_s = [t["targeted_start"] for t in timings if t.get("targeted_start") is not None]
    duration = bench.get("duration") or 0.0
    return {
        "rate": rate,
        "scheduled": n,
        "span_s": (n - 1) / rate,
        "t0_wall": min(start_s) if start_s else bench["scheduler_metrics"]["request_start_time"],
        "achieved": made["successful"] / duration if duration else 0.0,
        "lag": stats,
        "ok": made["successful"],
        "failed": made["errored"],
        "unsent": n - made["total"],
        "failures": {},
        "own_delay_mean_s": bench["scheduler_metrics"].get("request_targeted_start_delay_avg"),
        "workers": bench["scheduler_state"].get("num_processes"),
        "sample": len(sampled),
    }


# --- 5. the ladder ----------------------------------------------------------------------------


@dataclass
class Client:
    """How to run one step of one client under test."""

    name: str
    kind: str  # "burstlab" or "guidellm"
    cpus: set[int]
    workers: int = 1
    plain: bool = False
    executor: str = "process"
    exe: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def held(r: dict[str, Any]) -> tuple[bool, str]:
    """Whether a step was held, and why not."""
    why = []
    lag = r["lag"]
    if not lag["p99"] <= ON_TIME_S:
        why.append("p99")
    if lag["on_time"] < 0.99:
        why.append("on-time")
    if r["failed"]:
        why.append("errors")
    if r["unsent"]:
        why.append("unsent")
    return not why, ",".join(why)


def run_step(
    client: Client, server: Server, rate: float, *, seconds: float, tokens: int, tmp: Path
) -> dict[str, Any]:
    """One measured step of ``client`` at ``rate``; returns its figures (or an error)."""
    n = max(2, round(rate * seconds))
    env = {**os.environ, **client.env}
    if client.kind == "burstlab":
        cmd = [sys.executable, __file__, "--measure", server.url, repr(rate), repr(seconds),
               str(client.workers), str(tokens), "1" if client.plain else "0",
               client.executor]  # fmt: skip
        report = None
    else:
        assert client.exe is not None
        data, report = tmp / "guidellm-data.jsonl", tmp / "guidellm-report.json"
        _guidellm_data(data, n, tokens)
        report.unlink(missing_ok=True)
        cmd = guidellm_command(client.exe, server.url, rate, data, report)
        env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        env |= {"HF_DATASETS_CACHE": str(tmp / "hf-datasets")}
    wall_offset = time.time() - time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(proc.pid, client.cpus)
    sampler = Sampler(proc.pid, server.pid)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=max(240.0, 6 * seconds + 120))
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        out, err = proc.communicate()
        return {"rate": rate, "error": "timed out"}
    finally:
        sampler.stop()
    if proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-3:]
        return {"rate": rate, "error": f"exit {proc.returncode}: {' | '.join(tail)[-400:]}"}
    try:
        if report is None:
            result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
            t0 = (result.pop("t0_perf_ns") or 0) / 1e9
        else:
            result = guidellm_result(report, rate, n)
            t0 = result.pop("t0_wall") - wall_offset
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return {"rate": rate, "error": f"unreadable result: {type(exc).__name__}: {exc}"}
    cpu = sampler.window(t0 + 0.5, t0 + result["span_s"]) if t0 else None
    if cpu is not None:
        cpu["us_per_request"] = cpu["client_s"] / (rate * cpu["seconds"]) * 1e6
    result["cpu"] = cpu
    result["held"], result["why"] = held(result)
    return result


def _kill_tree(pid: int) -> None:
    import psutil

    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(pid)
        for p in [*parent.children(recursive=True), parent]:
            with contextlib.suppress(psutil.Error):
                p.kill()


def _fmt_ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{x * 1e3:.2f}"


def print_header(client: Client) -> None:
    cpus = ",".join(map(str, sorted(client.cpus)))
    print(f"\n== {client.name} (CPUs {cpus}) ==")
    print(
        f"{'rate':>7} {'achieved':>9} {'lag p50':>8} {'p99':>7} {'max':>8} {'on time':>8} "
        f"{'ok':>7} {'failed':>6} {'CPU µs/req':>10} {'cores':>5} {'server':>6} {'other':>5}  "
        f"verdict"
    )


def print_row(r: dict[str, Any], note: str = "") -> None:
    if "error" in r:
        print(f"{r['rate']:>7.0f}  error: {r['error']}{note}")
        return
    lag, cpu = r["lag"], r.get("cpu")
    us = f"{cpu['us_per_request']:.0f}" if cpu else "-"
    cores = f"{cpu['client']:.2f}" if cpu else "-"
    srv = f"{cpu['server']:.2f}" if cpu else "-"
    other = f"{cpu['other']:.2f}" if cpu else "-"
    verdict = "held" if r["held"] else f"FAIL ({r['why']})"
    own = r.get("own")
    if own is not None:
        verdict += "; own: " + ("client-bound" if own["bound"] else "ok")
    elif r.get("own_delay_mean_s") is not None:
        verdict += f"; own mean delay {r['own_delay_mean_s'] * 1e3:.2f} ms"
    print(
        f"{r['rate']:>7.0f} {r['achieved']:>9.0f} {_fmt_ms(lag['p50']):>8} "
        f"{_fmt_ms(lag['p99']):>7} {_fmt_ms(lag['max']):>8} {lag['on_time'] * 100:>7.2f}% "
        f"{r['ok']:>7} {r['failed'] + r['unsent']:>6} {us:>10} {cores:>5} {srv:>6} {other:>5}  "
        f"{verdict}{note}"
    )
    if r.get("cluster"):
        print(f"{'':>7}  {clock_line(r['cluster'])}")


def clock_line(cluster: dict[str, Any]) -> str:
    """The Ray run's clocks: each node's offset from the driver (± half the best
    probe's round trip) and drift over the run, and the actors' start spread."""
    parts = []
    for n in cluster["nodes"]:
        drift = n.get("drift_s")
        parts.append(
            f"node {n['node']} (actors {','.join(map(str, n['actors']))}) clock offset "
            f"{n['offset_s'] * 1e3:+.3f} ms ± {n['rtt_s'] / 2 * 1e3:.3f} ms"
            + (f", drift {drift * 1e3:+.3f} ms" if drift is not None else "")
        )
    spread = cluster.get("start_spread_s")
    if spread is not None:
        parts.append(f"starts spread {spread * 1e3:.2f} ms")
    return "; ".join(parts)


def measure(
    client: Client,
    server: Server,
    rate: float,
    args: argparse.Namespace,
    tmp: Path,
    *,
    tag: str = "",
) -> dict[str, Any]:
    """A step, measured again while the machine was busy and once more if not held;
    prints every try and returns the best."""
    tries: list[dict[str, Any]] = []
    busy_retries = 0
    while True:
        waited, idle_other = _wait_quiet(args.busy)
        if waited:
            print(f"{'':>7}  (waited {waited:.0f} s for the machine to calm down: "
                  f"{idle_other:.2f} other cores busy)")  # fmt: skip
        load = os.getloadavg()[0]
        r = run_step(client, server, rate, seconds=args.seconds, tokens=args.tokens, tmp=tmp)
        r["loadavg_before"] = load
        tries.append(r)
        other = (r.get("cpu") or {}).get("other", 0.0)
        if other > args.busy and busy_retries < 2:
            busy_retries += 1
            print_row(r, f"{tag}  [machine busy: {other:.2f} other cores, load {load:.2f}; again]")
            time.sleep(2.0)
            continue
        if "error" not in r and not r["held"] and len(tries) - busy_retries == 1:
            print_row(r, f"{tag}  [not held: once more]")
            continue
        print_row(r, tag)
        break
    best = max(tries, key=_score)
    best["tries"] = len(tries)
    if len(tries) > 1:
        kept = next(k for k, r in enumerate(tries, 1) if r is best)
        print(f"{'':>7}  -> kept try {kept} of {len(tries)} at {rate:g} req/s")
    return best


def _wait_quiet(threshold: float, limit_s: float = 60.0) -> tuple[float, float]:
    """Wait (up to ``limit_s``) until the machine's busy time, with no client running,
    stays below ``threshold`` cores for one second; return the wait and the last reading."""
    started = time.perf_counter()
    while True:
        t, busy = time.perf_counter(), _machine_busy_s()
        time.sleep(1.0)
        other = (_machine_busy_s() - busy) / (time.perf_counter() - t)
        waited = time.perf_counter() - started - 1.0  # the quiet second itself is no wait
        if other <= threshold or waited >= limit_s:
            return (waited if waited >= 1.0 else 0.0), other
        time.sleep(1.0)


def _score(r: dict[str, Any]) -> tuple[int, float, float]:
    if "error" in r:
        return (0, 0.0, 0.0)
    other = (r.get("cpu") or {}).get("other", 0.0)
    return (2 if r["held"] else 1, r["lag"]["on_time"], -other)


def _nice(rate: float) -> float:
    step = 50.0 if rate < 1000 else 250.0
    return max(step, round(rate / step) * step)


def ladder(
    client: Client, server: Server, rates: list[float], args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """Climb ``rates`` until a step is not held; refine between the last held and the
    first failed rate; return every step and the highest rate held."""
    print_header(client)
    steps: list[dict[str, Any]] = []
    best: float | None = None
    failed_at: float | None = None
    for rate in rates:
        r = measure(client, server, rate, args, tmp)
        steps.append(r)
        if "error" not in r and r["held"]:
            best = rate
        else:
            failed_at = rate
            break
    lo, hi = best, failed_at
    for _ in range(args.refine if lo is not None and hi is not None else 0):
        assert lo is not None
        assert hi is not None
        mid = _nice((lo + hi) / 2)
        if not lo < mid < hi:
            break
        r = measure(client, server, mid, args, tmp, tag="  [refine]")
        steps.append(r)
        if "error" not in r and r["held"]:
            lo = best = mid
        else:
            hi = mid
    if best is None:
        text = f"below {rates[0]:g} req/s (the first step failed)"
    elif failed_at is None:
        text = f">= {best:g} req/s (every step held; raise --rates)"
    else:
        text = f"{best:g} req/s (not held at {hi:g})"
    held_steps = [s for s in steps if s.get("held") and s["rate"] == best]
    cpu = held_steps[0].get("cpu") if held_steps else None
    us = f", {cpu['us_per_request']:.0f} CPU µs/req there" if cpu else ""
    print(f"highest rate held by {client.name}: {text}{us}")
    return {"client": client.name, "cpus": sorted(client.cpus), "workers": client.workers,
            "held_rps": best, "failed_rps": hi, "cpu_at_held": cpu, "steps": steps}  # fmt: skip


def _rates(text: str) -> list[float]:
    rates = sorted({float(x) for x in text.split(",") if x.strip()})
    if not rates or rates[0] <= 0:
        raise argparse.ArgumentTypeError("rates must be positive numbers, comma-separated")
    return rates


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every ladder against one server; the JSON summary."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {SERVER_CPU})  # keep this script off the client's core
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
        f"(uptime {_uptime()}); server on CPU {SERVER_CPU}, TTFT {args.ttft_ms:g} ms, "
        f"{args.tokens}-token streams, {INPUT_TOKENS}-token prompts, {args.seconds:g} s per step"
    )
    exe, gl_note = (None, "--no-guidellm")
    if not args.no_guidellm:
        exe, gl_note = guidellm_usable(args.guidellm)
    print(f"guidellm: {exe} {gl_note}" if exe else f"guidellm: skipped: {gl_note}")
    if not args.no_ray and importlib.util.find_spec("ray") is None:
        print("ray: skipped: not installed (pip install 'burstlab[ray]')")
        args.no_ray = True

    clients = [Client("burstlab, 1 process", "burstlab", {CLIENT_CPU})]
    if args.diagnose_spin:
        clients.append(
            Client("burstlab, 1 process, DIAGNOSTIC plain sleep", "burstlab", {CLIENT_CPU},
                   plain=True)
        )  # fmt: skip
    clients.append(Client("burstlab, --workers 2", "burstlab", {CLIENT_CPU, SERVER_CPU}, workers=2))
    if not args.no_ray:
        clients.append(Client(RAY, "burstlab", {CLIENT_CPU, SERVER_CPU}, workers=2, executor="ray"))
    if exe is not None:
        clients += [
            Client("guidellm, default workers", "guidellm", {CLIENT_CPU}, exe=exe),
            Client("guidellm, 1 worker process", "guidellm", {CLIENT_CPU}, exe=exe,
                   env={"GUIDELLM__MAX_WORKER_PROCESSES": "1"}),
        ]  # fmt: skip
    results: dict[str, Any] = {}
    server = Server(args.ttft_ms / 1e3, args.tokens)
    try:
        with tempfile.TemporaryDirectory(prefix="client-capacity-") as tmp:
            for client in clients:
                if client.kind == "guidellm":
                    rates = args.guidellm_rates
                elif client.executor == "ray":
                    rates = args.ray_rates
                elif client.workers > 1:
                    rates = args.workers_rates
                else:
                    rates = args.rates
                results[client.name] = ladder(client, server, rates, args, Path(tmp))
    finally:
        served = server.stop()
    print(
        f"\nserver: {served.get('requests', '?')} requests on {served.get('connections', '?')} "
        f"connections, {served.get('cpu_s', float('nan')):.1f} CPU s; "
        f"load average now {os.getloadavg()[0]:.2f}"
    )
    return {"results": results, "server": served, "guidellm": {"exe": exe, "note": gl_note}}


def _uptime() -> str:
    with contextlib.suppress(OSError, ValueError):
        seconds = float(Path("/proc/uptime").read_text().split()[0])
        return f"{seconds / 3600:.1f} h"
    return "?"


def report(summary: dict[str, Any]) -> None:
    results = summary["results"]
    one = results.get("burstlab, 1 process", {}).get("held_rps")
    two = results.get("burstlab, --workers 2", {}).get("held_rps")
    print("\n== summary ==")
    spinning = False
    for name, r in results.items():
        rate, cpu = r["held_rps"], r.get("cpu_at_held")
        text = "none" if rate is None else f"{rate:>6g} req/s"
        if cpu:
            text += f", {cpu['us_per_request']:>5.0f} CPU µs/req ({cpu['client']:.2f} cores)"
            spinning |= name.startswith("burstlab") and cpu["client"] >= 0.95 * r["workers"]
        print(f"{name:<45} highest rate held: {text}")
    if spinning:
        print(
            "note: burstlab's CPU figures include the wait loop of runner.Pacer.until (it yields "
            "until the exact instant): from ~2,000 req/s per process it keeps its core at 100%, "
            "so CPU µs/req there is 1e6/rate, not the work done (--diagnose-spin shows the work)"
        )
    gl = [r["held_rps"] for name, r in results.items() if name.startswith("guidellm")]
    if gl:
        best_gl = max((x for x in gl if x is not None), default=None)
        if one is not None and best_gl:
            ratio = one / best_gl
            print(f"burstlab (1 process) / guidellm (best setting), same core: {ratio:.1f}x")
            summary["ratio_vs_guidellm"] = ratio
        else:
            print(f"burstlab / guidellm ratio: n/a (burstlab {one}, guidellm {best_gl})")
    else:
        print(f"burstlab / guidellm ratio: n/a (guidellm: {summary['guidellm']['note']})")
    ok = one is not None and one >= GOAL_RPS
    print(
        f"\n{'PASS' if ok else 'FAIL'}  >= {GOAL_RPS:,.0f} req/s from one process with lag p99 "
        f"<= 5 ms and >= 99% on time ({'none' if one is None else f'{one:,.0f} req/s'})"
    )
    print(f"info  --workers 2: {'none' if two is None else f'{two:,.0f} req/s'}")
    if RAY in results:
        ray_held = results[RAY]["held_rps"]
        ratio = f", {ray_held / one:.2f}x one process" if ray_held and one else ""
        print(f"info  --executor ray (2 actors): "
              f"{'none' if ray_held is None else f'{ray_held:,.0f} req/s'}{ratio}")  # fmt: skip
        held = [s for s in results[RAY]["steps"] if s.get("held") and s.get("cluster")]
        if held:
            print(
                f"info  Ray clocks at {held[-1]['rate']:g} req/s: {clock_line(held[-1]['cluster'])}"
            )
    summary["goal"] = {"target_rps": GOAL_RPS, "held_rps": one, "pass": ok}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="See the module docstring for what is measured and in which units.",
    )
    parser.add_argument(
        "--rates",
        type=_rates,
        default=_rates(DEFAULT_RATES),
        help=f"one-process ladder, req/s (default {DEFAULT_RATES})",
    )
    parser.add_argument(
        "--workers-rates",
        type=_rates,
        default=_rates(DEFAULT_WORKER_RATES),
        help=f"--workers 2 ladder (default {DEFAULT_WORKER_RATES})",
    )
    parser.add_argument(
        "--guidellm-rates",
        type=_rates,
        default=_rates(GUIDELLM_RATES),
        help=f"guidellm ladder (default {GUIDELLM_RATES})",
    )
    parser.add_argument(
        "--ray-rates",
        type=_rates,
        default=_rates(DEFAULT_WORKER_RATES),
        help=f"Ray executor ladder (default {DEFAULT_WORKER_RATES})",
    )
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray executor's ladder")
    parser.add_argument("--refine", type=int, default=2, help="bisection steps after the ladder")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds of load per step")
    parser.add_argument("--ttft-ms", type=float, default=1.0, help="server TTFT, ms")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per stream")
    parser.add_argument(
        "--busy",
        type=float,
        default=0.3,
        help="other CPU load (cores) above which a step is measured again",
    )
    parser.add_argument("--guidellm", default=None, help="guidellm executable (default: PATH)")
    parser.add_argument("--no-guidellm", action="store_true", help="skip guidellm")
    parser.add_argument(
        "--diagnose-spin",
        action="store_true",
        help="add the plain-sleep diagnostic ladder (see the docstring)",
    )
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()  # fmt: skip
    if args.serve:
        serve(args.port, args.ttft_ms / 1e3, args.tokens, args.cpu)
        return
    if args.measure:
        url, rate, seconds, workers, tokens, plain, executor = args.measure
        result = measure_burstlab(
            url,
            float(rate),
            float(seconds),
            workers=int(workers),
            tokens=int(tokens),
            plain=plain == "1",
            executor=executor,
        )
        print(json.dumps(result))
        return
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 CPUs: the server and the client each get one")
    if args.seconds < 2 or args.refine < 0 or args.tokens < 1:
        parser.error("--seconds must be >= 2, --refine >= 0, --tokens >= 1")
    try:
        import psutil  # noqa: F401
    except ImportError:
        raise SystemExit("needs psutil (pip install 'burstlab[bench]')") from None

    summary = run_all(args)
    report(summary)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / "client_capacity.json"
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
