"""The trace-reading options (--format, --map, ...) every command that reads a trace shares.

Each option is declared once, as a field of :class:`TraceOptions`. A command
takes one ``TraceOptions`` parameter and is decorated with
:func:`trace_options`, which shows typer the chosen options in that
parameter's place and hands the command their values as one object::

    @trace_options()
    def info(trace: str, reading: TraceOptions = TraceOptions()) -> None:
        table, report = reading.load(trace)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_args, get_type_hints

import typer

from burstlab.cli.choices import TimeUnit, TraceFormat

if TYPE_CHECKING:
    import polars as pl

    from burstlab.trace.load_report import LoadReport

__all__ = ["TraceOption", "TraceOptions", "trace_options"]

R = TypeVar("R")

TraceOption = Literal["format", "map", "time_unit", "sort", "lenient", "drop_failed", "cache"]
"""The name of one field of :class:`TraceOptions` (one command-line option)."""


_HELP = {
    "format": "Trace format: burstgpt, azure, mooncake, burstlab, records or generic "
    "(default: detected from the header).",
    "map": "Column mapping for a generic file: "
    "arrival=COL,input_tokens=COL,output_tokens=COL[,model=COL,...].",
    "time_unit": "Unit of the mapped arrival column: s, ms, us, ns or datetime.",
    "sort": "Accept timestamps that go backwards: sort the rows stably by time "
    "(the count is reported). Without it they are an error naming the line.",
    "lenient": "Drop bad rows (counted by reason) instead of failing.",
    "drop_failed": "Drop requests the source marks as failed.",
    "cache": "Keep a Parquet copy so the next read is near-instant.",
}


@dataclass(frozen=True, slots=True)
class TraceOptions:
    """How to read a trace, as given on the command line; ``load`` reads one with it.

    Each field is one option: its flags here, its help in ``_HELP``.
    """

    format: Annotated[TraceFormat | None, typer.Option("--format", "-f", help=_HELP["format"])] = (
        None
    )
    map: Annotated[str | None, typer.Option("--map", help=_HELP["map"])] = None
    time_unit: Annotated[TimeUnit, typer.Option("--time-unit", help=_HELP["time_unit"])] = "s"
    sort: Annotated[bool, typer.Option("--sort", help=_HELP["sort"])] = False
    lenient: Annotated[bool, typer.Option("--lenient", help=_HELP["lenient"])] = False
    drop_failed: Annotated[bool, typer.Option("--drop-failed", help=_HELP["drop_failed"])] = False
    cache: Annotated[bool, typer.Option("--cache", help=_HELP["cache"])] = False

    def load(self, path: str) -> tuple[pl.DataFrame, LoadReport]:
        """Read ``path`` (a file or ``"sample"``); returns ``(table, report)``."""
        from burstlab.core.errors import InputError
        from burstlab.trace.formats import parse_mapping
        from burstlab.trace.readers import read_trace

        units = get_args(TimeUnit)  # checked again: a TraceOptions made in Python
        if self.time_unit not in units:
            raise InputError(f"--time-unit {self.time_unit!r} is not one of {', '.join(units)}")
        mapping = None
        if self.map:
            mapping = parse_mapping(self.map, time_unit=self.time_unit)
        return read_trace(
            path,
            format=self.format,
            mapping=mapping,
            sort=self.sort,
            lenient=self.lenient,
            drop_failed=self.drop_failed,
            cache=self.cache,
        )


def trace_options(*names: TraceOption) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Give a typer command the trace options ``names`` (default: all of them).

    The command declares one parameter of type :class:`TraceOptions` (with a
    default, usually ``TraceOptions()``); typer sees the chosen options in its
    place, with the help, flags and defaults declared on the fields, and the
    command receives them as one ``TraceOptions``. Options not chosen keep
    their defaults. The options appear in the order of the fields.
    """
    unknown = sorted(set(names) - set(get_args(TraceOption)))
    if unknown:
        raise TypeError(f"unknown trace options {unknown}; known: {get_args(TraceOption)}")
    chosen = [name for name in get_args(TraceOption) if not names or name in names]
    declared = get_type_hints(TraceOptions, include_extras=True)
    defaults = {f.name: f.default for f in fields(TraceOptions)}

    def decorate(command: Callable[..., R]) -> Callable[..., R]:
        signature = inspect.signature(command, eval_str=True)
        slots = [p for p in signature.parameters.values() if p.annotation is TraceOptions]
        if len(slots) != 1:
            raise TypeError(f"{command.__name__} needs one parameter annotated TraceOptions")
        slot = slots[0]
        clash = sorted(set(chosen) & set(signature.parameters))
        if clash:
            raise TypeError(f"{command.__name__} already has parameters named {clash}")
        options = [
            inspect.Parameter(name, slot.kind, default=defaults[name], annotation=declared[name])
            for name in chosen
        ]
        params: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            params.extend(options if p is slot else [p])

        @functools.wraps(command)
        def run(*args: object, **kwargs: object) -> R:
            given: dict[str, Any] = {name: kwargs.pop(name) for name in chosen if name in kwargs}
            kwargs[slot.name] = TraceOptions(**given)
            return command(*args, **kwargs)

        run.__dict__["__signature__"] = signature.replace(parameters=params)
        run.__annotations__ = {p.name: p.annotation for p in params} | {
            "return": signature.return_annotation
        }
        return run

    return decorate
