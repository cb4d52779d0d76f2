"""Per-request result records: what happened to every scheduled request.

Written by the benchmark client (``burstlab bench``) and by the simulator
(``burstlab simulate``) alike, so one report and one analysis read both.
One JSON line per request in ``RUN_DIR/records.jsonl``, appended with one
``write`` and flushed as the request ends, and fsynced at least once a second,
so a Ctrl-C or SIGKILL keeps every request that had finished. Times are seconds
on one monotonic clock (``time.perf_counter_ns``), measured from the run's
``t0``; ``run.json`` holds the wall-clock anchor to turn them into dates.

A record carries the canonical request-table columns under their canonical
names (``arrival_s`` is the intended send time, ``input_tokens`` and
``output_tokens`` the requested lengths, ``failed`` whether the outcome was not
``ok``), so ``burstlab analyze records.jsonl`` reads a run like a trace;
:func:`load_records` adds the measured columns.
"""

from __future__ import annotations

import errno
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Protocol

import orjson
import polars as pl

from burstlab.core.errors import InputError
from burstlab.results.metrics import derive
from burstlab.results.requests import REQUESTS_FILE, read_requests
from burstlab.trace.schema import conform

Outcome = Literal["ok", "failed", "cancelled", "not_sent"]
OUTCOMES: tuple[str, ...] = ("ok", "failed", "cancelled", "not_sent")

#: Failure kinds (DESIGN.md taxonomy plus RELIABILITY.md's ``http_3xx`` and ``internal``).
ERROR_KINDS: tuple[str, ...] = (
    "http_429",
    "http_3xx",
    "http_4xx",
    "http_5xx",
    "timeout",
    "connect",
    "reset",
    "stream_error",
    "truncated",
    "empty",
    "internal",
)

#: The records file's name in a run directory.
RECORDS_FILE = "records.jsonl"

#: Longest error text kept per record, in characters (control characters stripped).
ERROR_TEXT_CHARS = 2048


@dataclass(slots=True)
class Record:
    """One request's fate. ``None`` marks a stamp that was never reached."""

    request_id: int
    arrival_s: float
    model: str | None = None
    log_type: str | None = None
    session_id: str | None = None
    turn: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    #: bench's ``--max-output-tokens``: the most output tokens asked of the server
    #: (a request for more was sent with this many; ``output_tokens`` keeps what the
    #: workload asked). None: no cap.
    output_tokens_cap: int | None = None
    failed: bool = False
    outcome: Outcome = "not_sent"
    error_kind: str | None = None
    error_subkind: str | None = None
    http_status: int | None = None
    retry_after_s: float | None = None
    error_text: str | None = None
    location: str | None = None  # a 3xx's Location header (never followed), credentials removed
    #: The client process or Ray actor (0-based) that sent the request.
    worker: int = 0
    #: The Ray node that actor ran on (its address, see ``run.json``'s ``cluster``);
    #: None outside Ray.
    node: str | None = None
    attempt: int = 0
    #: The run that wrote the record: its manifest's ``run_id`` (empty in older runs).
    run_id: str = ""
    dispatched_s: float | None = None
    sent_s: float | None = None
    conn_queued_s: float = 0.0
    first_s: float | None = None
    end_s: float | None = None
    chunk_s: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    input_tokens_achieved: int | None = None
    #: The workload's input length. ``input_tokens`` is what was sent: the same,
    #: unless a prompt pool's nearest prompt (``bench --prompts``) or a chat's
    #: history made it another. None in records written before it existed.
    input_tokens_workload: int | None = None
    output_tokens_achieved: int | None = None
    tokens_source: str | None = None
    prompt_exact: bool = True
    finish_reason: str | None = None
    done_missing: bool = False
    coalesced_events: int = 0
    #: The server's own account of the request, where it gives one (llama.cpp's
    #: ``timings``): milliseconds from the slot taking the prompt to its first token
    #: (no queueing before that), milliseconds from the first token to the last,
    #: and the prompt tokens processed, reused from its cache, and generated.
    server_prompt_ms: float | None = None
    server_predicted_ms: float | None = None
    server_prompt_n: int | None = None
    server_cache_n: int | None = None
    server_predicted_n: int | None = None
    #: Milliseconds from the slot taking the prompt to the first token it streamed
    #: (llama.cpp with ``timings_per_token``: ``prompt_ms`` plus ``predicted_ms`` of
    #: that chunk; above ``prompt_ms`` when tokens were held back as incomplete UTF-8).
    server_first_ms: float | None = None

    def fail(self, kind: str, subkind: str | None = None, text: str | None = None) -> None:
        """Mark the request failed under ``kind.subkind`` (kinds in :data:`ERROR_KINDS`)."""
        self.outcome = "failed"
        self.failed = True
        self.error_kind = kind
        self.error_subkind = subkind
        if text is not None:
            self.error_text = clean_text(text)


def clean_text(text: str) -> str:
    """Error text safe to store and print: control characters dropped, bounded length."""
    kept = "".join(ch if ch.isprintable() or ch == " " else " " for ch in text[:ERROR_TEXT_CHARS])
    return kept.strip()


class RecordSink(Protocol):
    """Where a runner puts each record as its request ends: a file
    (:class:`RecordWriter`), or a buffer a Ray actor streams to its driver."""

    def write(self, record: Record) -> None: ...

    def sync(self) -> None: ...

    def close(self) -> None: ...


class RecordWriter:
    """Appends records to a JSONL file: one unbuffered ``write`` per record, so the
    line is in the kernel (and survives a SIGKILL) as soon as the request ends.

    The file is opened with ``O_APPEND``: worker processes sharing it never
    interleave lines. :meth:`sync` (fsync, for power cuts) is called by the
    runner once a second off the event loop, and by :meth:`close`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] = path.open("ab", buffering=0)
        self._dirty = False
        self.count = 0

    def write(self, record: Record) -> None:
        """Append one record. An ``OSError`` (a full disk: ``ENOSPC``, ``EDQUOT``,
        ``EFBIG``) is raised to the caller, which must stop writing: the line may be
        torn, and a torn line is only tolerated at the end of the file."""
        self.write_lines(orjson.dumps(record) + b"\n", 1)

    def write_lines(self, lines: bytes, count: int) -> None:
        """Append ``count`` complete record lines serialized elsewhere (a Ray actor's),
        in one ``write``; errors as :meth:`write`."""
        data = memoryview(lines)
        while data:  # a short write (the disk filled mid-line): the rest raises the error
            written = self._fh.write(data)
            if not written:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
            data = data[written:]
        self.count += count
        self._dirty = True

    def sync(self) -> None:
        """fsync the file if anything was written since the last one."""
        if self._dirty and not self._fh.closed:
            self._dirty = False
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Sync and close; safe to call twice."""
        if not self._fh.closed:
            self.sync()
            self._fh.close()


def read_records(path: Path) -> bytes:
    """The complete record lines of ``path``. A torn last line (the writer died
    mid-record) is left out; a bad line elsewhere is an error naming its line."""
    data = path.read_bytes()
    body, sep, tail = data.rpartition(b"\n")
    if tail.strip():
        try:
            orjson.loads(tail)
            body = data
        except orjson.JSONDecodeError:
            pass  # torn final line
    elif not sep:
        body = b""
    return body


#: Measured columns added after the canonical ones, with their dtypes.
RESULT_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.Int64(),
    "outcome": pl.String(),
    "error_kind": pl.String(),
    "error_subkind": pl.String(),
    "http_status": pl.Int32(),
    "retry_after_s": pl.Float64(),
    "error_text": pl.String(),
    "location": pl.String(),
    "worker": pl.Int32(),
    "run_id": pl.String(),
    "dispatched_s": pl.Float64(),
    "sent_s": pl.Float64(),
    "conn_queued_s": pl.Float64(),
    "first_s": pl.Float64(),
    "end_s": pl.Float64(),
    "chunk_s": pl.List(pl.Float64()),
    "chunk_tokens": pl.List(pl.Int32()),
    "input_tokens_achieved": pl.Int32(),
    "output_tokens_achieved": pl.Int32(),
    "tokens_source": pl.String(),
    "finish_reason": pl.String(),
    "done_missing": pl.Boolean(),
    "coalesced_events": pl.Int32(),
}

#: The server's own account of each request (see :class:`Record`): columns of a
#: benchmark's records only (null where the server gives none, and in records
#: written before they existed); a simulation's table has no such columns.
SERVER_SCHEMA: dict[str, pl.DataType] = {
    "server_prompt_ms": pl.Float64(),
    "server_predicted_ms": pl.Float64(),
    "server_prompt_n": pl.Int32(),
    "server_cache_n": pl.Int32(),
    "server_predicted_n": pl.Int32(),
    "server_first_ms": pl.Float64(),
}


#: bench's cap on output length (``--max-output-tokens``; null without one, and in
#: records written before it existed); a simulation's table has no such column.
CAP_SCHEMA: dict[str, pl.DataType] = {"output_tokens_cap": pl.Int32()}


#: Where a benchmark's request ran: the Ray node (null outside Ray, and in records
#: written before it existed); a simulation's table has no such column.
PLACEMENT_SCHEMA: dict[str, pl.DataType] = {"node": pl.String()}


#: The workload's input length beside the one sent (see :class:`Record`): a
#: benchmark's column (null in records written before it existed).
PROMPT_SCHEMA: dict[str, pl.DataType] = {"input_tokens_workload": pl.Int32()}


#: The canonical columns as records store them (categoricals as text).
_CANONICAL: dict[str, pl.DataType] = {
    "arrival_s": pl.Float64(),
    "model": pl.String(),
    "log_type": pl.String(),
    "session_id": pl.String(),
    "turn": pl.Int32(),
    "input_tokens": pl.Int32(),
    "output_tokens": pl.Int32(),
    "failed": pl.Boolean(),
}


def records_table(data: bytes | list[dict[str, object]], path: str | None = None) -> pl.DataFrame:
    """Records (JSONL bytes, or dicts) as the canonical request table plus the
    measured columns and every metric of :data:`~burstlab.results.metrics.METRICS`;
    sorted by intended time."""
    if isinstance(data, list):
        data = b"\n".join(orjson.dumps(row) for row in data)
    schema = _CANONICAL | RESULT_SCHEMA | CAP_SCHEMA | PLACEMENT_SCHEMA | SERVER_SCHEMA
    schema |= PROMPT_SCHEMA
    if not data.strip():
        raw = pl.DataFrame(schema=schema)
    else:
        try:
            raw = pl.read_ndjson(io.BytesIO(data), schema=schema)
        except pl.exceptions.ComputeError as exc:
            line = _bad_line(data)
            raise InputError(f"not a record: {exc}", path=path, line=line) from None
    out = derive(conform(raw).collect())
    return out.sort("arrival_s", "request_id", maintain_order=True)


def load_records(path: str | Path) -> pl.DataFrame:
    """Read a records file (or a run directory's) as a result table; a simulation's
    ``requests.parquet`` (or a directory holding one) reads as the same table."""
    p = Path(path)
    if p.is_dir() and (p / REQUESTS_FILE).is_file():
        p = p / REQUESTS_FILE
    if p.suffix == ".parquet" and p.is_file():
        return read_requests(p)
    if p.is_dir():
        p = p / RECORDS_FILE
    if not p.exists():
        raise InputError("no such records file", path=str(p), hint="pass a run directory")
    return records_table(read_records(p), path=str(p))


def _bad_line(data: bytes) -> int | None:
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                return number
    return None
