"""Calibration: a run simulated with a known cost model is fitted back well enough
that re-simulating with the fit reproduces its TTFT and TPOT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from burstlab.core.errors import InputError
from burstlab.results.records import load_records
from burstlab.sim.calibrate import batch_at, calibrate
from burstlab.sim.cost import Linear
from burstlab.sim.engine import Engine, EngineConfig
from burstlab.sim.simulate import simulate
from support.frames import workload

TRUE = Linear(c0=0.006, c_prefill=6e-5, c_attn=2e-9, c_decode=1e-4, c_ctx=3e-8)


def mixed(n: int, rate: float) -> pl.DataFrame:
    rng = np.random.default_rng(5)
    table = workload(np.sort(rng.uniform(0, n / rate, n)).tolist())
    return table.with_columns(
        pl.Series("input_tokens", rng.integers(100, 2000, n), dtype=pl.Int32),
        pl.Series("output_tokens", rng.integers(20, 300, n), dtype=pl.Int32),
    )


def medians(run: Path) -> tuple[float, float]:
    rec = load_records(run).filter(pl.col("outcome") == "ok")
    return float(rec["ttft_s"].median()), float(rec["tpot_s"].median())  # type: ignore[arg-type]


def test_refit_reproduces_ttft_and_tpot(tmp_path: Path) -> None:
    table = mixed(1500, 3.0)
    simulate(table, Engine(EngineConfig(), TRUE), tmp_path / "true")
    fitted, quality = calibrate(load_records(tmp_path / "true"))
    assert quality["samples"] > 2000
    simulate(table, Engine(EngineConfig(), fitted), tmp_path / "fit")
    (ttft_a, tpot_a), (ttft_b, tpot_b) = medians(tmp_path / "true"), medians(tmp_path / "fit")
    assert ttft_b == pytest.approx(ttft_a, rel=0.25)
    assert tpot_b == pytest.approx(tpot_a, rel=0.15)


def test_batch_estimate_counts_active_decodes() -> None:
    first = np.array([0.0, 1.0, 2.0])
    end = np.array([10.0, 3.0, 2.5])
    prompt = np.array([100.0, 10.0, 5.0])
    tpot = np.array([0.1, 0.5, 0.25])
    seqs, ctx = batch_at(np.array([0.5, 2.2, 5.0]), first, end, prompt, tpot)
    assert seqs.tolist() == [1, 3, 1]
    assert ctx[0] == pytest.approx(105.0)
    assert ctx[1] == pytest.approx((100 + 22) + (10 + 2.4) + (5 + 0.8))


def test_too_few_requests_is_an_error(tmp_path: Path) -> None:
    simulate(mixed(5, 1.0), Engine(EngineConfig(), TRUE), tmp_path / "run")
    with pytest.raises(InputError, match="at least"):
        calibrate(load_records(tmp_path / "run"))


def test_a_run_that_cannot_identify_the_coefficients_is_refused(tmp_path: Path) -> None:
    """Every prompt of one length: the prefill cost cannot be told from the fixed one."""
    table = mixed(300, 2.0).with_columns(pl.lit(500, dtype=pl.Int32).alias("input_tokens"))
    simulate(table, Engine(EngineConfig(), TRUE), tmp_path / "run")
    with pytest.raises(InputError, match=r"cannot identify the cost model: .*prefill tokens"):
        calibrate(load_records(tmp_path / "run"))


def test_the_servers_own_prompt_time_keeps_queueing_out_of_the_fit(tmp_path: Path) -> None:
    """Overloaded, every TTFT is mostly queueing; with the server's prompt time (as
    llama.cpp reports it) the fit still finds the prefill cost, without it not."""
    table = mixed(600, 12.0)
    cfg = EngineConfig(max_num_seqs=4, num_blocks=4, block_size=4096)
    simulate(table, Engine(cfg, TRUE), tmp_path / "run")
    records = load_records(tmp_path / "run").filter(pl.col("outcome") == "ok")
    # The engine's own prefill time: the TTFT the request would have had with no queue.
    alone = Engine(cfg, TRUE)
    one = [
        float(alone.run(np.zeros(1), np.array([p]), np.array([1])).first[0])
        for p in records["input_tokens"].to_list()
    ]
    with_server = records.with_columns(pl.Series("server_prompt_ms", np.array(one) * 1000))
    queued, _ = calibrate(records)
    served, _ = calibrate(with_server)
    assert served.c_prefill == pytest.approx(TRUE.c_prefill, rel=0.3)
    assert abs(queued.c_prefill - TRUE.c_prefill) > abs(served.c_prefill - TRUE.c_prefill)


def test_refining_by_simulating_the_run_fits_a_slotted_engine(tmp_path: Path) -> None:
    """A llama.cpp-like engine (4 slots, requests queue for them): least squares on
    request-level samples misses TTFT badly (it cannot see the queue); simulating the
    run itself finds coefficients that reproduce its requests."""
    cfg = EngineConfig(max_num_seqs=4, num_blocks=4, block_size=4096, max_model_len=4096)
    simulate(mixed(400, 4.0), Engine(cfg, TRUE), tmp_path / "run")
    refined, quality = calibrate(load_records(tmp_path / "run"), cfg)
    assert quality["ttft_median_rel_error"] > 0.5  # least squares alone
    assert quality["simulated_ttft_median_rel_error"] < 0.05
    assert quality["simulated_tpot_median_rel_error"] < 0.05
    assert refined.c_prefill == pytest.approx(TRUE.c_prefill, rel=0.2)
