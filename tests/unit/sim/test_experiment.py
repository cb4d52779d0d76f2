"""The paper's demos: scheduling and KV-capacity studies on one workload."""

from __future__ import annotations

import numpy as np
import pytest

from burstlab.core.errors import InputError
from burstlab.report.experiment import experiment_png
from burstlab.sim.experiment import KV_FRACTIONS, KV_LIMITS, run_study, variants
from burstlab.sim.spec import EngineSpec
from support.frames import workload


def mixed(n: int, rate: float, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    table = workload(np.sort(rng.uniform(0, n / rate, n)).tolist())
    import polars as pl

    return table.with_columns(
        pl.Series("input_tokens", rng.integers(50, 3000, n), dtype=pl.Int32),
        pl.Series("output_tokens", rng.integers(5, 600, n), dtype=pl.Int32),
    )


@pytest.mark.slow
def test_scheduling_study_ranks_the_policies() -> None:
    spec = EngineSpec(engine={"key": "total"})
    result = run_study("scheduling", mixed(1500, 12.0), spec)
    rows = {r["variant"]: r for r in result.iter_rows(named=True)}
    assert set(rows) == {"fcfs", "srf", "lrf"}
    assert rows["srf"]["e2e_mean_s"] < rows["fcfs"]["e2e_mean_s"] < rows["lrf"]["e2e_mean_s"]
    png = experiment_png(result, "scheduling")
    assert png.startswith(b"\x89PNG")


def test_kv_study_preempts_less_with_more_blocks() -> None:
    # a failure limit written (even as null) replaces the study's: nothing fails here
    spec = EngineSpec(engine={"client_timeout_s": None})
    result = run_study("kv", mixed(600, 3.0, seed=2), spec)
    assert (result["failure_rate"] == 0).all()
    preemptions = result["preemptions"].to_list()
    assert result.height == 5
    # a tenth of the cache preempts most; twice the derived size not at all
    assert preemptions[0] == max(preemptions) > 0
    assert preemptions[-1] == 0


def bursty(n: int, rate: float, seed: int):  # type: ignore[no-untyped-def]
    """Gamma(0.2) gaps at ``rate`` req/s: bursts of many requests within seconds."""
    import polars as pl

    rng = np.random.default_rng(seed)
    table = workload(np.cumsum(rng.gamma(0.2, 1 / (0.2 * rate), n)).tolist())
    return table.with_columns(
        pl.Series("input_tokens", rng.integers(50, 3000, n), dtype=pl.Int32),
        pl.Series("output_tokens", rng.integers(5, 600, n), dtype=pl.Int32),
    )


def test_kv_study_fails_more_as_the_cache_shrinks_under_bursts() -> None:
    # The study's own limits: failures come from the 60 s wait for a first token
    # (and, with an engine that models it, the 600 s client timeout).
    result = run_study("kv", bursty(400, 4.0, seed=1), EngineSpec())
    failed = result["failure_rate"].to_list()
    assert len(failed) == len(KV_FRACTIONS)
    assert (np.diff(failed) <= 0).all()
    assert failed[0] > failed[KV_FRACTIONS.index(1.0)]
    assert failed[0] > 0.2


def test_kv_study_limits_apply_only_when_the_spec_sets_none() -> None:
    for _, spec in variants("kv", EngineSpec()):
        cfg = spec.config()
        assert (cfg.queue_timeout_s, cfg.client_timeout_s) == (
            KV_LIMITS["queue_timeout_s"],
            KV_LIMITS["client_timeout_s"],
        )
        assert cfg.max_preemptions is None
    for _, spec in variants("kv", EngineSpec(engine={"max_preemptions": 3})):
        cfg = spec.config()
        assert (cfg.queue_timeout_s, cfg.client_timeout_s, cfg.max_preemptions) == (None, None, 3)


def test_unknown_study_is_named() -> None:
    with pytest.raises(InputError, match="unknown experiment 'speed'"):
        variants("speed", EngineSpec())


def test_pd_study_compares_static_ratios_the_controller_and_colocation() -> None:
    result = run_study("pd", mixed(400, 8.0, seed=4), EngineSpec())
    assert result["variant"].to_list() == [
        "colocated x4",
        "PD 1:3",
        "PD 2:2",
        "PD 3:1",
        "PD dynamic (from 2:2)",
    ]
    assert (result["failure_rate"] == 0).all()
