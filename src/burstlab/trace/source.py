"""Opening a trace file: path checks, gzip sniffing, container kind, header.

This module knows bytes, not meanings: it finds out whether a source is CSV,
JSON Lines or Parquet (by content, not by name), decompresses gzip (by its
magic bytes, so a ``.csv`` that is really gzip still reads), and returns the
column names of the header. It also fetches a raw line by number, which the
readers use to point an error at the exact line and column.
"""

from __future__ import annotations

import csv
import io
import itertools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import orjson
import polars as pl

from burstlab.core.errors import InputError

Kind = Literal["csv", "jsonl", "parquet"]

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"
#: A header (or first JSON line) longer than this is not a trace header.
MAX_HEADER_BYTES = 1 << 20
#: Name accepted wherever a trace path is: the bundled Azure 2023 sample.
SAMPLE_NAME = "sample"


def sample_path() -> Path:
    """Path of the bundled sample trace (Azure LLM inference 2023, conversation, CC-BY 4.0)."""
    return Path(str(resources.files("burstlab") / "data" / "azure_conv_2023.csv"))


@dataclass(frozen=True, slots=True)
class Source:
    """An opened trace source.

    ``data`` holds the decompressed bytes when the file was gzip; otherwise the
    readers scan ``path`` directly (lazily, with projection). ``columns`` are
    the header names in file order. ``header_lines`` is the number of physical
    lines before the first record (1 for CSV, 0 for JSONL and Parquet).
    """

    path: Path
    kind: Kind
    columns: tuple[str, ...]
    data: bytes | None = None
    header_lines: int = 0

    @property
    def name(self) -> str:
        """The path as the user should see it in messages."""
        return str(self.path)

    def payload(self) -> Path | bytes:
        """What polars should read: the decompressed bytes or the path."""
        return self.data if self.data is not None else self.path


def resolve(path: str | Path) -> Path:
    """Map the name ``sample`` to the bundled trace and check the path exists and is a file."""
    if str(path) == SAMPLE_NAME:
        return sample_path()
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", path=p, hint="check the path, or use 'sample'")
    if p.is_dir():
        raise InputError("is a directory, not a trace file", path=p)
    return p


def open_source(path: str | Path) -> Source:
    """Open ``path`` (or ``sample``), sniffing gzip and the container kind from content."""
    p = resolve(path)
    with p.open("rb") as fh:
        head = fh.read(4)
    if not head:
        raise InputError("empty file: no header and no rows", path=p)
    data: bytes | None = None
    if head.startswith(GZIP_MAGIC):
        data = _gunzip(p)
        if not data:
            raise InputError("empty file: the gzip stream holds no data", path=p)
        head = data[:4]
    if head == PARQUET_MAGIC:
        return Source(p, "parquet", _parquet_columns(p, data), data)
    first = _first_line(p, data)
    if first.lstrip(UTF8_BOM).lstrip().startswith(b"{"):
        return Source(p, "jsonl", _jsonl_columns(p, first), data)
    return Source(p, "csv", _csv_columns(p, first), data, header_lines=1)


def _gunzip(path: Path) -> bytes:
    """Decompress a (possibly multi-member) gzip file, locating truncation and corruption."""
    raw = path.read_bytes()
    out: list[bytes] = []
    pos = 0
    while pos < len(raw):
        dec = zlib.decompressobj(wbits=31)
        try:
            out.append(dec.decompress(raw[pos:]))
            out.append(dec.flush())
        except zlib.error as exc:
            raise InputError(f"corrupt gzip data ({exc})", path=path) from None
        if not dec.eof:
            raise InputError(
                f"gzip stream truncated at byte {len(raw)}",
                path=path,
                hint="the download or copy was cut short; fetch the file again",
            )
        consumed = len(raw) - pos - len(dec.unused_data)
        pos += consumed
        if dec.unused_data.strip(b"\x00") == b"":
            break
    return b"".join(out)


def _first_line(path: Path, data: bytes | None) -> bytes:
    if data is not None:
        end = data.find(b"\n", 0, MAX_HEADER_BYTES + 1)
        line = data[: end if end >= 0 else MAX_HEADER_BYTES + 1]
    else:
        with path.open("rb") as fh:
            line = fh.readline(MAX_HEADER_BYTES + 1)
    if len(line) > MAX_HEADER_BYTES:
        raise InputError(f"first line is longer than {MAX_HEADER_BYTES} bytes", path=path, line=1)
    return line.rstrip(b"\r\n")


def _decode(path: Path, line: bytes, lineno: int) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"invalid UTF-8 at byte {exc.start} of the line",
            path=path,
            line=lineno,
            column=exc.start + 1,
            hint="convert the file to UTF-8 (for example: iconv -f latin1 -t utf-8)",
        ) from None


def _csv_columns(path: Path, first: bytes) -> tuple[str, ...]:
    text = _decode(path, first.removeprefix(UTF8_BOM), 1)
    if not text.strip():
        raise InputError("the first line is blank: expected a CSV header", path=path, line=1)
    names = tuple(next(csv.reader([text])))
    _check_names(path, names, [field_offsets(text)[i] + 1 for i in range(len(names))])
    return names


def _check_names(path: Path, names: tuple[str, ...], cols: list[int]) -> None:
    seen: set[str] = set()
    for name, col in zip(names, cols, strict=True):
        if not name.strip():
            raise InputError("empty column name in the header", path=path, line=1, column=col)
        if name in seen:
            raise InputError(
                f"duplicate column name {name!r} in the header", path=path, line=1, column=col
            )
        seen.add(name)


def _jsonl_columns(path: Path, first: bytes) -> tuple[str, ...]:
    try:
        obj = orjson.loads(first.removeprefix(UTF8_BOM))
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})", path=path, line=1) from None
    if not isinstance(obj, dict):
        raise InputError("expected a JSON object on each line", path=path, line=1)
    return tuple(obj)


def _parquet_columns(path: Path, data: bytes | None) -> tuple[str, ...]:
    try:
        schema = pl.read_parquet_schema(io.BytesIO(data) if data is not None else path)
    except Exception as exc:
        raise InputError(f"unreadable Parquet file ({_first_sentence(exc)})", path=path) from None
    return tuple(schema)


def _first_sentence(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def field_offsets(line: str, sep: str = ",", quote: str = '"') -> list[int]:
    """0-based character offsets where each CSV field of ``line`` starts."""
    offsets = [0]
    quoted = False
    for i, ch in enumerate(line):
        if ch == quote:
            quoted = not quoted
        elif ch == sep and not quoted:
            offsets.append(i + 1)
    return offsets


def iter_lines(src: Source) -> Iterator[bytes]:
    """Every physical line (bytes, line ending kept) of a text source, in order."""
    if src.data is not None:
        yield from io.BytesIO(src.data)
        return
    with src.path.open("rb") as fh:
        yield from fh


def raw_line(src: Source, lineno: int) -> bytes | None:
    """The bytes of physical line ``lineno`` (1-based), without its line ending.

    Used only on the error path to point at a column; it scans from the start
    of the file, which is fast enough for one call.
    """
    if src.kind == "parquet" or lineno < 1:
        return None
    lines = itertools.islice(iter_lines(src), lineno - 1, lineno)
    return next((ln.rstrip(b"\r\n") for ln in lines), None)
