"""Incremental server-sent-events parser (WHATWG rules), bounded against hostile servers.

Bytes go in as they arrive from the socket; complete events come out as the raw
bytes of their ``data`` field. Nothing is decoded here: a multi-byte UTF-8
character split across two network reads is only ever seen whole, because the
caller decodes (``orjson.loads`` validates UTF-8) one complete event at a time.

Rules kept: lines end in CRLF, LF or CR (a CRLF split across reads counts once);
a leading BOM is stripped; ``data:`` loses at most one leading space; several
``data`` lines in one event are joined with ``\\n``; lines starting with ``:``
are comments; a blank line dispatches the event; other fields are ignored.
"""

from __future__ import annotations

#: Largest event accepted, in bytes of its ``data`` (the data lines joined with
#: ``\\n``). Legitimate events of a MiB exist (reasoning dumps, long tool calls, usage
#: with logprobs), so an event of exactly 1 MiB is well inside; beyond this a server is
#: broken or hostile and the request fails as ``stream_error.oversize``
#: (RELIABILITY.md F18, F19).
MAX_EVENT_BYTES = 4 << 20

#: Bytes a line may carry beyond the data it holds: the field name and colon and one
#: space (``data: ``), so a data line of exactly :data:`MAX_EVENT_BYTES` fits.
_FIELD_BYTES = len(b"data: ")

_BOM = b"\xef\xbb\xbf"


class SSEOversizeError(Exception):
    """An event or line grew past the parser's bound."""


class SSEParser:
    """Feed bytes with :meth:`feed`; it returns the data of every event completed.

    Memory is bounded by ``max_event_bytes``: the event in progress plus the
    unterminated line never hold more than ``max_event_bytes`` and a field name.
    An unterminated line is kept as its pieces, so a long line arriving in many
    reads is joined once, not copied on every read.
    """

    __slots__ = (
        "_data",
        "_has_data",
        "_head",
        "_max",
        "_pieces",
        "_pieces_len",
        "_size",
        "_skip_lf",
        "_started",
    )

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._head = b""
        self._pieces: list[bytes] = []
        self._pieces_len = 0
        self._data: list[bytes] = []
        self._size = 0
        self._has_data = False
        self._skip_lf = False
        self._started = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """Parse ``chunk`` and return the ``data`` payloads of the events it completed."""
        if not self._started:
            head = self._head + chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._head = head
                return []
            self._head = b""
            self._started = True
            chunk = head[len(_BOM) :] if head.startswith(_BOM) else head
        if self._skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._skip_lf = False
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in chunk:
            if chunk:
                self._pieces.append(chunk)
                self._pieces_len += len(chunk)
                self._check_partial()
            return []
        lines = chunk.split(b"\n")
        if self._pieces:
            self._pieces.append(lines[0])
            lines[0] = b"".join(self._pieces)
        tail = lines.pop()
        self._pieces = [tail] if tail else []
        self._pieces_len = len(tail)
        events: list[bytes] = []
        for line in lines:
            if not line:
                if self._has_data:
                    events.append(b"\n".join(self._data))
                self._data = []
                self._size = 0
                self._has_data = False
            elif line.startswith(b"data:"):
                value = line[6:] if line.startswith(b"data: ") else line[5:]
                self._add(value)
            elif line == b"data":
                self._add(b"")
            elif self._size + len(line) > self._max + _FIELD_BYTES:
                raise SSEOversizeError(f"an SSE line exceeded {self._max} bytes")
        self._check_partial()
        return events

    def _add(self, value: bytes) -> None:
        self._size += len(value) + (1 if self._has_data else 0)
        if self._size > self._max:
            raise SSEOversizeError(f"an SSE event exceeded {self._max} bytes")
        self._data.append(value)
        self._has_data = True

    def _check_partial(self) -> None:
        """The event so far plus the unterminated line stay within the bound (up to the
        line's field name, checked exactly once the line ends)."""
        if self._size + self._pieces_len > self._max + _FIELD_BYTES:
            raise SSEOversizeError(f"an SSE line exceeded {self._max} bytes")

    @property
    def pending(self) -> bool:
        """Whether an event was started and not dispatched (the stream ended mid-event)."""
        return self._has_data or self._pieces_len > 0 or bool(self._head)
