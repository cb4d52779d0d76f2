"""The canonical request table: one schema for traces, workloads and results.

A request table is a :class:`polars.DataFrame` with the columns below, in this
order. A trace read from disk, a generated workload and a benchmark result are
all the same table; later stages add measured columns after these. Times are
seconds (float64) from the start of the table; token counts are int32.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

#: Bumped whenever the meaning or dtype of a canonical column changes; part of
#: the Parquet cache key so stale caches are never read.
SCHEMA_VERSION = 1

LOG_TYPES = ("conversation", "api")
LogTypeDtype = pl.Enum(list(LOG_TYPES))


@dataclass(frozen=True, slots=True)
class Column:
    """One canonical column: its name, polars dtype, whether it may hold nulls,
    whether every table must have it, and what it means (with units)."""

    name: str
    dtype: pl.DataType
    nullable: bool
    required: bool
    doc: str


COLUMNS: tuple[Column, ...] = (
    Column(
        "arrival_s",
        pl.Float64(),
        False,
        True,
        "Seconds from the start of the table; the intended send time in a workload.",
    ),
    Column(
        "model",
        pl.Categorical(),
        True,
        True,
        "Model name as the source spells it (e.g. ChatGPT, GPT-4); null when unknown.",
    ),
    Column(
        "log_type",
        LogTypeDtype,
        True,
        True,
        "'conversation' or 'api' (BurstGPT 'Log Type'); null when the source does not say.",
    ),
    Column(
        "session_id",
        pl.String(),
        True,
        True,
        "Conversation id (BurstGPT v3 'Session ID'); null outside conversations.",
    ),
    Column(
        "turn",
        pl.Int32(),
        True,
        True,
        "0-based turn inside the session, numbered by arrival; null without a session.",
    ),
    Column("input_tokens", pl.Int32(), False, True, "Request (prompt) tokens."),
    Column(
        "output_tokens",
        pl.Int32(),
        False,
        True,
        "Response tokens; 0 marks a failed request in BurstGPT.",
    ),
    Column("failed", pl.Boolean(), False, True, "The source recorded this request as failed."),
    Column(
        "elapsed_s",
        pl.Float64(),
        True,
        True,
        "The source system's own end-to-end time in seconds (BurstGPT v3); never ours.",
    ),
    Column(
        "hash_ids",
        pl.List(pl.Int64()),
        True,
        False,
        "Prefix-block ids (Mooncake traces, generated conversations); optional column.",
    ),
)

COLUMN_BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.required)
SCHEMA: dict[str, pl.DataType] = {c.name: c.dtype for c in COLUMNS}


class SchemaError(ValueError):
    """A DataFrame does not follow the canonical schema; the message lists every problem."""


def empty_table(*, with_hash_ids: bool = False) -> pl.DataFrame:
    """A canonical table with no rows (useful as a neutral element and in tests)."""
    cols = [c for c in COLUMNS if c.required or with_hash_ids]
    return pl.DataFrame(schema={c.name: c.dtype for c in cols})


def conform(df: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Cast canonical columns to their dtypes and put them first, in order.

    Missing optional columns stay missing; extra (result) columns are kept
    after the canonical ones. Casting is strict: a value that does not fit is
    an error, never a silent null.
    """
    lf = df.lazy()
    names = lf.collect_schema().names()
    canon = [c for c in COLUMNS if c.name in names]
    extra = [n for n in names if n not in COLUMN_BY_NAME]
    return lf.select(
        [pl.col(c.name).cast(c.dtype, strict=True) for c in canon] + [pl.col(n) for n in extra]
    )


def validate(df: pl.DataFrame) -> None:
    """Check that ``df`` is a canonical request table; raise :class:`SchemaError` if not.

    Checks, all vectorised: required columns present with the right dtypes;
    no nulls where none are allowed; finite, non-negative, non-decreasing
    ``arrival_s``; non-negative token counts; ``turn`` set exactly where
    ``session_id`` is.
    """
    problems: list[str] = []
    schema = df.schema
    for c in COLUMNS:
        if c.name not in schema:
            if c.required:
                problems.append(f"missing column {c.name!r}")
            continue
        if schema[c.name] != c.dtype:
            problems.append(f"column {c.name!r} has dtype {schema[c.name]}, expected {c.dtype}")
    if problems:
        raise SchemaError("; ".join(problems))

    checks = {
        "null in a non-nullable column": pl.any_horizontal(
            [pl.col(c.name).is_null() for c in COLUMNS if not c.nullable and c.name in schema]
        ),
        "arrival_s not finite": ~pl.col("arrival_s").is_finite(),
        "arrival_s negative": pl.col("arrival_s") < 0,
        "arrival_s decreasing": pl.col("arrival_s").diff() < 0,
        "negative token count": (pl.col("input_tokens") < 0) | (pl.col("output_tokens") < 0),
        "turn set without session_id or missing with one": pl.col("turn").is_null()
        != pl.col("session_id").is_null(),
    }
    counts = df.select(
        [expr.fill_null(False).sum().alias(name) for name, expr in checks.items()]
    ).row(0)
    for (name, _), n in zip(checks.items(), counts, strict=True):
        if n:
            problems.append(f"{name}: {n} rows")
    if problems:
        raise SchemaError("; ".join(problems))


def describe() -> str:
    """The schema as a plain-text table (used by ``burstlab trace schema`` and docs)."""
    width = max(len(c.name) for c in COLUMNS)
    lines = []
    for c in COLUMNS:
        flags = ("" if c.required else "optional, ") + ("nullable" if c.nullable else "not null")
        lines.append(f"{c.name:<{width}}  {c.dtype!s:<14} {flags:<20} {c.doc}")
    return "\n".join(lines)
