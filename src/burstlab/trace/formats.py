"""Trace formats as column mappings, and detecting them from a header.

Every reader is the same mechanism: a :class:`ColumnMap` says which source
column feeds which canonical column and in what unit. BurstGPT, Azure,
Mooncake and burstlab's own files are presets; ``generic`` is a mapping the
user gives. Detection looks only at the header's column names.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from burstlab.core.errors import InputError

TimeUnit = Literal["s", "ms", "us", "ns", "datetime"]
SECONDS_PER_UNIT: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


class ColumnMap(BaseModel):
    """Which source column feeds each canonical column.

    ``arrival`` is a number in ``arrival_unit`` (any origin: the table is
    rebased to start at 0) or, with ``arrival_unit="datetime"``, a timestamp
    string such as ``2023-11-16 18:15:46.6805900``. ``elapsed`` is in
    ``elapsed_unit``. ``failed`` names a boolean (true/false or 1/0) column;
    without one, ``zero_output_failed`` marks rows with 0 output tokens as
    failed (the BurstGPT convention). ``zero_tokens_failed`` reads a row with
    zero request *and* zero response tokens as a failed request instead of a
    bad row: BurstGPT logs some failures so (e.g. ``BurstGPT_1.csv`` at
    Timestamp 1106, 4525, 4608 and 4725), and burstlab's own tables keep
    such rows so a converted BurstGPT trace reads back. Elsewhere a zero
    request is an error: a request that reached a model has at least one token.
    ``rebase`` shifts times so the first
    arrival is 0 (off for burstlab's own tables, whose times are already
    offsets from the start of the run). ``ordered`` says the source is written
    in arrival order, so a time going backwards is an error unless the reader
    is asked to sort; burstlab's records are not (they are written as requests
    end) and are sorted without one. ``optional`` lists mapped fields whose
    column may be absent from a file (e.g. BurstGPT v1 has no session ids).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    arrival: str
    input_tokens: str
    output_tokens: str
    arrival_unit: TimeUnit = "s"
    model: str | None = None
    log_type: str | None = None
    session_id: str | None = None
    turn: str | None = None
    failed: str | None = None
    elapsed: str | None = None
    elapsed_unit: Literal["s", "ms"] = "s"
    hash_ids: str | None = None
    zero_output_failed: bool = False
    zero_tokens_failed: bool = False
    rebase: bool = True
    ordered: bool = True
    optional: frozenset[str] = frozenset()

    @model_validator(mode="after")
    def _optional_names_fields(self) -> ColumnMap:
        unknown = self.optional - set(MAPPED_FIELDS)
        if unknown:
            raise ValueError(f"optional names unknown fields: {sorted(unknown)}")
        return self

    def source_columns(self) -> dict[str, str]:
        """Canonical field -> source column, for the fields this map sets."""
        return {f: c for f in MAPPED_FIELDS if (c := getattr(self, f)) is not None}

    def required_columns(self) -> list[str]:
        """Source columns that must be in the file."""
        return [c for f, c in self.source_columns().items() if f not in self.optional]


MAPPED_FIELDS = (
    "arrival",
    "input_tokens",
    "output_tokens",
    "model",
    "log_type",
    "session_id",
    "turn",
    "failed",
    "elapsed",
    "hash_ids",
)
#: Mapped fields whose source values are numbers (read as float64, then checked).
NUMERIC_FIELDS = ("input_tokens", "output_tokens", "turn", "elapsed")


@dataclass(frozen=True, slots=True)
class TraceFormat:
    """A named preset: its column map and a one-line description for ``--help``.

    ``marks`` are columns outside the map that tell this format from another
    with the same mapped columns (records from request tables): detection
    picks it only when they are all present.
    """

    name: str
    description: str
    columns: ColumnMap
    marks: frozenset[str] = frozenset()


#: burstlab's own tables: every canonical column under its own name.
_OWN = ColumnMap(
    arrival="arrival_s",
    input_tokens="input_tokens",
    output_tokens="output_tokens",
    model="model",
    log_type="log_type",
    session_id="session_id",
    turn="turn",
    failed="failed",
    elapsed="elapsed_s",
    hash_ids="hash_ids",
    zero_tokens_failed=True,
    rebase=False,
    optional=frozenset(
        {"model", "log_type", "session_id", "turn", "failed", "elapsed", "hash_ids"}
    ),
)

FORMATS: dict[str, TraceFormat] = {
    f.name: f
    for f in (
        TraceFormat(
            "burstgpt",
            "BurstGPT v1/v2 (6 columns) and v3 (adds 'Session ID', 'Elapsed time'); "
            "burstlab's exports may add 'Failed'",
            ColumnMap(
                arrival="Timestamp",
                input_tokens="Request tokens",
                output_tokens="Response tokens",
                model="Model",
                log_type="Log Type",
                session_id="Session ID",
                elapsed="Elapsed time",
                failed="Failed",
                zero_output_failed=True,
                zero_tokens_failed=True,
                optional=frozenset({"session_id", "elapsed", "failed"}),
            ),
        ),
        TraceFormat(
            "azure",
            "Azure LLM inference trace 2023/2024 (TIMESTAMP,ContextTokens,GeneratedTokens)",
            ColumnMap(
                arrival="TIMESTAMP",
                arrival_unit="datetime",
                input_tokens="ContextTokens",
                output_tokens="GeneratedTokens",
            ),
        ),
        TraceFormat(
            "mooncake",
            "Mooncake / AIPerf JSONL (timestamp ms, input_length, output_length, hash_ids; "
            "optional session_id, failed)",
            ColumnMap(
                arrival="timestamp",
                arrival_unit="ms",
                input_tokens="input_length",
                output_tokens="output_length",
                session_id="session_id",
                failed="failed",
                hash_ids="hash_ids",
                optional=frozenset({"session_id", "failed", "hash_ids"}),
            ),
        ),
        TraceFormat(
            "burstlab",
            "burstlab's own request table (Parquet, CSV or JSONL written by burstlab)",
            _OWN,
        ),
        TraceFormat(
            "records",
            "burstlab's records.jsonl (bench, simulate): in completion order, sorted on read",
            _OWN.model_copy(
                update={
                    "elapsed": None,
                    "hash_ids": None,
                    "ordered": False,
                    "optional": _OWN.optional - {"elapsed", "hash_ids"},
                }
            ),
            marks=frozenset({"request_id", "outcome"}),
        ),
    )
}
GENERIC = "generic"
FORMAT_NAMES = (*FORMATS, GENERIC)


def choose(
    columns: tuple[str, ...], path: str, *, fmt: str | None = None, mapping: ColumnMap | None = None
) -> tuple[str, ColumnMap]:
    """Pick the format for a header: the one named, the user's mapping, or the best match.

    Raises :class:`InputError` naming the missing columns (with the nearest
    header name) when the header does not fit the chosen or detected format.
    """
    if mapping is not None:
        if fmt not in (None, GENERIC):
            raise InputError(f"--format {fmt} cannot be combined with a column mapping")
        _check_columns(columns, mapping, path, "the column mapping")
        return GENERIC, mapping
    if fmt is not None:
        if fmt == GENERIC:
            raise InputError(
                "--format generic needs a column mapping (--map)",
                hint="e.g. --map arrival=ts,input_tokens=prompt,output_tokens=completion",
            )
        if fmt not in FORMATS:
            raise InputError(f"unknown format {fmt!r}; known: {', '.join(FORMAT_NAMES)}")
        _check_columns(columns, FORMATS[fmt].columns, path, fmt)
        return fmt, FORMATS[fmt].columns

    present = set(columns)
    scored = sorted(
        (
            (
                len(set(f.columns.required_columns()) & present)
                / len(f.columns.required_columns()),
                len(f.marks),
                name,
            )
            for name, f in FORMATS.items()
            if f.marks <= present
        ),
        reverse=True,
    )
    best_score, _, best = scored[0]
    if best_score == 1.0:
        return best, FORMATS[best].columns
    if best_score >= 0.5:
        _check_columns(columns, FORMATS[best].columns, path, best)
    raise InputError(
        f"cannot tell the trace format from the header (columns: {', '.join(columns)})",
        path=path,
        line=1,
        hint=f"pass --format ({', '.join(FORMATS)}) or --map for a generic file",
    )


def _check_columns(columns: tuple[str, ...], cmap: ColumnMap, path: str, what: str) -> None:
    present = set(columns)
    for name in cmap.required_columns():
        if name in present:
            continue
        lowered = {c.lower().replace("_", " "): c for c in columns}
        near = lowered.get(name.lower().replace("_", " ")) or next(
            iter(difflib.get_close_matches(name, columns, n=1, cutoff=0.6)), None
        )
        suggestion = f"; did you mean {near!r}?" if near else ""
        raise InputError(
            f"missing column {name!r} required by {what}{suggestion} (found: {', '.join(columns)})",
            path=path,
            line=1,
        )


def parse_mapping(spec: str, *, time_unit: TimeUnit = "s") -> ColumnMap:
    """Parse a CLI mapping ``field=column,field=column`` into a :class:`ColumnMap`.

    Fields are the canonical names (``arrival``, ``input_tokens``,
    ``output_tokens``, ``model``, ``log_type``, ``session_id``, ``turn``,
    ``failed``, ``elapsed``, ``hash_ids``).
    """
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        field, sep, column = part.partition("=")
        if not sep or not column.strip():
            raise InputError(f"--map entry {part!r} is not FIELD=COLUMN")
        if field.strip() not in MAPPED_FIELDS:
            raise InputError(
                f"--map field {field.strip()!r} is unknown; known: {', '.join(MAPPED_FIELDS)}"
            )
        pairs[field.strip()] = column.strip()
    missing = [f for f in ("arrival", "input_tokens", "output_tokens") if f not in pairs]
    if missing:
        raise InputError(f"--map must set {', '.join(missing)}")
    return ColumnMap(arrival_unit=time_unit, **pairs)
