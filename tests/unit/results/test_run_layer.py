"""The run layer: one metric table, one percentile, RunDir, RunSummary, vllm.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest

from burstlab.core.errors import InputError
from burstlab.results.bursts import burst_view
from burstlab.results.export import VLLM_KEYS
from burstlab.results.manifest import Manifest
from burstlab.results.metrics import METRICS, percentile, quantile
from burstlab.results.records import Record, records_table
from burstlab.results.rundir import RunDir
from burstlab.results.slo import SLO
from burstlab.results.summary import summarize


def _records(n: int = 300, seed: int = 3) -> list[Record]:
    rng = np.random.default_rng(seed)
    out = []
    for i, t in enumerate(np.sort(rng.uniform(0, 60, n)).tolist()):
        sent = t + float(rng.exponential(0.001))
        if rng.random() < 0.05:
            rec = Record(request_id=i, arrival_s=t, dispatched_s=sent, sent_s=sent)
            rec.fail("http_5xx", "503", "boom")
            rec.end_s = sent + 0.01
            out.append(rec)
            continue
        k = int(rng.integers(1, 40))
        first = sent + float(rng.exponential(0.2))
        chunks = np.cumsum(np.r_[first, rng.exponential(0.02, k - 1)]).tolist()
        out.append(
            Record(
                request_id=i,
                arrival_s=t,
                input_tokens=100,
                output_tokens=k,
                outcome="ok",
                dispatched_s=sent,
                sent_s=sent,
                first_s=first,
                end_s=chunks[-1],
                chunk_s=chunks,
                chunk_tokens=[1] * k,
                input_tokens_achieved=100,
                output_tokens_achieved=k,
            )
        )
    return out


@pytest.fixture
def table() -> pl.DataFrame:
    return records_table([dataclasses.asdict(r) for r in _records()])


def test_every_summary_metric_is_the_tables_definition_applied_to_the_records(
    table: pl.DataFrame,
) -> None:
    raw = pl.DataFrame([dataclasses.asdict(r) for r in _records()])
    summary = summarize(table)
    for metric in METRICS:
        if metric.name == "schedule_lag_s":  # every request sent, failed or not
            part, got = raw.filter(pl.col("dispatched_s").is_not_null()), summary.schedule_lag_s
        else:  # latency over ok requests
            part, got = raw.filter(pl.col("outcome") == "ok"), summary.metrics[metric.name]
        values = part.select(metric.expr).to_series()
        if metric.per_token:
            values = values.explode()
        v = values.drop_nulls().cast(pl.Float64).to_numpy()
        assert got.count == v.size, metric.name
        assert got.mean == pytest.approx(float(v.mean())), metric.name
        for p in (50, 90, 95, 99):
            assert got.at(p) == pytest.approx(float(np.percentile(v, p))), (metric.name, p)


def test_percentile_and_quantile_are_one_method() -> None:
    values = np.random.default_rng(0).lognormal(0, 2, 1001)
    frame = pl.DataFrame({"x": values})
    for p in (1, 50, 90, 99, 99.9):
        assert percentile(values, p) == pytest.approx(frame.select(quantile(pl.col("x"), p)).item())
    assert percentile(np.array([np.nan]), 50) is None


def test_the_burst_view_and_the_headline_agree(table: pl.DataFrame) -> None:
    """With every window counted as busy, the burst side is the whole run: its p99
    must be the headline's p99 to the last digit (one percentile for both)."""
    summary = summarize(table)
    whole = burst_view(table, window_s=5.0, top=1.0)
    assert whole.rest.requests == 0
    assert whole.burst.e2e_p99_s == summary.metrics["e2e_s"].p99
    assert whole.burst.ttft_p99_s == summary.metrics["ttft_s"].p99


def test_run_dir_refuses_a_second_writer(tmp_path: Path) -> None:
    with (
        RunDir.create(tmp_path / "run"),
        pytest.raises(InputError, match="another burstlab run is writing"),
    ):
        RunDir.create(tmp_path / "run")
    RunDir.create(tmp_path / "run").close()  # free again once the first has ended


def test_run_dir_refuses_to_overwrite_records(tmp_path: Path) -> None:
    with RunDir.create(tmp_path / "run") as run:
        run.write_records(b'{"request_id": 0, "arrival_s": 0.0}\n')
    with pytest.raises(InputError, match="refusing to overwrite"):
        RunDir.create(tmp_path / "run")


def _write_run(path: Path, table: pl.DataFrame) -> tuple[Manifest, object]:
    with RunDir.create(path) as run:
        manifest = Manifest(kind="bench", scheduled=table.height, config={"model": "m"})
        summary = summarize(table, slo=SLO(ttft=0.5))
        run.write_manifest(manifest)
        run.write_summary(summary, manifest, table)
    return manifest, summary


def test_a_run_dir_round_trips_through_run_summary(tmp_path: Path, table: pl.DataFrame) -> None:
    manifest, summary = _write_run(tmp_path / "run", table)
    run = RunDir(tmp_path / "run")
    assert run.summary() == summary
    assert run.manifest() == manifest


def test_vllm_json_has_exactly_vllms_keys(tmp_path: Path, table: pl.DataFrame) -> None:
    # vllm/benchmarks/serve.py: the metadata written by main(), then benchmark()'s result
    # without --save-detailed, for --percentile-metrics ttft,tpot,itl,e2el and
    # --metric-percentiles 90,95,99.
    expected = [
        "date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id",
        "num_prompts", "request_rate", "burstiness", "max_concurrency",
        "duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
        "request_throughput", "request_goodput", "output_throughput",
        "total_token_throughput", "max_output_tokens_per_s", "max_concurrent_requests",
    ]  # fmt: skip
    for metric in ("ttft", "tpot", "itl", "e2el"):
        expected += [f"mean_{metric}_ms", f"median_{metric}_ms", f"std_{metric}_ms"]
        expected += [f"p{p}_{metric}_ms" for p in (90, 95, 99)]
    assert list(VLLM_KEYS) == expected
    _, summary = _write_run(tmp_path / "run", table)
    written = json.loads((tmp_path / "run" / "vllm.json").read_text())
    assert list(written) == expected
    assert written["completed"] == summary.counts.ok  # type: ignore[attr-defined]
    assert written["median_ttft_ms"] == pytest.approx(summary.metrics["ttft_s"].p50 * 1e3)  # type: ignore[attr-defined]
    assert written["request_goodput"] == summary.goodput.requests_per_s  # type: ignore[attr-defined]
    assert written["model_id"] == "m"
    csv = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert csv[0].startswith("metric,label,unit,vllm_name,count,mean")
    assert any(line.startswith("ttft_s,TTFT,s,ttft,") for line in csv)


def test_a_version_1_run_dir_still_loads(tmp_path: Path, table: pl.DataFrame) -> None:
    """The predecessor wrote no version, a ``vllm`` block in the summary and the SLO
    only inside the bench config."""
    _write_run(tmp_path / "run", table)
    run = RunDir(tmp_path / "run")
    summary = orjson.loads((tmp_path / "run" / "summary.json").read_bytes())
    del summary["version"]
    summary["vllm"] = {"completed": 1}
    (tmp_path / "run" / "summary.json").write_bytes(orjson.dumps(summary))
    manifest = orjson.loads((tmp_path / "run" / "run.json").read_bytes())
    del manifest["version"]
    manifest["config"] = {"slo": {"ttft": 0.5, "tpot": None, "e2e": None}}
    del manifest["slo"]
    (tmp_path / "run" / "run.json").write_bytes(orjson.dumps(manifest))
    loaded = run.summary()
    assert loaded is not None
    assert loaded.counts.ok == summarize(table).counts.ok
    m = run.manifest()
    assert m is not None
    assert m.slo == SLO(ttft=0.5)


def test_a_newer_run_dir_is_refused_naming_its_version(tmp_path: Path, table: pl.DataFrame) -> None:
    _write_run(tmp_path / "run", table)
    path = tmp_path / "run" / "summary.json"
    data = orjson.loads(path.read_bytes())
    data["version"] = 7
    path.write_bytes(orjson.dumps(data))
    with pytest.raises(InputError, match=r"summary.json is format version 7"):
        RunDir(tmp_path / "run").summary()


def test_a_simulation_names_the_model_it_stood_for(table: pl.DataFrame) -> None:
    from burstlab.results.export import vllm_result

    summary = summarize(table)
    for described in ("Llama-2-7B", {"name": "Llama-2-7B", "layers": 32}):
        manifest = Manifest(kind="simulate", scheduled=table.height, engine={"model": described})
        out = vllm_result(summary, manifest, table)
        assert out["model_id"] == "Llama-2-7B"
        assert out["backend"] == "burstlab-simulate"
