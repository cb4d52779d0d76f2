"""The canonical schema, its validator, and Parquet/CSV/JSONL round trips."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from burstlab import InputError, SchemaError, read_table, read_trace, validate, write_table
from burstlab.trace.schema import COLUMNS, REQUIRED_COLUMNS, conform, describe, empty_table


def test_empty_table_is_valid() -> None:
    validate(empty_table())
    validate(empty_table(with_hash_ids=True))
    assert tuple(empty_table().columns) == REQUIRED_COLUMNS


def test_validator_lists_problems() -> None:
    bad = empty_table().drop("failed")
    with pytest.raises(SchemaError, match="missing column 'failed'"):
        validate(bad)
    table = read_trace("sample")[0].head(5)
    with pytest.raises(SchemaError, match="arrival_s decreasing: 1 rows"):
        validate(table.with_columns(pl.Series("arrival_s", [0.0, 2.0, 1.0, 3.0, 4.0])))
    with pytest.raises(SchemaError, match="negative token count"):
        validate(table.with_columns(pl.lit(-1, dtype=pl.Int32).alias("input_tokens")))
    with pytest.raises(SchemaError, match="dtype"):
        validate(table.with_columns(pl.col("input_tokens").cast(pl.Int64)))


def test_conform_orders_and_casts() -> None:
    table = read_trace("sample")[0].head(3)
    shuffled = table.select(reversed(table.columns)).with_columns(
        pl.col("input_tokens").cast(pl.Int64), extra=pl.lit(1)
    )
    out = conform(shuffled).collect()
    assert out.columns == [*table.columns, "extra"]
    validate(out.drop("extra"))


def test_describe_mentions_every_column() -> None:
    text = describe()
    assert all(c.name in text for c in COLUMNS)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_round_trip(tmp_path: Path, data_dir: Path, suffix: str) -> None:
    for source in (data_dir / "burstgpt_v3.csv", data_dir / "mooncake_head.jsonl"):
        table, _ = read_trace(source)
        path = write_table(table, tmp_path / f"t{suffix}")
        back, report = read_table(path)
        assert report.format == "burstlab"
        assert back.equals(table), (source, suffix)


def test_round_trip_keeps_offset_start(tmp_path: Path) -> None:
    table = read_trace("sample")[0].head(4).with_columns(pl.col("arrival_s") + 5.0)
    back, _ = read_table(write_table(table, tmp_path / "w.csv"))
    assert back["arrival_s"][0] == 5.0


def test_write_refuses_bad_extension_and_bad_table(tmp_path: Path) -> None:
    table = read_trace("sample")[0].head(2)
    with pytest.raises(InputError, match="extension"):
        write_table(table, tmp_path / "t.xlsx")
    with pytest.raises(SchemaError):
        write_table(table.drop("model"), tmp_path / "t.csv")
    assert not list(tmp_path.iterdir())
