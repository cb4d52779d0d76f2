"""Fixed timing for the mock server: token ``k`` at ``ttft + k * itl`` after the request arrived.

Every request is answered on an absolute schedule measured from the moment its
handler starts (``t_recv``, on ``time.perf_counter``): content token ``k``
(0-based) is due at ``t_recv + ttft + k * itl`` seconds, whatever the load, so
a benchmark client's measurements can be checked against known truth.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from burstlab.core.errors import InputError, invalid
from burstlab.server.openai import Ask

if TYPE_CHECKING:
    from burstlab.server.app import Timed

_SPEC_VALUE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s)?\s*")


class FixedTiming(BaseModel):
    """The timing of every response.

    ``ttft`` is seconds from receiving a request to its first content token;
    ``itl`` is seconds between consecutive tokens; ``eos`` is the response
    length, in tokens, a request gets when it does not force one (the
    "natural" end of sequence of a model).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    ttft: float = Field(default=0.05, ge=0)
    itl: float = Field(default=0.01, ge=0)
    eos: int = Field(default=64, ge=1)


def parse_fixed(spec: str) -> FixedTiming:
    """:class:`FixedTiming` from ``"ttft=0.05,itl=0.01[,eos=N]"`` (the ``--fixed`` option).

    Times are seconds, optionally with an ``s`` or ``ms`` suffix (``ttft=50ms``).
    Unknown keys, repeated keys and bad values raise :class:`InputError`.
    """
    fields: dict[str, float | int] = {}
    known = tuple(FixedTiming.model_fields)
    for part in spec.split(","):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not key:
            raise InputError(
                f"{part.strip()!r} is not key=value (example: ttft=0.05,itl=0.01,eos=64)",
                field="--fixed",
            )
        if key not in known:
            raise InputError(f"unknown key {key!r}; known: {', '.join(known)}", field="--fixed")
        if key in fields:
            raise InputError(f"key {key!r} given twice", field="--fixed")
        fields[key] = _spec_int(key, value) if key == "eos" else _spec_seconds(key, value)
    try:
        return FixedTiming.model_validate(fields)
    except ValidationError as exc:
        raise invalid(exc, option="--fixed") from None


def _spec_seconds(key: str, value: str) -> float:
    match = _SPEC_VALUE.fullmatch(value)
    if match is None:
        raise InputError(
            f"{key}={value!r} is not a time in seconds (examples: 0.05, 50ms)", field="--fixed"
        )
    seconds = float(match.group(1))
    return seconds / 1000 if match.group(2) == "ms" else seconds


def _spec_int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{key}={value!r} is not a whole number", field="--fixed") from None


class FixedSource:
    """The token source of :func:`burstlab.server.app.make_app` by default: token ``k``
    of every response is due at ``t_recv + ttft + k * itl``, whatever the load."""

    def __init__(self, timing: FixedTiming) -> None:
        self.timing = timing
        self.requests = 0

    async def open(self, ask: Ask, t_recv: float) -> Timed:
        from burstlab.server.app import Timed  # noqa: PLC0415 - app imports this module

        self.requests += 1
        first, itl = t_recv + self.timing.ttft, self.timing.itl

        async def times() -> AsyncIterator[float]:
            for k in range(ask.tokens):
                yield first + k * itl

        return Timed(times())

    def metrics(self) -> dict[str, float]:
        """No queue and no KV cache: only the requests seen (``burstlab_requests_total``)."""
        return {"burstlab_requests_total": self.requests}
