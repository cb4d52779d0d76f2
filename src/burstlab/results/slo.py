"""Service-level objectives: parsing them and judging a run's requests against them."""

from __future__ import annotations

import math

import polars as pl
from pydantic import BaseModel, ConfigDict

from burstlab.core.errors import InputError


class SLO(BaseModel):
    """Service-level objectives in seconds; ``None`` leaves one out."""

    model_config = ConfigDict(extra="forbid")

    ttft: float | None = None
    tpot: float | None = None
    e2e: float | None = None

    def met(self, *, intended: bool = False) -> pl.Expr:
        """True for a request of a derived result table that was served (``ok``)
        and meets every objective. TTFT and E2E are taken from the send time, or from the intended
        time with ``intended`` (the user's view); a request of one token has no
        TPOT and meets that objective."""
        suffix = "_intended_s" if intended else "_s"
        cond = pl.col("outcome") == "ok"
        if self.ttft is not None:
            cond &= pl.col(f"ttft{suffix}") <= self.ttft
        if self.tpot is not None:
            cond &= pl.col("tpot_s").fill_null(0.0) <= self.tpot
        if self.e2e is not None:
            cond &= pl.col(f"e2e{suffix}") <= self.e2e
        return cond.fill_null(False)


def parse_slo(text: str) -> SLO:
    """``"ttft=0.5,tpot=0.05,e2e=10"`` (seconds) as an :class:`SLO`."""
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in SLO.model_fields:
            raise InputError(
                f"{part!r} is not KEY=SECONDS with KEY one of ttft, tpot, e2e", field="--slo"
            )
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"{value!r} is not a number of seconds", field="--slo") from None
        if not math.isfinite(number) or number <= 0:
            raise InputError(f"{key} must be a positive number of seconds", field="--slo")
        values[key.strip()] = number
    return SLO(**values)
