"""Trace-reading options shared by every command that takes a trace.

Each option is an ``Annotated`` alias so later commands (analyze, generate,
...) declare the same flags with the same help by naming them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast, get_args

import typer

if TYPE_CHECKING:
    import polars as pl

    from burstlab.trace.load_report import LoadReport

FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help="Trace format: burstgpt, azure, mooncake, burstlab or generic "
        "(default: detected from the header).",
    ),
]
MapOpt = Annotated[
    str | None,
    typer.Option(
        "--map",
        help="Column mapping for a generic file: "
        "arrival=COL,input_tokens=COL,output_tokens=COL[,model=COL,...].",
    ),
]
TimeUnitOpt = Annotated[
    str,
    typer.Option(
        "--time-unit", help="Unit of the mapped arrival column: s, ms, us, ns or datetime."
    ),
]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Timestamps going backwards are an error, not sorted.")
]
LenientOpt = Annotated[
    bool, typer.Option("--lenient", help="Drop bad rows (counted by reason) instead of failing.")
]
DropFailedOpt = Annotated[
    bool, typer.Option("--drop-failed", help="Drop requests the source marks as failed.")
]
CacheOpt = Annotated[
    bool, typer.Option("--cache", help="Keep a Parquet copy so the next read is near-instant.")
]


def load(
    path: str,
    *,
    format: str | None = None,
    map: str | None = None,
    time_unit: str = "s",
    strict: bool = False,
    lenient: bool = False,
    drop_failed: bool = False,
    cache: bool = False,
) -> tuple[pl.DataFrame, LoadReport]:
    """Read ``path`` with the CLI's options; returns ``(table, report)``."""
    from burstlab.core.errors import InputError
    from burstlab.trace.formats import TimeUnit, parse_mapping
    from burstlab.trace.readers import read_trace

    if time_unit not in get_args(TimeUnit):
        raise InputError(f"--time-unit {time_unit!r} is not one of {', '.join(get_args(TimeUnit))}")
    mapping = parse_mapping(map, time_unit=cast("TimeUnit", time_unit)) if map else None
    return read_trace(
        path,
        format=format,
        mapping=mapping,
        strict=strict,
        lenient=lenient,
        drop_failed=drop_failed,
        cache=cache,
    )
