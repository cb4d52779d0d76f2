"""A simulation's columnar results: the stored table, its result-table view, RunDir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from burstlab.core.errors import InputError
from burstlab.results.metrics import METRICS
from burstlab.results.records import RESULT_SCHEMA, load_records
from burstlab.results.requests import (
    STORED,
    Fate,
    has_token_times,
    requests_table,
    result_table,
    token_column,
)
from burstlab.results.rundir import RunDir
from support.frames import workload

FATES = {0: Fate("ok", http_status=200), 1: Fate("failed", "http_429", "queue_full", 429, "full")}


def _stored(token_times: bool) -> pl.DataFrame:
    table = workload([0.0, 0.5, 1.0, 1.5], input_tokens=10, output_tokens=3)
    nan = np.nan
    lists = (np.array([0, 3, 3, 5, 8]), np.array([0.1, 0.2, 0.4, 1.2, 1.3, 1.6, 1.7, 2.0]))
    return requests_table(
        table,
        FATES,
        np.array([0, 1, 0, 0]),
        first_s=np.array([0.1, nan, 1.2, 1.6]),
        end_s=np.array([0.4, 0.5, 1.3, 2.0]),
        admitted_s=np.array([0.05, nan, 1.1, 1.5]),
        preemptions=np.array([0, 0, 1, 0]),
        tokens=np.array([3, 0, 2, 3]),
        max_gap_s=np.array([0.2, nan, 0.1, 0.3]),
        token_lists=lists if token_times else None,
    )


def test_the_stored_table_has_one_row_per_request_with_its_metrics() -> None:
    stored = _stored(token_times=True)
    assert list(stored.columns) == [*STORED, "token_s"]
    assert stored["request_id"].to_list() == [0, 1, 2, 3]
    assert stored["outcome"].cast(pl.String).to_list() == ["ok", "failed", "ok", "ok"]
    assert stored["error_kind"].cast(pl.String).to_list() == [None, "http_429", None, None]
    assert stored["http_status"].to_list() == [200, 429, 200, 200]
    assert stored["failed"].to_list() == [False, True, False, False]
    assert stored["ttft_s"].to_list() == pytest.approx([0.1, None, 0.2, 0.1], nan_ok=True)
    assert stored["e2e_s"][0] == pytest.approx(0.4)
    assert stored["tpot_s"][2] == pytest.approx(0.1)  # (1.3 - 1.2) / (2 - 1)
    assert stored["queue_s"].to_list() == pytest.approx([0.05, None, 0.1, 0.0])
    assert stored["output_tokens_achieved"].to_list() == [3, None, 2, 3]
    assert stored["input_tokens_achieved"].to_list() == [10, None, 10, 10]
    assert stored["token_s"].to_list() == [[0.1, 0.2, 0.4], [], [1.2, 1.3], [1.6, 1.7, 2.0]]
    assert "token_s" not in _stored(token_times=False).columns


def test_the_result_table_reads_like_records() -> None:
    table = result_table(_stored(token_times=True))
    for name, dtype in RESULT_SCHEMA.items():
        assert name in table.columns
        if name not in STORED:  # the simulated client's columns take the records' types
            assert table.schema[name] == dtype, name
    assert {m.name for m in METRICS} <= set(table.columns)
    assert (table["sent_s"] == table["arrival_s"]).all()
    assert (table["schedule_lag_s"] == 0).all()
    assert table["itl_s"][0].to_list() == pytest.approx([0.1, 0.2])
    assert table["chunk_tokens"][3].to_list() == [1, 1, 1]
    lean = result_table(_stored(token_times=False))
    assert lean["itl_s"].drop_nulls().len() == 0


def test_token_column_keeps_empty_requests_in_place() -> None:
    column = token_column(np.array([0, 0, 2, 2, 3]), np.array([1.0, 2.0, 3.0]), 4)
    assert column.to_list() == [[], [1.0, 2.0], [], [3.0]]
    assert column.dtype == pl.List(pl.Float64)


def test_a_simulation_run_dir_holds_a_requests_table(tmp_path: Path) -> None:
    with RunDir.create(tmp_path / "run", records=False) as run:
        assert not run.records_path.exists()  # no empty records.jsonl beside the table
        assert run.results_file() is None
        run.write_requests(_stored(token_times=True))
    run = RunDir(tmp_path / "run")
    assert run.results_file() == tmp_path / "run" / "requests.parquet"
    assert has_token_times(tmp_path / "run" / "requests.parquet")
    records = run.records()
    assert records is not None
    assert records.height == 4
    lean = run.records(token_times=False)
    assert lean is not None
    assert "token_s" not in lean.columns
    assert lean.drop("chunk_s", "chunk_tokens", "itl_s").equals(
        records.drop("token_s", "chunk_s", "chunk_tokens", "itl_s")
    )
    assert load_records(tmp_path / "run").equals(records)
    schedule = run.schedule()
    assert schedule is not None
    assert schedule["arrival_s"].to_list() == [0.0, 0.5, 1.0, 1.5]
    with pytest.raises(InputError, match="refusing to overwrite"):
        RunDir.create(tmp_path / "run", records=False)
