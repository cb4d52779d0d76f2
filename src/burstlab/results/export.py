"""A run's headline figures in other tools' shapes: vLLM's ``--save-result`` JSON and a CSV."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from burstlab.results.manifest import Manifest
from burstlab.results.metrics import BY_NAME, LATENCY, METRICS, PERCENTILES, Distribution
from burstlab.results.summary import RunSummary

#: The percentiles besides the median, as ``vllm bench serve --metric-percentiles 90,95,99``.
VLLM_PERCENTILES = (90, 95, 99)
#: The metrics written, as ``--percentile-metrics ttft,tpot,itl,e2el``.
VLLM_METRICS = tuple(m.vllm for m in METRICS if m.vllm is not None)
#: The top-level keys of ``vllm bench serve --save-result`` (without ``--save-detailed``)
#: with the percentile options above, in vLLM's order.
VLLM_KEYS: tuple[str, ...] = (
    "date",
    "endpoint_type",
    "backend",
    "label",
    "model_id",
    "tokenizer_id",
    "num_prompts",
    "request_rate",
    "burstiness",
    "max_concurrency",
    "duration",
    "completed",
    "failed",
    "total_input_tokens",
    "total_output_tokens",
    "request_throughput",
    "request_goodput",
    "output_throughput",
    "total_token_throughput",
    "max_output_tokens_per_s",
    "max_concurrent_requests",
    *(
        f"{stat}_{name}_ms"
        for name in VLLM_METRICS
        for stat in ("mean", "median", "std", *(f"p{p}" for p in VLLM_PERCENTILES))
    ),
)
#: vLLM's names for burstlab's APIs.
_ENDPOINTS = {"completions": "openai", "chat": "openai-chat"}


def vllm_result(summary: RunSummary, manifest: Manifest, table: pl.DataFrame) -> dict[str, Any]:
    """The run as ``vllm bench serve --save-result`` writes it (milliseconds; the
    request rate is the mean offered rate and ``burstiness`` the Gamma shape
    1/CV^2 of the intended gaps, vLLM's own parameterisation)."""
    config = manifest.config or {}
    api = str(config.get("api", "completions"))
    endpoint = _ENDPOINTS.get(api, api) if manifest.kind == "bench" else "burstlab-simulate"
    model = config.get("model") if manifest.kind == "bench" else _simulated_model(manifest)
    out: dict[str, Any] = {
        "date": datetime.fromtimestamp(manifest.started_wall).strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": endpoint,
        "backend": endpoint,
        "label": "burstlab",
        "model_id": model,
        "tokenizer_id": config.get("tokenizer") or model,
        "num_prompts": summary.counts.scheduled,
        "request_rate": summary.offered_rate_rps if summary.offered_rate_rps else "inf",
        "burstiness": _burstiness(table),
        "max_concurrency": config.get("max_concurrency"),
        "duration": summary.duration_s,
        "completed": summary.counts.ok,
        "failed": summary.counts.failed,
        "total_input_tokens": summary.lengths.input_achieved,
        "total_output_tokens": summary.lengths.output_achieved,
        "request_throughput": summary.throughput.requests_per_s,
        "request_goodput": summary.goodput.requests_per_s if summary.goodput else None,
        "output_throughput": summary.throughput.output_tokens_per_s,
        "total_token_throughput": summary.throughput.total_tokens_per_s,
        "max_output_tokens_per_s": _peak_tokens_per_s(table),
        "max_concurrent_requests": _peak_concurrency(table),
    }
    for name in LATENCY:
        theirs = BY_NAME[name].vllm
        if theirs is None:
            continue
        d = summary.metrics[name]
        out[f"mean_{theirs}_ms"] = _ms(d.mean)
        out[f"median_{theirs}_ms"] = _ms(d.p50)
        out[f"std_{theirs}_ms"] = _ms(d.std)
        for p in VLLM_PERCENTILES:
            out[f"p{p}_{theirs}_ms"] = _ms(d.at(p))
    return {key: out[key] for key in VLLM_KEYS}


def metrics_csv(summary: RunSummary) -> bytes:
    """One row per metric of the metric table (and the schedule lag): its unit,
    label, vLLM name and distribution."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    stats = ("count", "mean", "std", *(f"p{p}" for p in PERCENTILES), "max")
    writer.writerow(("metric", "label", "unit", "vllm_name", *stats))
    rows: list[tuple[str, Distribution]] = [(n, summary.metrics[n]) for n in LATENCY]
    rows.append(("schedule_lag_s", summary.schedule_lag_s))
    for name, dist in rows:
        metric = BY_NAME[name]
        values = dist.model_dump()
        writer.writerow(
            (name, metric.label, metric.unit, metric.vllm or "", *(_cell(values[s]) for s in stats))
        )
    return buf.getvalue().encode()


def _simulated_model(manifest: Manifest) -> str | None:
    """The model a simulation stood for: a preset's name, or a described model's ``name``."""
    model = (manifest.engine or {}).get("model")
    if isinstance(model, dict):
        model = model.get("name")
    return model if isinstance(model, str) else None


def _cell(value: float | int | None) -> str:
    return "" if value is None else repr(value)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _burstiness(table: pl.DataFrame) -> float | None:
    gaps = np.diff(np.sort(table["arrival_s"].to_numpy()))
    if gaps.size < 2 or gaps.mean() <= 0 or gaps.std() <= 0:
        return None
    return float((gaps.mean() / gaps.std()) ** 2)


def _peak_tokens_per_s(table: pl.DataFrame) -> float | None:
    """The most output tokens received in one whole second of the run, as vLLM counts them."""
    ok = table.select("outcome", "chunk_s", "chunk_tokens").filter(pl.col("outcome") == "ok")
    chunks = ok.select(
        pl.col("chunk_s").explode().alias("t"), pl.col("chunk_tokens").explode().alias("n")
    ).drop_nulls()
    if chunks.height == 0:
        return None
    per_second = chunks.group_by(pl.col("t").floor()).agg(pl.col("n").sum())
    return float(per_second["n"].max())  # type: ignore[arg-type]


def _peak_concurrency(table: pl.DataFrame) -> int | None:
    """The most requests in flight (sent and not ended) at once."""
    spans = table.select("sent_s", "end_s").drop_nulls()
    if spans.height == 0:
        return None
    times = np.concatenate([spans["sent_s"].to_numpy(), spans["end_s"].to_numpy()])
    steps = np.concatenate([np.ones(spans.height), -np.ones(spans.height)])
    order = np.lexsort((steps, times))  # ends before starts at the same instant
    return int(np.cumsum(steps[order]).max())
