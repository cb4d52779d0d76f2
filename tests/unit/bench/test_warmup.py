"""The warm-up's requests: shaped like the workload's first, single requests at once,
with prompts no measured request has."""

from __future__ import annotations

import polars as pl
import pytest

from burstlab.bench.config import BenchConfig
from burstlab.bench.warmup import ShiftedKeys, warmup_table
from burstlab.bench.workers import _settings
from support.frames import workload


def test_the_first_requests_by_arrival_cycled_without_sessions() -> None:
    table = workload([2.0, 0.0, 1.0], sessions=["a", None, "a"]).with_columns(
        pl.Series("input_tokens", [30, 10, 20], dtype=pl.Int32)
    )
    warm = warmup_table(table, 5)
    assert warm["input_tokens"].to_list() == [10, 20, 30, 10, 20]
    assert warm["arrival_s"].to_list() == [0.0] * 5
    assert warm["session_id"].null_count() == 5
    assert warm["turn"].null_count() == 5


@pytest.mark.parametrize("mode", ["text", "ids"])
def test_warmup_prompts_are_not_the_runs(mode: str) -> None:
    config = BenchConfig(url="http://127.0.0.1:9", model="m", seed=3, prompt=mode)
    run = _settings(config, "r", {}).synth
    warm = ShiftedKeys(_settings(config, "r-warmup", {}).synth, 8)
    run_prompts = {str(run.build(64, key=i)) for i in range(8)}
    warm_prompts = {str(warm.build(64, key=i)) for i in range(8)}
    assert len(warm_prompts) == 8
    assert not run_prompts & warm_prompts
    assert str(warm.build(64, key=0)) == str(run.build(64, key=8))  # keys past the run's
