"""Read any supported trace into the canonical request table, with a load report.

One pipeline serves every format (see :mod:`burstlab.trace.formats`):

1. open the source (gzip and container kind sniffed from content);
2. read only the mapped columns with polars, typed, in one vectorised pass;
   if polars refuses a value, read them as text and find the offending cells;
3. check every row at once (nulls, non-numbers, NaN/inf, negative, fractional
   or huge token counts, zero input, unknown log types) and either raise an
   :class:`~burstlab.core.errors.InputError` naming the file, line and column
   of the first bad row, or, with ``lenient=True``, drop bad rows counted by
   reason; a BurstGPT row with zero request and zero response tokens is a
   failed request, kept and counted, not a bad row;
4. refuse arrivals that go backwards (naming the first line where they do),
   unless ``sort=True`` or the format is written out of order by nature
   (burstlab's ``records.jsonl``, in completion order): then sort them stably,
   counted in ``reordered`` and named in a warning; rebase times to start at
   0, number turns in sessions.

Before step 2, :func:`~burstlab.trace.source.open_source` checks a text
source whole, stopping at the first problem: a NUL byte or a line over 1 MiB
is an error naming the line, so no file can make the readers allocate without
bound. A JSON Lines file's torn last line (no newline, not valid JSON: its
writer died mid-line) is left out and counted as dropped under ``torn_tail``.

Nothing is dropped silently: ``rows_read == rows_kept + sum(dropped)`` always
holds for the returned :class:`LoadReport`.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from burstlab.core.errors import InputError, invalid
from burstlab.trace import schema
from burstlab.trace.cache import cached_read
from burstlab.trace.formats import (
    NUMERIC_FIELDS,
    SECONDS_PER_UNIT,
    ColumnMap,
    choose,
)
from burstlab.trace.load_report import LoadReport
from burstlab.trace.source import Kind, Source, field_offsets, iter_lines, open_source, raw_line

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "LOG_TYPE_ALIASES",
    "READER_VERSION",
    "LoadReport",  # its home is load_report; named here too for the modules that read with it
    "ReadOptions",
    "read_trace",
]

#: Bumped whenever the same file and options would read differently (part of the Parquet
#: cache key): 2 reads BurstGPT's zero-token rows as failures instead of bad rows; 3 refuses
#: backwards timestamps unless ``sort`` and drops a torn JSON tail as ``torn_tail``.
READER_VERSION = 3
#: Token counts above this are refused as ``out_of_range`` (no model has a context this long).
DEFAULT_MAX_TOKENS = 2_000_000
_ROW = "__row"
_BAD = "__bad_"
_OVERFLOW = "__overflow"
#: Reason for a text cell that did not parse, by field (default ``not_a_number``).
_UNPARSED = {"arrival": "bad_timestamp", "hash_ids": "bad_hash_ids"}
LOG_TYPE_ALIASES = {
    "conversation": "conversation",
    "conversation log": "conversation",
    "conv": "conversation",
    "chat": "conversation",
    "api": "api",
    "api log": "api",
}
_TRUE = {"true", "1", "yes", "t"}
_FALSE = {"false", "0", "no", "f"}


def read_trace(
    path: str | object,
    *,
    format: str | None = None,
    mapping: ColumnMap | None = None,
    sort: bool = False,
    lenient: bool = False,
    drop_failed: bool = False,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    cache: bool = False,
) -> tuple[pl.DataFrame, LoadReport]:
    """Read a trace file (or ``"sample"``) into the canonical request table.

    ``format`` forces one of :data:`~burstlab.trace.formats.FORMATS` instead
    of detecting it from the header; ``mapping`` reads any CSV/JSONL/Parquet
    with user-named columns. Timestamps that go backwards are an error naming
    the first line where they do, unless ``sort`` (then the rows are sorted
    stably by time, the count in ``report.reordered`` and a warning) or the
    format is unordered by nature (``records``). ``lenient`` drops bad rows
    (counted by reason) instead of raising on the first. ``drop_failed``
    removes rows the source marks as failed (reason ``failed``).
    ``max_tokens`` bounds token counts. ``cache`` keeps a Parquet copy of the
    result keyed by the source's size, mtime and content hash, so a second
    read is near-instant.
    """
    try:
        options = ReadOptions(
            format=format,
            mapping=mapping,
            sort=sort,
            lenient=lenient,
            drop_failed=drop_failed,
            max_tokens=max_tokens,
        )
    except ValidationError as exc:
        raise invalid(exc, prefix="option ") from None
    if cache:
        return cached_read(
            str(path),
            options.model_dump(mode="json"),
            lambda: _read(str(path), options),
            reader_version=READER_VERSION,
        )
    return _read(str(path), options)


class ReadOptions(BaseModel):
    """How to read a trace (see :func:`read_trace`); also part of the cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str | None = None
    mapping: ColumnMap | None = None
    sort: bool = False
    lenient: bool = False
    drop_failed: bool = False
    max_tokens: int = Field(DEFAULT_MAX_TOKENS, ge=1, le=2**31 - 1)


def _read(path: str, options: ReadOptions) -> tuple[pl.DataFrame, LoadReport]:
    started = time.perf_counter()
    src = open_source(path)
    fmt_name, cmap = choose(src.columns, src.name, fmt=options.format, mapping=options.mapping)
    fields = {f: c for f, c in cmap.source_columns().items() if c in src.columns}
    frame = _read_columns(src, cmap, fields)
    rows_read = frame.height
    if rows_read == 0:
        raise InputError("no rows: the file has a header but no data", path=src.name)
    frame = _coerce(frame, cmap, fields)
    dropped: dict[str, int] = {}
    warnings: list[str] = []
    if src.torn_tail is not None:
        rows_read += 1
        dropped["torn_tail"] = 1
        warnings.append(
            f"line {src.torn_tail} is torn (no newline, not valid JSON: its writer stopped "
            "mid-line); left out, counted as torn_tail"
        )
    frame = _check_rows(
        frame, src, fields, options, dropped, zero_tokens_failed=cmap.zero_tokens_failed
    )
    frame = _with_failed(frame, cmap, fields)
    zero_token_failures = int(frame.select(_zero_tokens(cmap).sum()).item())
    if options.drop_failed:
        n_failed = int(frame["failed"].sum())
        if n_failed:
            dropped["failed"] = n_failed
            frame = frame.filter(~pl.col("failed"))
    if frame.height == 0:
        raise InputError(f"no rows left after dropping {dropped}", path=src.name)
    if zero_token_failures:
        warnings.append(
            f"{zero_token_failures} rows with zero request and response tokens "
            "read as failed requests"
        )
    frame, reordered = _order(frame, src, warnings, sort=options.sort, ordered=cmap.ordered)
    frame, origin = _rebase(frame, cmap)
    table = _finish(frame, cmap, fields)
    report = LoadReport(
        source=src.name,
        format=fmt_name,
        variant=_variant(fmt_name, src.columns),
        kind=src.kind,
        compressed=src.compressed and src.kind != "parquet",
        rows_read=rows_read,
        rows_kept=table.height,
        dropped=dropped,
        reordered=reordered,
        zero_token_failures=zero_token_failures,
        origin=origin,
        warnings=warnings,
        seconds=round(time.perf_counter() - started, 4),
    )
    return table, report


def _variant(fmt: str, columns: Sequence[str]) -> str | None:
    if fmt == "burstgpt":
        return "v3 (8 columns)" if "Session ID" in columns else "v1/v2 (6 columns)"
    return None


# --- 2. reading the mapped columns -----------------------------------------------------------


def _read_dtypes(cmap: ColumnMap, fields: dict[str, str], kind: Kind) -> dict[str, pl.DataType]:
    """Polars dtypes to read each mapped source column with.

    In CSV, token counts and turns are parsed straight to int32 (half the
    memory of float64, and the common case); a value that does not fit
    (``12.0``, ``NaN``, ``abc``, 2**31) makes polars refuse the file, and the
    text fallback then finds and names it. CSV has no lists: ``hash_ids`` is a
    JSON array in a text field.
    """
    csv_file = kind == "csv"
    dtypes: dict[str, pl.DataType] = {}
    for field, column in fields.items():
        if field == "hash_ids":
            dtypes[column] = pl.String() if csv_file else pl.List(pl.Int64())
        elif csv_file and field in ("input_tokens", "output_tokens", "turn"):
            dtypes[column] = pl.Int32()
        elif field in NUMERIC_FIELDS or (field == "arrival" and cmap.arrival_unit != "datetime"):
            dtypes[column] = pl.Float64()
        else:  # text: parsing straight to categorical is twice as slow as casting after
            dtypes[column] = pl.String()
    return dtypes


def _read_columns(src: Source, cmap: ColumnMap, fields: dict[str, str]) -> pl.DataFrame:
    """The mapped source columns renamed to field names, plus a source row index."""
    # names become categorical while streaming, so the text never sits in memory whole
    select = [
        (pl.col(c).cast(pl.Categorical()) if f in ("model", "log_type") else pl.col(c)).alias(f)
        for f, c in fields.items()
    ]
    if src.kind == "csv":
        typed = _read_dtypes(cmap, fields, "csv")
        try:
            return _scan_csv(src, typed, select, text=False)
        except pl.exceptions.PolarsError:
            pass  # a value polars could not parse: read as text, find it below
        as_text = {c: (pl.String() if d.is_numeric() else d) for c, d in typed.items()}
        try:
            return _scan_csv(src, as_text, select, text=True)
        except pl.exceptions.PolarsError as exc:
            raise _structural_error(src, exc) from None
    if src.kind == "jsonl":
        try:
            return (
                pl.read_ndjson(src.payload(), schema=_read_dtypes(cmap, fields, "jsonl"))
                .with_row_index(_ROW)
                .select([pl.col(_ROW), *select])
            )
        except pl.exceptions.PolarsError as exc:
            raise _jsonl_error(src, cmap, fields, exc) from None
    try:
        return (
            pl.scan_parquet(src.payload())
            .with_row_index(_ROW)
            .select([pl.col(_ROW), *select])
            .collect()
        )
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"unreadable Parquet file ({_first_line(exc)})", path=src.name) from None


def _scan_csv(
    src: Source, dtypes: dict[str, pl.DataType], select: list[pl.Expr], *, text: bool
) -> pl.DataFrame:
    """Scan the CSV with the header's columns plus one overflow column.

    polars silently ignores extra fields when only some columns are projected;
    reading them into ``__overflow`` makes a too-wide row visible as a
    non-null value there, at almost no cost for well-formed files.
    """
    # int8, not text: 1 byte a row instead of a 16-byte view; any extra field that is not a
    # small integer fails the typed pass, and the text pass reads it as a string
    overflow = pl.String() if text else pl.Int8()
    full = {c: dtypes.get(c, pl.String()) for c in src.columns} | {_OVERFLOW: overflow}
    return (
        pl.scan_csv(
            src.payload(),
            has_header=False,
            skip_rows=src.header_lines,
            schema=full,
            encoding="utf8",
            raise_if_empty=False,
            truncate_ragged_lines=True,
            missing_columns="insert",
        )
        .with_row_index(_ROW)
        .select([pl.col(_ROW), *select, pl.col(_OVERFLOW)])
        .collect(engine="streaming")
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _structural_error(src: Source, exc: BaseException) -> InputError:
    """Scan the CSV line by line for what made polars fail: bad UTF-8 or a wrong field count."""
    width = len(src.columns)
    for lineno, line in enumerate(iter_lines(src), start=1):
        if lineno == 1:
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            return InputError(
                f"invalid UTF-8 byte 0x{line[err.start]:02x} at byte {err.start} of the line",
                path=src.name,
                line=lineno,
                column=err.start + 1,
                hint="convert the file to UTF-8 (for example: iconv -f latin1 -t utf-8)",
            )
        text = text.rstrip("\r\n")
        if not text:
            continue
        n = len(next(csv.reader([text])))
        if n != width:
            col = field_offsets(text)[min(n, width)] + 1 if n > width else len(text) + 1
            return InputError(
                f"{n} fields, expected {width} ({', '.join(src.columns)})",
                path=src.name,
                line=lineno,
                column=col,
            )
    return InputError(f"unreadable CSV ({_first_line(exc)})", path=src.name)


def _jsonl_error(
    src: Source, cmap: ColumnMap, fields: dict[str, str], exc: BaseException
) -> InputError:
    """Scan JSON lines with orjson for the first bad line, key or value."""
    numeric = {
        c
        for f, c in fields.items()
        if f in NUMERIC_FIELDS or (f == "arrival" and cmap.arrival_unit != "datetime")
    }
    required = set(cmap.required_columns())
    for lineno, line in enumerate(iter_lines(src), start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            return InputError(f"not valid JSON ({err})", path=src.name, line=lineno)
        if not isinstance(obj, dict):
            return InputError("expected a JSON object", path=src.name, line=lineno)
        text = line.decode("utf-8", "replace")
        for key in sorted(required - obj.keys()):
            return InputError(f"missing key {key!r}", path=src.name, line=lineno)
        for key, value in obj.items():
            col = text.find(f'"{key}"') + 1 or None
            if (
                key in numeric
                and value is not None
                and (isinstance(value, bool) or not isinstance(value, int | float))
            ):
                return InputError(
                    f"key {key!r}: expected a number, got {value!r:.40}",
                    path=src.name,
                    line=lineno,
                    column=col,
                )
            if (
                key == fields.get("hash_ids")
                and value is not None
                and not (
                    isinstance(value, list)
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                )
            ):
                return InputError(
                    f"key {key!r}: expected a list of integers",
                    path=src.name,
                    line=lineno,
                    column=col,
                )
    return InputError(f"unreadable JSON lines ({_first_line(exc)})", path=src.name)


# --- 3. coercion and row checks --------------------------------------------------------------


def _coerce(raw: pl.DataFrame, cmap: ColumnMap, fields: dict[str, str]) -> pl.DataFrame:
    """Numbers to float64 and timestamps to int64 ns, with a ``__bad_<field>`` mask per field
    for cells that held text but did not parse."""
    exprs: list[pl.Expr] = []
    for field in fields:
        dtype = raw.schema[field]
        col = pl.col(field)
        if field == "arrival" and cmap.arrival_unit == "datetime":
            parsed = _datetime_ns(col, dtype, raw[field].drop_nulls().head(1).to_list())
        elif field in NUMERIC_FIELDS or field == "arrival":
            if dtype.is_numeric():
                continue
            parsed = col.cast(pl.Float64(), strict=False)
        elif field == "hash_ids" and dtype == pl.String():
            parsed = pl.lit(_int_lists(raw[field]))
        else:
            continue
        exprs.append(parsed.alias(field))
        if dtype == pl.String():
            exprs.append((col.is_not_null() & parsed.is_null()).alias(_BAD + field))
    return raw.with_columns(exprs)


def _int_lists(text: pl.Series) -> pl.Series:
    """JSON arrays of integers (``"[1,2,3]"``) decoded; null where a cell is not one."""
    list_type = pl.List(pl.Int64())
    try:
        return text.str.json_decode(list_type)
    except pl.exceptions.PolarsError:
        pass  # some cell is not JSON: decode one by one to find which (error path only)

    def decode(cell: str | None) -> list[int] | None:
        try:
            value = orjson.loads(cell) if cell is not None else None
        except orjson.JSONDecodeError:
            return None
        ok = isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        return value if ok else None

    return pl.Series(text.name, [decode(c) for c in text.to_list()], dtype=list_type)


def _datetime_ns(col: pl.Expr, dtype: pl.DataType, first: list[object]) -> pl.Expr:
    """A timestamp column as int64 nanoseconds since the epoch (UTC when zoned).

    The layout (``T`` or space separator, with or without a UTC offset) is
    taken from the first value; a later value in another layout (say, naive
    after zoned) does not parse and is reported as a bad timestamp.
    """
    if isinstance(dtype, pl.Datetime):
        ts = col
    else:
        sample = str(first[0]) if first else ""
        sep = "T" if len(sample) > 10 and sample[10] == "T" else " "
        zoned = sample.endswith("Z") or re.search(r"[+-]\d\d:?\d\d$", sample) is not None
        fmt = f"%Y-%m-%d{sep}%H:%M:%S%.f" + ("%#z" if zoned else "")
        ts = col.cast(pl.String()).str.to_datetime(fmt, strict=False, time_unit="ns")
    return ts.dt.replace_time_zone(None).dt.cast_time_unit("ns").cast(pl.Int64())


def _row_checks(
    frame: pl.DataFrame, fields: dict[str, str], max_tokens: int, zero_tokens_failed: bool
) -> list[tuple[str, str, pl.Expr]]:
    """(reason, field, bad-row mask) in priority order: a row is dropped under its first.

    With ``zero_tokens_failed`` (BurstGPT), a zero request is a bad row only
    when the response is not zero too: 0/0 is how BurstGPT logs some failures.
    """
    present = set(frame.columns)
    checks: list[tuple[str, str, pl.Expr]] = [
        ("blank_line", "arrival", pl.all_horizontal([pl.col(f).is_null() for f in fields]))
    ]
    if _OVERFLOW in present:
        checks.append(("too_many_fields", "arrival", pl.col(_OVERFLOW).is_not_null()))
    for f in ("arrival", "input_tokens", "output_tokens"):
        if _BAD + f not in present:
            checks.append(("missing_value", f, pl.col(f).is_null()))
        else:
            checks.append(("missing_value", f, pl.col(f).is_null() & ~pl.col(_BAD + f)))
    checks += [
        (_UNPARSED.get(f, "not_a_number"), f, pl.col(_BAD + f))
        for f in fields
        if _BAD + f in present
    ]
    numeric_present = [
        f
        for f in ("arrival", "input_tokens", "output_tokens", "elapsed", "turn")
        if f in fields and frame.schema[f].is_numeric()
    ]
    floats = [f for f in numeric_present if frame.schema[f].is_float()]
    checks += [("non_finite", f, ~pl.col(f).is_finite()) for f in floats]
    checks += [("negative", f, pl.col(f) < 0) for f in numeric_present]
    checks += [
        ("not_integer", f, pl.col(f) != pl.col(f).floor())
        for f in ("input_tokens", "output_tokens", "turn")
        if f in floats
    ]
    checks += [
        ("out_of_range", f, pl.col(f) > max_tokens) for f in ("input_tokens", "output_tokens")
    ]
    zero_input = pl.col("input_tokens") == 0
    if zero_tokens_failed:
        zero_input = zero_input & (pl.col("output_tokens") != 0)
    checks.append(("zero_input", "input_tokens", zero_input))
    if "log_type" in fields:
        checks.append(
            (
                "unknown_log_type",
                "log_type",
                pl.col("log_type").is_not_null() & _log_type_expr(frame).is_null(),
            )
        )
    if "failed" in fields:
        checks.append(
            (
                "bad_failed_flag",
                "failed",
                pl.col("failed").is_not_null() & _failed_expr(frame).is_null(),
            )
        )
    return checks


def _check_rows(
    frame: pl.DataFrame,
    src: Source,
    fields: dict[str, str],
    options: ReadOptions,
    dropped: dict[str, int],
    *,
    zero_tokens_failed: bool,
) -> pl.DataFrame:
    """Raise on the first bad row, or (lenient) drop bad rows counting them by reason.

    Blank lines are always dropped and counted, never an error.
    """
    checks = _row_checks(frame, fields, options.max_tokens, zero_tokens_failed)
    masks = [m.fill_null(False) for _, _, m in checks]
    reason = pl.coalesce(
        [pl.when(m).then(pl.lit(r)) for (r, _, _), m in zip(checks, masks, strict=True)]
    )
    bad = frame.select(pl.any_horizontal(masks).alias("bad"))["bad"]
    if not bad.any():
        return frame
    reasons = frame.select(reason.alias("reason"))["reason"]
    counts = reasons.drop_nulls().value_counts()
    by_reason = dict(zip(counts["reason"].to_list(), counts["count"].to_list(), strict=True))
    hard = reasons.is_not_null() & (reasons != "blank_line")
    if hard.any() and not options.lenient:
        pos = int(hard.arg_true()[0])
        name, field, _ = next(
            c for c, m in zip(checks, masks, strict=True) if frame[pos].select(m).item()
        )
        others = int(hard.sum()) - 1
        raise _row_error(src, fields, frame, _BadRow(pos, name, field, others))
    for name, n in by_reason.items():
        dropped[name] = dropped.get(name, 0) + int(n)
    return frame.filter(reasons.is_null())


@dataclass(frozen=True, slots=True)
class _BadRow:
    """The first bad row: its position in the frame, reason, field, and how many others."""

    pos: int
    reason: str
    field: str
    others: int


def _row_error(
    src: Source, fields: dict[str, str], frame: pl.DataFrame, bad: _BadRow
) -> InputError:
    pos, reason, field, others = bad.pos, bad.reason, bad.field, bad.others
    row = int(frame[_ROW][pos])
    lineno = line_of_row(src, row)
    column_name: str | None = fields[field]
    raw = raw_line(src, lineno)
    col: int | None = None
    detail = _describe(reason, frame, pos, field)
    if raw is not None and src.kind == "csv":
        text = raw.decode("utf-8", "replace")
        offsets = field_offsets(text)
        width = len(src.columns)
        index = src.columns.index(column_name)
        col = offsets[index] + 1 if index < len(offsets) else len(text) + 1
        if len(offsets) != width:
            detail = f"{len(offsets)} fields, expected {width} (a ragged or torn row)"
            col = offsets[width] + 1 if len(offsets) > width else len(text) + 1
            column_name = None
    elif raw is not None and src.kind == "jsonl":
        col = raw.decode("utf-8", "replace").find(f'"{fields[field]}"') + 1 or None
    more = f" (and {others} more bad rows)" if others else ""
    return InputError(
        f"{detail}{more}",
        path=src.name,
        line=lineno,
        column=col,
        field=column_name,
        hint="fix the file, or pass --lenient to drop bad rows (counted by reason)",
    )


def _describe(reason: str, frame: pl.DataFrame, pos: int, field: str) -> str:
    value = frame[field][pos]
    text = {
        "missing_value": "missing value",
        "not_a_number": "not a number",
        "bad_timestamp": "not a timestamp (or a time zone that differs from the first row)",
        "bad_hash_ids": "not a JSON list of integers",
        "non_finite": f"not a finite number ({value})",
        "negative": f"negative value {value}",
        "not_integer": f"token count is not a whole number ({value})",
        "out_of_range": f"token count {value} is out of range",
        "zero_input": "zero request tokens (a request has at least one)",
        "unknown_log_type": f"unknown log type {value!r} (expected conversation or api)",
        "bad_failed_flag": f"failed flag {value!r} is not true/false",
    }.get(reason, reason)
    return text


def line_of_row(src: Source, row: int) -> int:
    """Physical line (1-based) of the 0-based record ``row``: polars reads blank CSV lines as
    all-null records but skips blank JSON lines, so JSONL needs a scan."""
    if src.kind == "csv":
        return src.header_lines + 1 + row
    if src.kind == "parquet":
        return row + 1
    seen = -1
    for lineno, line in enumerate(iter_lines(src), start=1):
        if line.strip():
            seen += 1
            if seen == row:
                return lineno
    return row + 1


def _log_type_expr(frame: pl.DataFrame) -> pl.Expr:
    """Normalise log types (``Conversation log`` -> ``conversation``); null when unknown."""
    values = frame["log_type"].unique().drop_nulls().cast(pl.String()).to_list()
    mapping = {v: LOG_TYPE_ALIASES.get(v.strip().lower()) for v in values}
    return pl.col("log_type").replace_strict(
        mapping, default=None, return_dtype=schema.LogTypeDtype
    )


def _failed_expr(frame: pl.DataFrame) -> pl.Expr:
    dtype = frame.schema["failed"]
    if dtype == pl.Boolean():
        return pl.col("failed")
    if dtype.is_numeric():
        return pl.col("failed") != 0
    lowered = pl.col("failed").cast(pl.String()).str.strip_chars().str.to_lowercase()
    return (
        pl.when(lowered.is_in(list(_TRUE))).then(True).when(lowered.is_in(list(_FALSE))).then(False)
    )


def _zero_tokens(cmap: ColumnMap) -> pl.Expr:
    """Rows read as failures because they hold zero request and zero response tokens."""
    if not cmap.zero_tokens_failed:
        return pl.lit(False)
    return (pl.col("input_tokens") == 0) & (pl.col("output_tokens") == 0)


def _with_failed(frame: pl.DataFrame, cmap: ColumnMap, fields: dict[str, str]) -> pl.DataFrame:
    if "failed" in fields:
        expr = _failed_expr(frame).fill_null(False)
    elif cmap.zero_output_failed:
        expr = pl.col("output_tokens") == 0
    else:
        expr = pl.lit(False)
    return frame.with_columns((expr | _zero_tokens(cmap)).alias("failed"))


# --- 4. order, origin, turns -----------------------------------------------------------------


def _order(
    frame: pl.DataFrame, src: Source, warnings: list[str], *, sort: bool, ordered: bool
) -> tuple[pl.DataFrame, int]:
    """The rows in time order: unchanged when they are; sorted stably (ties keep file
    order) with ``sort`` or when the format is not ``ordered`` (records, written as
    requests end); otherwise an error naming the first line where time goes back.

    Equal timestamps (BurstGPT's same-second bursts) are in order: only a
    strictly earlier time than the row before counts as going backwards.
    """
    backwards = frame.select(pl.col("arrival").diff() < 0)["arrival"].fill_null(False)
    n = int(backwards.sum())
    if not n:
        return frame, 0
    pos = int(backwards.arg_true()[0])
    line = line_of_row(src, int(frame[_ROW][pos]))
    if not ordered:
        warnings.append(
            f"{n} records out of arrival order (records are written as requests end); "
            "sorted by arrival time"
        )
        return frame.sort("arrival", maintain_order=True), n
    if not sort:
        times = "once" if n == 1 else f"{n} times"
        raise InputError(
            f"timestamp goes backwards ({times} in the file); a replay must not reorder "
            "a trace quietly",
            path=src.name,
            line=line,
            hint="pass --sort (sort=True) to sort the rows stably by time, with the count "
            "reported, or write a sorted copy with burstlab trace convert --sort",
        )
    warnings.append(f"{n} timestamps go backwards (first at line {line}); rows sorted stably")
    return frame.sort("arrival", maintain_order=True), n


def _rebase(frame: pl.DataFrame, cmap: ColumnMap) -> tuple[pl.DataFrame, str]:
    first = frame["arrival"][0] if cmap.rebase else 0
    if cmap.arrival_unit == "datetime":
        origin = str(pl.Series([first]).cast(pl.Datetime("ns"))[0])
        arrival = (pl.col("arrival") - first).cast(pl.Float64()) * 1e-9
    else:
        scale = SECONDS_PER_UNIT[cmap.arrival_unit]
        origin = f"{float(first)!r} {cmap.arrival_unit}"
        arrival = (pl.col("arrival") - first) * scale
    return frame.with_columns(arrival.alias("arrival")), origin


def _number_turns(session: pl.Series) -> pl.Series:
    """0-based turn of each row within its session, by position; null outside sessions.

    Only the session rows are grouped (a few percent of BurstGPT), which is
    several times faster than a window over the whole column.
    """
    rows = session.is_not_null().arg_true()
    turns = session.gather(rows).to_frame("s").select(pl.col("s").cum_count().over("s") - 1)
    empty = pl.Series("turn", dtype=pl.Int32()).extend_constant(None, session.len())
    return empty.scatter(rows, turns.to_series().cast(pl.Int32()))


def _finish(frame: pl.DataFrame, cmap: ColumnMap, fields: dict[str, str]) -> pl.DataFrame:
    """Select and cast the canonical columns, numbering turns within sessions."""

    def mapped(field: str, dtype: pl.DataType, name: str) -> pl.Expr:
        expr = pl.col(field).cast(dtype) if field in fields else pl.lit(None, dtype=dtype)
        return expr.alias(name)

    # a turn only means something inside a session: null elsewhere (the schema's invariant)
    turn: pl.Expr = pl.lit(None)
    if "session_id" in fields and frame["session_id"].null_count() < frame.height:
        if "turn" in fields:
            turn = pl.when(pl.col("session_id").is_not_null()).then(pl.col("turn"))
        else:
            turn = pl.lit(_number_turns(frame["session_id"]))
    exprs = [
        pl.col("arrival").alias("arrival_s"),
        mapped("model", pl.Categorical(), "model"),
        (
            _log_type_expr(frame)
            if "log_type" in fields
            else pl.lit(None, dtype=schema.LogTypeDtype)
        ).alias("log_type"),
        mapped("session_id", pl.String(), "session_id"),
        turn.cast(pl.Int32()).alias("turn"),
        pl.col("input_tokens").cast(pl.Int32()),
        pl.col("output_tokens").cast(pl.Int32()),
        pl.col("failed"),
        mapped("elapsed", pl.Float64(), "elapsed_s") * SECONDS_PER_UNIT[cmap.elapsed_unit],
    ]
    if "hash_ids" in fields:
        exprs.append(pl.col("hash_ids").cast(pl.List(pl.Int64())))
    return frame.select(exprs)
