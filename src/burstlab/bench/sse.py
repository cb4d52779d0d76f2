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

#: Largest event (or unterminated line) accepted, in bytes. Legitimate events of
#: a few hundred KiB exist (long tool calls, usage with logprobs); beyond this a
#: server is broken or hostile and the request fails as ``stream_error.oversize``.
MAX_EVENT_BYTES = 1 << 20

_BOM = b"\xef\xbb\xbf"


class SSEOversizeError(Exception):
    """An event or line grew past the parser's bound."""


class SSEParser:
    """Feed bytes with :meth:`feed`; it returns the data of every event completed."""

    __slots__ = ("_data", "_has_data", "_max", "_partial", "_size", "_skip_lf", "_started")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._partial = b""
        self._data: list[bytes] = []
        self._size = 0
        self._has_data = False
        self._skip_lf = False
        self._started = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """Parse ``chunk`` and return the ``data`` payloads of the events it completed."""
        if not self._started:
            if len(self._partial) + len(chunk) < len(_BOM) and _BOM.startswith(
                self._partial + chunk
            ):
                self._partial += chunk
                return []
            chunk = self._partial + chunk
            self._partial = b""
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._skip_lf = False
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        lines[0] = self._partial + lines[0]
        self._partial = lines.pop()
        if len(self._partial) + self._size > self._max:
            raise SSEOversizeError(f"an SSE line exceeded {self._max} bytes")
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
                self._size += len(value) + 1
                if self._size > self._max:
                    raise SSEOversizeError(f"an SSE event exceeded {self._max} bytes")
                self._data.append(value)
                self._has_data = True
            elif line == b"data":
                self._data.append(b"")
                self._has_data = True
        return events

    @property
    def pending(self) -> bool:
        """Whether an event was started and not dispatched (the stream ended mid-event)."""
        return self._has_data or bool(self._partial)
