"""Write and read canonical request tables as Parquet, CSV or JSON Lines.

The format follows the file extension. Writes are atomic (a temporary file in
the same directory, fsynced, then renamed), so a crash never leaves a half
table under the final name. CSV has no list type: ``hash_ids`` is written as a
JSON array in one field (``"[1,2,3]"``) and decoded on read.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from burstlab.core.errors import InputError
from burstlab.core.files import atomic_file
from burstlab.trace import schema
from burstlab.trace.load_report import LoadReport
from burstlab.trace.readers import read_trace

TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl")


def table_suffix(path: str | Path) -> str:
    """The table format a path asks for, from its extension; an error for any other."""
    suffix = Path(path).suffix.lower()
    if suffix == ".ndjson":
        return ".jsonl"
    if suffix not in TABLE_SUFFIXES:
        raise InputError(
            f"cannot tell the output format from the extension {suffix or '(none)'!r}",
            path=path,
            hint=f"use one of {', '.join(TABLE_SUFFIXES)}",
        )
    return suffix


def write_table(table: pl.DataFrame, path: str | Path) -> Path:
    """Write a canonical table to ``path`` atomically; the extension picks the format.

    The table is validated first, so only canonical tables reach disk.
    """
    schema.validate(table)
    target = Path(path)
    suffix = table_suffix(target)
    with atomic_file(target) as fh:
        if suffix == ".parquet":
            table.write_parquet(fh)
        elif suffix == ".jsonl":
            table.write_ndjson(fh)
        else:
            _csv_ready(table).write_csv(fh)
    return target


def _csv_ready(table: pl.DataFrame) -> pl.DataFrame:
    if "hash_ids" not in table.columns:
        return table
    encoded = pl.format("[{}]", pl.col("hash_ids").cast(pl.List(pl.String())).list.join(","))
    return table.with_columns(
        pl.when(pl.col("hash_ids").is_null()).then(None).otherwise(encoded).alias("hash_ids")
    )


def read_table(path: str | Path, *, cache: bool = False) -> tuple[pl.DataFrame, LoadReport]:
    """Read a table that burstlab wrote (any of the three formats)."""
    return read_trace(path, format="burstlab", cache=cache)
