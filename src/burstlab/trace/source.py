"""Opening a trace file: path checks, gzip sniffing, container kind, header.

This module knows bytes, not meanings: it finds out whether a source is CSV,
JSON Lines or Parquet (by content, not by name), decompresses gzip (by its
magic bytes, so a ``.csv`` that is really gzip still reads), and returns the
column names of the header. It also fetches a raw line by number, which the
readers use to point an error at the exact line and column.

Before any reader sees a text source, its bytes are checked whole
(:class:`TextCheck`, through a read-only map of the file, or a block at a time
as gzip inflates): a NUL byte, or a line longer than :data:`MAX_LINE_BYTES`, is
an error naming the line, found as soon as it is reached, so a zero-padded or
one-line file cannot make a reader allocate without bound. A
JSON Lines file whose last line has no newline and does not parse (a writer
died mid-line) is read without that line; :attr:`Source.torn_tail` says so.
"""

from __future__ import annotations

import csv
import io
import itertools
import mmap
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal, NamedTuple

import orjson
import polars as pl

from burstlab.core.errors import InputError

Kind = Literal["csv", "jsonl", "parquet"]

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"
#: A header (or first JSON line) longer than this is not a trace header.
MAX_HEADER_BYTES = 1 << 20
#: The longest line a text trace may hold (the header's cap): longer is ``line_too_long``.
MAX_LINE_BYTES = MAX_HEADER_BYTES
#: Bytes read (or decompressed) at a time while checking a text source.
BLOCK_BYTES = 8 << 20
#: Name accepted wherever a trace path is: the bundled Azure 2023 sample.
SAMPLE_NAME = "sample"


def sample_path() -> Path:
    """Path of the bundled sample trace (Azure LLM inference 2023, conversation, CC-BY 4.0)."""
    return Path(str(resources.files("burstlab") / "data" / "azure_conv_2023.csv"))


@dataclass(frozen=True, slots=True)
class Source:
    """An opened trace source.

    ``data`` holds the bytes the readers parse when they are not simply the
    file's: the decompressed bytes of a gzip file, or a JSON Lines file without
    its torn last line; otherwise the readers scan ``path`` directly (lazily,
    with projection). ``columns`` are the header names in file order.
    ``header_lines`` is the number of physical lines before the first record
    (1 for CSV, 0 for JSONL and Parquet). ``compressed`` says the file was
    gzip. ``torn_tail`` is the line number of a torn last JSON line left out
    of ``data`` (no newline and not valid JSON: its writer died mid-line), or
    ``None``.
    """

    path: Path
    kind: Kind
    columns: tuple[str, ...]
    data: bytes | None = None
    header_lines: int = 0
    compressed: bool = False
    torn_tail: int | None = None

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
    """Open ``path`` (or ``sample``), sniffing gzip and the container kind from content.

    A text source (CSV or JSON Lines) is checked whole first, a block at a
    time (:class:`TextCheck`): a NUL byte or a line over :data:`MAX_LINE_BYTES`
    is an :class:`InputError` naming the line, before any reader allocates.
    """
    p = resolve(path)
    with p.open("rb") as fh:
        head = fh.read(4)
    if not head:
        raise InputError("empty file: no header and no rows", path=p)
    data: bytes | None = None
    compressed = head.startswith(GZIP_MAGIC)
    check: TextCheck | None = None
    if compressed:
        data, check = _gunzip(p)
        if not data:
            raise InputError("empty file: the gzip stream holds no data", path=p)
        head = data[:4]
    if head == PARQUET_MAGIC:
        return Source(p, "parquet", _parquet_columns(p, data), data, compressed=compressed)
    if check is None:
        check = _check_file(p)
    first = _first_line(p, data)
    if first.lstrip(UTF8_BOM).lstrip().startswith(b"{"):
        columns = _jsonl_columns(p, first)
        data, torn = _without_torn_tail(p, data, check)
        return Source(p, "jsonl", columns, data, compressed=compressed, torn_tail=torn)
    return Source(p, "csv", _csv_columns(p, first), data, header_lines=1, compressed=compressed)


# --- checking text a block at a time ---------------------------------------------------------


class TextProblem(NamedTuple):
    """What :meth:`TextCheck.feed` found: ``nul`` or ``line_too_long``, at a byte offset."""

    reason: Literal["nul", "line_too_long"]
    offset: int


class TextCheck:
    """Checks a text stream fed block by block: no NUL byte, no line over ``cap`` bytes.

    It keeps two offsets, not the text, so memory is one block whatever the
    file holds. Per block the NUL test is one ``memchr`` and the line test one
    backward search per ``cap`` bytes (each stops at the nearest newline):
    about 10 ms per 100 MB, against the hundreds the readers take.
    """

    def __init__(self, cap: int = MAX_LINE_BYTES) -> None:
        self.cap = cap
        #: Bytes fed so far.
        self.size = 0
        #: Offset where the last line (the one still open) starts.
        self.line_start = 0

    def feed(
        self, block: bytes | bytearray | mmap.mmap, n: int | None = None
    ) -> TextProblem | None:
        """Check the first ``n`` bytes of ``block`` (all of it by default), the next ones
        of the stream; the first problem in them, or ``None``."""
        n = len(block) if n is None else n
        offset = self.size
        nul = block.find(b"\x00", 0, n)
        limit = n if nul < 0 else nul
        lo = 0
        while True:
            # the current line must end (in a newline) at or before this byte
            deadline = self.line_start + self.cap - offset
            hi = min(limit, deadline + 1)
            last = block.rfind(b"\n", lo, hi)
            if last >= 0:
                self.line_start = offset + last + 1
                lo = last + 1
                if hi < limit:
                    continue
            elif deadline < limit:
                return TextProblem("line_too_long", self.line_start + self.cap)
            break
        if nul >= 0:
            return TextProblem("nul", offset + nul)
        self.size += n
        return None


def _locate(blocks: Iterable[bytes], offset: int) -> tuple[int, int]:
    """(line, column), 1-based, of byte ``offset`` of the stream ``blocks`` make up."""
    newlines, pos, line_start = 0, 0, 0
    for block in blocks:
        end = min(len(block), offset - pos)
        if end <= 0:
            break
        newlines += block.count(b"\n", 0, end)
        last = block.rfind(b"\n", 0, end)
        if last >= 0:
            line_start = pos + last + 1
        pos += len(block)
    return newlines + 1, offset - line_start + 1


def _file_blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while block := fh.read(BLOCK_BYTES):
            yield block


def _text_error(path: Path, blocks: Iterable[bytes], problem: TextProblem) -> InputError:
    line, column = _locate(blocks, problem.offset)
    if problem.reason == "nul":
        return InputError(
            "NUL byte: a text trace holds none (a binary, corrupt or zero-padded file)",
            path=path,
            line=line,
            column=column,
            hint="check that this is the trace you meant, and that its copy is complete",
        )
    return InputError(
        f"line is longer than {MAX_LINE_BYTES} bytes (line_too_long)",
        path=path,
        line=line,
        column=column,
        hint="a trace holds one request a line; check that this is the trace you meant",
    )


def _check_file(path: Path) -> TextCheck:
    """Check a plain text file: through a read-only map of it (no copy; the readers map
    it too), or a block at a time into one reused buffer where it cannot be mapped."""
    check = TextCheck()
    with path.open("rb", buffering=0) as fh:
        try:
            view = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # not a regular file (a pipe), or emptied since
            buf = bytearray(BLOCK_BYTES)
            while n := fh.readinto(buf):
                if problem := check.feed(buf, n):
                    raise _text_error(path, _file_blocks(path), problem) from None
            return check
        with view:
            problem = check.feed(view)
    if problem is not None:
        raise _text_error(path, _file_blocks(path), problem)
    return check


def _without_torn_tail(
    path: Path, data: bytes | None, check: TextCheck
) -> tuple[bytes | None, int | None]:
    """A JSON Lines source without its torn last line, and that line's number (or None).

    The last line is torn when it has no newline and does not parse: the
    writer died mid-line (a killed run's ``records.jsonl``). Only then is a
    plain file read into memory, to hand the readers the complete lines.
    """
    start, size = check.line_start, check.size
    if start >= size:
        return data, None
    if data is not None:
        tail = data[start:]
    else:
        with path.open("rb") as fh:
            fh.seek(start)
            tail = fh.read(size - start)
    if not tail.strip():
        return data, None
    try:
        orjson.loads(tail)
    except orjson.JSONDecodeError:
        pass
    else:
        return data, None
    line, _ = _locate([data] if data is not None else _file_blocks(path), start)
    if data is not None:
        return data[:start], line
    with path.open("rb") as fh:
        return fh.read(start), line


def _gunzip(path: Path) -> tuple[bytes, TextCheck | None]:
    """Decompress a (possibly multi-member) gzip file, locating truncation and corruption.

    It inflates a block at a time and, unless the content is Parquet, checks
    each block as text as it comes (the :class:`TextCheck` returned), so a
    zero-padded or one-line file is refused after one block, not after all.
    """
    out: list[bytes] = []
    check: TextCheck | None = None
    decided = False

    def take(piece: bytes, *, last: bool = False) -> None:
        nonlocal check, decided
        if piece:
            out.append(piece)
        if not decided:
            head = b"".join(out[:4])[:4]
            if len(head) < 4 and not last:
                return
            decided = True
            check = TextCheck() if head != PARQUET_MAGIC else None
            pieces = out
        else:
            pieces = [piece] if piece else []
        for block in pieces:
            problem = check.feed(block) if check is not None else None
            if problem is not None:
                raise _text_error(path, out, problem)

    with path.open("rb") as fh:
        pending = b""
        dec = None
        while True:
            if not pending:
                pending = fh.read(BLOCK_BYTES)
                if not pending:
                    break
            if dec is None:
                pending = pending.lstrip(b"\x00")  # zero padding after the last member
                if not pending:
                    continue
                dec = zlib.decompressobj(wbits=31)
            try:
                piece = dec.decompress(pending, BLOCK_BYTES)
            except zlib.error as exc:
                raise InputError(f"corrupt gzip data ({exc})", path=path) from None
            pending = dec.unconsumed_tail
            if dec.eof:
                pending, dec = dec.unused_data, None
            take(piece)
        if dec is not None:
            try:
                take(dec.flush())
            except zlib.error as exc:
                raise InputError(f"corrupt gzip data ({exc})", path=path) from None
            if not dec.eof:
                raise InputError(
                    f"gzip stream truncated at byte {fh.tell()}",
                    path=path,
                    hint="the download or copy was cut short; fetch the file again",
                )
    take(b"", last=True)
    return b"".join(out), check


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
