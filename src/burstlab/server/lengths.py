"""Natural response lengths: where a response ends when the request does not force a length.

A model stops at its end-of-sequence token, so responses that no ``max_tokens``
cuts have lengths spread around a mean rather than one fixed length. The
``--output-lengths`` option picks the distribution, in tokens:

- ``fixed:N`` (or just ``N``): every response is ``N`` tokens;
- ``lognormal:MEAN,SD``: lengths drawn from a log-normal with that mean and
  standard deviation (of the lengths, not of their logarithm), rounded, at least 1;
- ``eos:P``: each token is the end-of-sequence with probability ``P``
  (a geometric length, mean ``1/P``).

Draws are seeded and taken in the order requests arrive, so the same seed and
the same request order give the same lengths.
"""

from __future__ import annotations

import math

import numpy as np

from burstlab.core.errors import InputError
from burstlab.server.openai import MAX_RESPONSE_TOKENS

_BATCH = 1024
_KINDS = ("fixed", "lognormal", "eos")


class OutputLengths:
    """Seeded natural response lengths, in tokens (see the module docstring)."""

    __slots__ = ("_buf", "_next", "_rng", "kind", "params", "spec")

    def __init__(self, kind: str, params: tuple[float, ...], seed: int = 0) -> None:
        if kind not in _KINDS:
            raise ValueError(f"unknown kind {kind!r}; known: {', '.join(_KINDS)}")
        self.kind = kind
        self.params = params
        self.spec = f"{kind}:{','.join(f'{p:g}' for p in params)}"
        self._rng = np.random.default_rng(seed)
        self._buf: list[int] = []
        self._next = 0

    @classmethod
    def fixed(cls, tokens: int) -> OutputLengths:
        return cls("fixed", (float(tokens),))

    def draw(self) -> int:
        """The natural length of the next request, in tokens (1 to the response cap)."""
        if self.kind == "fixed":
            return int(self.params[0])
        if self._next >= len(self._buf):
            self._buf = self._batch().tolist()
            self._next = 0
        value = self._buf[self._next]
        self._next += 1
        return int(value)

    def _batch(self) -> np.ndarray:
        if self.kind == "lognormal":
            mean, sd = self.params
            sigma2 = math.log1p((sd / mean) ** 2)
            draws = self._rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), _BATCH)
            values = np.rint(draws)
        else:
            values = self._rng.geometric(self.params[0], _BATCH).astype(float)
        return np.clip(values, 1, MAX_RESPONSE_TOKENS).astype(np.int64)


def parse_output_lengths(spec: str, seed: int = 0) -> OutputLengths:
    """:class:`OutputLengths` from ``--output-lengths``; :class:`InputError` when bad."""
    kind, sep, rest = (s.strip() for s in spec.partition(":"))
    if not sep:
        kind, rest = "fixed", kind
    if kind not in _KINDS:
        raise InputError(
            f"unknown distribution {kind!r}; known: fixed:N, lognormal:MEAN,SD, eos:P",
            field="--output-lengths",
        )
    try:
        params = tuple(float(p) for p in rest.split(","))
    except ValueError:
        raise InputError(
            f"{spec!r}: the parameters must be numbers", field="--output-lengths"
        ) from None
    want = {"fixed": 1, "lognormal": 2, "eos": 1}[kind]
    if len(params) != want or not all(math.isfinite(p) for p in params):
        raise InputError(
            f"{spec!r}: {kind} takes {want} finite number(s)", field="--output-lengths"
        )
    if kind == "fixed" and not (params[0] >= 1 and params[0] == int(params[0])):
        raise InputError(f"{spec!r}: N must be a whole number >= 1", field="--output-lengths")
    if kind == "lognormal" and not (params[0] >= 1 and params[1] >= 0):
        raise InputError(f"{spec!r}: MEAN must be >= 1 and SD >= 0", field="--output-lengths")
    if kind == "eos" and not 0 < params[0] <= 1:
        raise InputError(f"{spec!r}: P must be in (0, 1]", field="--output-lengths")
    return OutputLengths(kind, params, seed)
