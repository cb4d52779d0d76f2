"""Service-level objectives: parsing them and judging a run's requests against them.

Two spellings give the same :class:`SLO`: burstlab's ``--slo ttft=0.5,tpot=0.05,e2e=10``
in seconds (:func:`parse_slo`), and the ``--goodput ttft:500,tpot:50,e2e:10000`` of vLLM's
``bench serve`` and AIPerf, in milliseconds (:func:`parse_goodput`).
"""

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


#: The names ``--goodput`` takes for each objective: burstlab's own, vLLM's (``e2el``) and
#: AIPerf's metric tags (its ``inter_token_latency`` is per-request TPOT).
GOODPUT_NAMES = {
    "ttft": "ttft",
    "time_to_first_token": "ttft",
    "tpot": "tpot",
    "inter_token_latency": "tpot",
    "e2e": "e2e",
    "e2el": "e2e",
    "request_latency": "e2e",
}


def parse_goodput(text: str, *, option: str = "--goodput") -> SLO:
    """``"ttft:500,tpot:50,e2e:10000"`` (milliseconds, as vLLM's and AIPerf's
    ``--goodput``) as an :class:`SLO` in seconds. Items are separated by commas or
    spaces; names are those of :data:`GOODPUT_NAMES`. A bad item is an
    :class:`InputError` naming ``option`` and the item."""
    values: dict[str, float] = {}
    for part in text.replace(",", " ").split():
        key, sep, value = part.partition(":")
        name = GOODPUT_NAMES.get(key.strip().lower())
        if not sep or name is None:
            raise InputError(
                f"{part!r} is not NAME:MILLISECONDS with NAME one of ttft, tpot, e2e "
                "(or e2el, time_to_first_token, inter_token_latency, request_latency)",
                field=option,
            )
        try:
            number = float(value)
        except ValueError:
            raise InputError(
                f"{part!r}: {value!r} is not a number of milliseconds", field=option
            ) from None
        if not math.isfinite(number) or number <= 0:
            raise InputError(
                f"{part!r}: {key} must be a positive number of milliseconds", field=option
            )
        if name in values:
            raise InputError(f"{part!r}: {name} is given twice", field=option)
        values[name] = number / 1e3
    if not values:
        raise InputError("no objective given, e.g. ttft:500,tpot:50", field=option)
    return SLO(**values)
