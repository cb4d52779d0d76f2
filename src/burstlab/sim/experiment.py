"""The BurstGPT paper's serving demos as one call: the same workload through engine
variants that differ in one setting, compared on the same metrics.

- ``scheduling``: FCFS against shortest- and longest-request-first (keyed as the
  spec says, by default on input length);
- ``kv``: the KV-cache size swept from a tenth of the derived block count to
  twice it (``num_blocks`` x 0.1, 0.25, 0.5, 1, 2), to see where a burst starts
  to preempt and fail. Real clients give up, so an engine whose spec configures
  no failure limit (none of ``queue_cap``, ``queue_timeout_s``,
  ``client_timeout_s``, ``max_preemptions`` written under ``engine``) gets
  :data:`KV_LIMITS`; write any of them (``client_timeout_s: null`` included)
  to choose the limits yourself;
- ``pd``: the same number of instances (the spec's ``pd`` pools, else 4)
  colocated behind a least-outstanding router, against static prefill:decode
  ratios (1:N-1, N/2:N/2, N-1:1) and the dynamic ratio controller starting
  from N/2:N/2 (the spec's ``pd.dynamic`` settings, else the defaults), which
  moves instances between the pools as the mix of work changes.

Metrics per variant (seconds): mean and p99 of E2E and TTFT over completed
requests, jitter (standard deviation of per-request TPOT), failure rate,
preemptions, completed requests per second.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl

from burstlab.core.errors import InputError
from burstlab.results.metrics import percentile, timing_table
from burstlab.sim.cluster import ClusterConfig
from burstlab.sim.engine import OK, SimResult
from burstlab.sim.pd import PDConfig, RatioConfig
from burstlab.sim.spec import EngineSpec

Study = Literal["scheduling", "kv", "pd"]
STUDIES: tuple[str, ...] = ("scheduling", "kv", "pd")
KV_FRACTIONS = (0.1, 0.25, 0.5, 1.0, 2.0)
#: The failure limits of the ``kv`` study when the spec sets none, in seconds: a
#: request with no token 60 s after its arrival fails (``queue_timeout_s``: the
#: default read timeout of an nginx proxy, ``proxy_read_timeout``, in front of a
#: streaming server that sends no body byte before the first token), and the
#: client gives up on any request not complete 600 s after it (``client_timeout_s``:
#: the OpenAI Python client's default request timeout). No preemption limit: vLLM
#: re-queues a preempted request however often; the time that costs is what the
#: client timeout turns into failures.
KV_LIMITS: dict[str, float] = {"queue_timeout_s": 60.0, "client_timeout_s": 600.0}
FAILURE_FIELDS = ("queue_cap", "queue_timeout_s", "client_timeout_s", "max_preemptions")


def variants(study: str, spec: EngineSpec) -> list[tuple[str, EngineSpec]]:
    """The labelled engine specs a study compares."""
    if study == "scheduling":
        return [
            (name, spec.model_copy(update={"engine": {**spec.engine, "scheduler": name}}))
            for name in ("fcfs", "srf", "lrf")
        ]
    if study == "pd":
        total = spec.pd.prefill + spec.pd.decode if spec.pd is not None else 4
        link = spec.pd or PDConfig()
        out = [
            (
                f"colocated x{total}",
                spec.model_copy(
                    update={
                        "pd": None,
                        "cluster": ClusterConfig(replicas=total, router="least_outstanding"),
                    }
                ),
            )
        ]
        for p in sorted({1, total // 2, total - 1}):
            if 0 < p < total:
                pools = link.model_copy(update={"prefill": p, "decode": total - p, "dynamic": None})
                out.append((f"PD {p}:{total - p}", spec.model_copy(update={"pd": pools})))
        if total >= 2:
            half = max(1, total // 2)
            pools = link.model_copy(
                update={
                    "prefill": half,
                    "decode": total - half,
                    "dynamic": link.dynamic or RatioConfig(),
                }
            )
            label = f"PD dynamic (from {half}:{total - half})"
            out.append((label, spec.model_copy(update={"pd": pools})))
        return out
    if study == "kv":
        base = spec.config().num_blocks
        limits = {} if any(k in spec.engine for k in FAILURE_FIELDS) else KV_LIMITS
        out = []
        for f in KV_FRACTIONS:
            blocks = max(1, round(base * f))
            engine = {**limits, **spec.engine, "num_blocks": blocks}
            out.append((f"{blocks} blocks (x{f:g})", spec.model_copy(update={"engine": engine})))
        return out
    raise InputError(f"unknown experiment {study!r}; known: {', '.join(STUDIES)}")


def metrics(result: SimResult, arrival: np.ndarray, output_tokens: np.ndarray) -> dict[str, float]:
    """The study's metrics of one simulated run."""
    ok = result.outcome == OK
    table = timing_table(arrival, result.first, result.end, ok, output_tokens)
    served = table.filter(pl.col("outcome") == "ok")
    span = float(np.nanmax(result.end) - arrival.min()) if arrival.size else 0.0

    def stat(name: str, p: float | None = None) -> float:
        value = percentile(served[name], p) if p is not None else served[name].mean()
        return float("nan") if value is None else float(value)  # type: ignore[arg-type]

    tpot = served["tpot_s"].drop_nulls()
    return {
        "e2e_mean_s": stat("e2e_s"),
        "e2e_p99_s": stat("e2e_s", 99),
        "ttft_mean_s": stat("ttft_s"),
        "ttft_p99_s": stat("ttft_s", 99),
        "jitter_s": float(tpot.std(ddof=0)) if tpot.len() else float("nan"),  # type: ignore[arg-type]
        "failure_rate": float(1 - ok.mean()) if ok.size else float("nan"),
        "preemptions": float(result.preemptions.sum()),
        "completed_per_s": float(ok.sum() / span) if span > 0 else float("nan"),
    }


def run_study(study: str, workload: pl.DataFrame, spec: EngineSpec) -> pl.DataFrame:
    """One row per variant: its label, the setting, and :func:`metrics`."""
    table = workload.sort("arrival_s", maintain_order=True)
    arrival = table["arrival_s"].to_numpy()
    inputs = table["input_tokens"].to_numpy()
    outputs = table["output_tokens"].to_numpy()
    rows: list[dict[str, Any]] = []
    for label, variant in variants(study, spec):
        engine = variant.build()
        result = engine.run(arrival, inputs, outputs)
        rows.append({"variant": label, **metrics(result, arrival, outputs)})
    return pl.DataFrame(rows)
