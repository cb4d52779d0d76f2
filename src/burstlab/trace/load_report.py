"""The load report: what reading a trace kept, dropped (by reason), reordered and took."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from burstlab.trace.source import Kind

__all__ = ["LoadReport"]


class LoadReport(BaseModel):
    """What happened while reading a trace; the counts always reconcile.

    ``rows_read`` counts every record the file holds (blank lines included,
    and a JSON Lines file's torn last line, dropped as ``torn_tail``); each one
    is either kept or dropped under a named reason. ``reordered`` is the
    number of arrivals that went backwards and were sorted (with ``sort``, or
    records, which are written as requests end). ``origin`` is
    the first arrival in the source's own clock (e.g. ``2023-11-16
    18:15:46.680590`` or ``5.0 s``): ``arrival_s`` counts seconds from it.
    ``zero_token_failures`` counts rows with zero request and zero response
    tokens that were read as failed requests (BurstGPT logs some failures
    so); they are kept, so they are part of ``rows_kept`` (or of
    ``dropped["failed"]`` with ``drop_failed``), and ``input_tokens`` stays 0
    for them: the canonical schema allows it, and inventing a length would
    put tokens into the trace that no one sent.
    """

    model_config = ConfigDict(extra="forbid")

    source: str
    format: str
    variant: str | None = None
    kind: Kind
    compressed: bool = False
    rows_read: int
    rows_kept: int
    dropped: dict[str, int] = Field(default_factory=dict)
    reordered: int = 0
    zero_token_failures: int = Field(0, ge=0)
    origin: str | None = None
    warnings: list[str] = Field(default_factory=list)
    cache: Literal["off", "miss", "hit"] = "off"
    seconds: float = 0.0

    @model_validator(mode="after")
    def _reconciles(self) -> LoadReport:
        if self.rows_read != self.rows_kept + sum(self.dropped.values()):
            raise ValueError(
                f"load report does not reconcile: read {self.rows_read}, kept {self.rows_kept}, "
                f"dropped {self.dropped}"
            )
        return self
