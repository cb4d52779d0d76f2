"""bench against llama-server's own account of every request: exact lengths by the
engine's tokenizer, its timings beside bench's, its /metrics scraped. Gaps are checked
against bounds relative to what was measured, never against a speed: the machine may be
busy (benchmarks/real_engine.py prints the figures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from burstlab.bench.agreement import gap_summary, timing_gaps
from burstlab.bench.run import BenchConfig, bench
from burstlab.bench.server_metrics import METRICS_FILE, read_server_metrics
from burstlab.results.records import load_records
from burstlab.results.rundir import RunDir
from support.frames import workload

#: The shared server's slots (tests/realengine/conftest.py).
SLOTS = 4

pytestmark = [pytest.mark.realengine, pytest.mark.extra("llamacpp"), pytest.mark.slow]


def _lengths(arrivals: list[float], inputs: list[int], outputs: list[int]) -> pl.DataFrame:
    return workload(arrivals).with_columns(
        pl.Series("input_tokens", inputs, dtype=pl.Int32),
        pl.Series("output_tokens", outputs, dtype=pl.Int32),
    )


def test_requested_and_achieved_lengths_agree(llama_url: str, tmp_path: Path) -> None:
    inputs = [1, 2, 7, 31, 64, 100, 255, 256, 511, 700, 3, 90]
    outputs = [1, 2, 3, 5, 8, 13, 21, 34, 40, 2, 17, 9]
    table = _lengths([0.0] * 6 + [0.05] * 6, inputs, outputs)
    config = BenchConfig(url=llama_url, backend="llamacpp", scrape_metrics_s=0.05)
    result = bench(table, config, tmp_path / "run")
    assert result.summary.counts.ok == len(inputs)
    got = load_records(tmp_path / "run").sort("request_id")
    # the engine's own counts: usage, and its timings (processed plus reused from cache)
    assert got["input_tokens_achieved"].to_list() == inputs
    assert got["output_tokens_achieved"].to_list() == outputs
    assert (got["server_prompt_n"] + got["server_cache_n"]).to_list() == inputs
    assert got["server_predicted_n"].to_list() == outputs
    manifest = RunDir(tmp_path / "run").manifest()
    assert manifest is not None
    scraped = read_server_metrics(tmp_path / "run" / METRICS_FILE, manifest.t0_perf_ns)
    assert scraped is not None
    assert {"queued", "processing", "kv_use"} <= set(scraped.columns)
    assert scraped["processing"].max() <= SLOTS
    assert 0.0 <= scraped["kv_use"].min() <= scraped["kv_use"].max() <= 1.0


def test_bench_agrees_with_the_server_timings(llama_url: str, tmp_path: Path) -> None:
    # One request at a time: each finds the server idle, so bench's TTFT and the
    # server's prompt time differ by the network and parsing alone.
    rng = np.random.default_rng(1)
    n = 24
    inputs = rng.integers(16, 400, n).tolist()
    outputs = rng.integers(4, 32, n).tolist()
    table = _lengths([0.0] * n, inputs, outputs)
    config = BenchConfig(url=llama_url, backend="llamacpp", max_concurrency=1)
    bench(table, config, tmp_path / "run")
    gaps = timing_gaps(load_records(tmp_path / "run"))
    assert gaps.height == n
    # the server's span of a request lies inside the client's
    assert ((gaps["ttft_gap_ms"] + gaps["decode_gap_ms"]) > -0.05).all(), gaps
    s = gap_summary(gaps)
    ttft_ms = float(gaps["ttft_ms"].median())  # type: ignore[arg-type]
    decode_ms = float(gaps["decode_ms"].median())  # type: ignore[arg-type]
    # Loose bounds, relative to what was measured: the overhead is a small part of
    # the time the engine spends (a loaded machine slows both).
    assert s["ttft_gap_ms"]["abs_median"] <= max(3.0, 0.25 * ttft_ms), s
    assert s["decode_gap_ms"]["abs_median"] <= max(3.0, 0.10 * decode_ms), s
