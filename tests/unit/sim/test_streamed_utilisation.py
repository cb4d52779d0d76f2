"""Utilisation streamed from a telemetry table in chunks equals the in-memory one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from burstlab.results.telemetry import TelemetryWriter
from burstlab.sim.engine import Engine, EngineConfig
from burstlab.sim.engine.result import LOAD_COLUMNS, TELEMETRY_COLUMNS
from burstlab.sim.spec import EngineSpec
from burstlab.sim.utilisation import streamed_utilisation, utilisation
from support.sim import LinearCost, workload

COUNTS = frozenset({"iterations", "batch", "prefill_tokens", "running", "waiting", "kv_blocks"})


@pytest.mark.parametrize("linear", [False, True])
def test_streamed_utilisation_is_the_in_memory_one(tmp_path: Path, linear: bool) -> None:
    engine = EngineSpec().build()
    if linear:
        engine = Engine(EngineConfig(num_blocks=400), LinearCost())
    assert isinstance(engine, Engine)
    arrivals, prompts, outputs = workload(800, 3.0, seed=5)
    result = engine.run(arrivals, prompts, outputs)
    expected = utilisation(result, engine.cost, max_bins=50)
    assert expected is not None
    writer = TelemetryWriter(
        tmp_path / "telemetry.parquet", (*TELEMETRY_COLUMNS, *LOAD_COLUMNS), COUNTS, part_rows=97
    )
    rows = np.hstack([result.telemetry, result.load])
    for lo in range(0, rows.shape[0], 61):
        writer(rows[lo : lo + 61])
    writer.close()
    assert not (tmp_path / ".telemetry.parquet.parts").exists()
    table = pl.read_parquet(tmp_path / "telemetry.parquet")
    assert table.height == rows.shape[0]
    assert np.array_equal(table.select(TELEMETRY_COLUMNS).to_numpy(), result.telemetry)
    assert table.schema["batch"] == pl.Int32
    got = streamed_utilisation(
        pl.scan_parquet(tmp_path / "telemetry.parquet"), engine.cost, max_bins=50, chunk_rows=113
    )
    assert got is not None
    assert got.basis == expected.basis == ("busy_only" if linear else "roofline")
    assert (got.bin_s, got.bins_from_s, got.start_s, got.end_s) == (
        expected.bin_s,
        expected.bins_from_s,
        expected.start_s,
        expected.end_s,
    )
    np.testing.assert_allclose(got.busy, expected.busy, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.busy_s, expected.busy_s, rtol=1e-12)
    for name in ("mfu", "mbu", "flops", "bytes"):
        a, b = getattr(got, name), getattr(expected, name)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert got.stats().model_dump().keys() == expected.stats().model_dump().keys()


def test_an_empty_telemetry_has_no_utilisation(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path / "t.parquet", (*TELEMETRY_COLUMNS, *LOAD_COLUMNS))
    writer.close()
    table = pl.scan_parquet(tmp_path / "t.parquet")
    assert streamed_utilisation(table, LinearCost()) is None  # type: ignore[arg-type]
