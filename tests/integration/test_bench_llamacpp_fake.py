"""bench against a stand-in for llama-server (tests/support/fake_llama.py): exact
lengths through /tokenize, the server's timings in every record, /metrics scraped."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from burstlab.bench.agreement import gap_summary, timing_gaps
from burstlab.bench.run import BenchConfig, bench
from burstlab.bench.server_metrics import METRICS_FILE, read_server_metrics
from burstlab.results.records import load_records
from burstlab.results.rundir import RunDir
from support.fake_llama import fake_llama
from support.frames import workload


def _workload(n: int) -> pl.DataFrame:
    table = workload([0.01 * i for i in range(n)])
    return table.with_columns(
        pl.Series("input_tokens", [5 + 37 * i for i in range(n)], dtype=pl.Int32),
        pl.Series("output_tokens", [3 + i % 7 for i in range(n)], dtype=pl.Int32),
    )


def test_llamacpp_backend_lengths_timings_and_metrics(tmp_path: Path) -> None:
    with fake_llama(slots=2) as server:
        config = BenchConfig(url=server.url, backend="llamacpp", scrape_metrics_s=0.05)
        result = bench(_workload(12), config, tmp_path / "run")
    assert result.summary.counts.ok == 12
    table = load_records(tmp_path / "run")
    # requested and achieved agree, by the server's own count
    assert (table["input_tokens_achieved"] == table["input_tokens"]).all()
    assert (table["output_tokens_achieved"] == table["output_tokens"]).all()
    assert sorted(server.prompts) == sorted(table["input_tokens"].to_list())
    assert all(server.ignore_eos)
    assert table["server_prompt_ms"].null_count() == 0
    assert table["server_first_ms"].null_count() == 0
    gaps = timing_gaps(table)
    summary = gap_summary(gaps)
    assert summary["compared"] == 12
    # The server's span of a request lies inside the client's (sent before the server
    # saw it, ended after its last token), so the end-to-end gap is never negative; each
    # part alone may be, by a client that read the first chunk late. How small the gaps
    # are is timing: benchmarks/real_engine.py.
    e2e_gap = gaps["ttft_gap_ms"] + gaps["decode_gap_ms"]
    assert (e2e_gap > -0.01).all(), gaps
    assert summary["decode_gap_ms"]["n"] == 12
    manifest = RunDir(tmp_path / "run").manifest()
    assert manifest is not None
    scraped = read_server_metrics(tmp_path / "run" / METRICS_FILE, manifest.t0_perf_ns)
    assert scraped is not None
    assert {"queued", "processing", "kv_use"} <= set(scraped.columns)
    assert scraped["processing"].max() <= 2


def test_report_shows_the_server_view_beside_the_client(tmp_path: Path) -> None:
    from burstlab.report.run import figures
    from burstlab.report.run_loader import load_run

    with fake_llama(slots=1, itl_s=0.003) as server:
        config = BenchConfig(url=server.url, backend="llamacpp", scrape_metrics_s=0.02)
        bench(_workload(6), config, tmp_path / "run")
    captions = [caption for caption, _ in figures(load_run(tmp_path / "run"))]
    assert any(c.startswith("Client against server over the run") for c in captions)
    assert any(
        c.startswith("bench against the server's own timings (6 requests)") for c in captions
    )


def test_server_tokenizer_speaks_llama_and_vllm_dialects() -> None:
    from burstlab.bench.server_tokens import word_ids
    from burstlab.workload.prompts import fallback_words

    expected = [tuple(b + 3 for b in f" {w}".encode()) for w in fallback_words()]
    for vllm in (False, True):
        with fake_llama(vllm=vllm) as server:
            assert list(word_ids(server.url)) == expected


def test_server_tokenizer_against_burstlab_serve(tmp_path: Path) -> None:
    """The vLLM dialect for real: ``burstlab serve``'s /tokenize gives the ids bench
    sends, and the server counts exactly the requested prompt lengths."""
    from burstlab.server.app import make_app
    from burstlab.server.fixed import FixedTiming
    from burstlab.server.hosting import serve_in_thread

    timing = FixedTiming(ttft=0.001, itl=0.001)
    with serve_in_thread(make_app(timing)) as url:
        config = BenchConfig(url=url, backend="vllm", tokenizer="server")
        result = bench(_workload(8), config, tmp_path / "run")
    assert result.summary.counts.ok == 8
    table = load_records(tmp_path / "run")
    assert (table["input_tokens_achieved"] == table["input_tokens"]).all()
