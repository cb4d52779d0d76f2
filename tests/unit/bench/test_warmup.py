"""The warm-up's requests: shaped like the workload's first, single requests at once,
with prompts no measured request has."""

from __future__ import annotations

import polars as pl

from burstlab.bench.config import BenchConfig
from burstlab.bench.warmup import SEED_OFFSET, warmup_table
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


def test_warmup_prompts_are_not_the_runs() -> None:
    config = BenchConfig(url="http://127.0.0.1:9", model="m", seed=3, prompt="text")
    run = _settings(config, "r", {}).synth
    warm = _settings(config.model_copy(update={"seed": 3 + SEED_OFFSET}), "r-warmup", {}).synth
    run_prompts = {run.build(64, key=i).text for i in range(8)}
    warm_prompts = {warm.build(64, key=i).text for i in range(8)}
    assert len(warm_prompts) == 8
    assert not run_prompts & warm_prompts
