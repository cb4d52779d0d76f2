"""Seconds per iteration: the cost-model interface the engine calls, and its memo."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np


class CostModel(Protocol):
    """Seconds per iteration for batches described by four (broadcast) arrays.

    Elementwise and pure: each iteration's seconds depend only on its own four
    numbers, so the engine may reuse a value it computed before (:class:`CostMemo`)
    within one simulation.
    """

    def iteration_s(
        self,
        prefill_tokens: np.ndarray,
        prefill_attn: np.ndarray,
        decode_seqs: np.ndarray,
        decode_ctx: np.ndarray,
    ) -> np.ndarray: ...


class CostMemo:
    """Iteration seconds from ``model``, memoised (results are unchanged: a cost
    model is elementwise and pure, so a stored value is what a new call returns).

    An array call costs tens of microseconds of numpy overhead whatever its
    length, far more than its arithmetic, and every closed-form run needs one; a
    single step passes Python floats (the models' plain-float path, about 1.5 us
    for :class:`~burstlab.sim.cost.Roofline`), and is still kept. Here
    decode-only iterations read a table per batch size, indexed by decode context
    in tokens and grown (by doubling, one call) to the largest context asked for;
    other iterations are kept by their exact four numbers. Both stop growing at a
    bound (then the model is called directly), so memory stays under ~40 MB. One
    lives as long as a simulation (a model changed in place between two runs is
    read afresh).
    """

    #: Most table entries (float64) over all batch sizes, and most kept steps.
    TABLE_LIMIT = 1 << 22
    STEP_LIMIT = 1 << 16

    def __init__(self, model: CostModel) -> None:
        self.model = model
        self.tables: dict[int, np.ndarray] = {}
        self.table_size = 0
        self.steps: dict[tuple[int, float, int, int], float] = {}

    def decode_run(self, batch: int, ctx0: int, k: int) -> np.ndarray:
        """Seconds of ``k`` decode-only iterations of ``batch`` sequences whose
        contexts total ``ctx0`` tokens in the first and grow by ``batch`` each time."""
        last = ctx0 + batch * (k - 1)
        table = self.tables.get(batch)
        if table is None or table.size <= last:
            table = self._grow(batch, table, last)
        if table is not None:
            return table[ctx0 : last + 1 : batch]
        ctx = ctx0 + batch * np.arange(k, dtype=np.float64)
        return self.model.iteration_s(np.zeros(k), np.zeros(k), np.full(k, float(batch)), ctx)

    def _grow(self, batch: int, table: np.ndarray | None, last: int) -> np.ndarray | None:
        """The table of ``batch`` extended past context ``last`` (None: over the bound)."""
        old = 0 if table is None else table.size
        size = max(2 * old, last + 1, 1024)
        if self.table_size + size - old > self.TABLE_LIMIT:
            return None
        n = size - old
        ctx = np.arange(old, size, dtype=np.float64)
        more = self.model.iteration_s(np.zeros(n), np.zeros(n), np.full(n, float(batch)), ctx)
        table = (
            np.asarray(more, dtype=np.float64) if table is None else np.concatenate([table, more])
        )
        self.tables[batch] = table
        self.table_size += n
        return table

    def step(self, prefill_tokens: int, prefill_attn: float, batch: int, ctx: int) -> float:
        """Seconds of one iteration: prefill tokens, prefill attention pairs, decoding
        sequences and their total context in tokens."""
        if prefill_tokens == 0 and batch > 0:
            return float(self.decode_run(batch, ctx, 1)[0])
        key = (prefill_tokens, prefill_attn, batch, ctx)
        seconds = self.steps.get(key)
        if seconds is None:
            # Python floats, not 1-element arrays: the cost models evaluate numbers
            # in plain floats (the same doubles), several times faster.
            iteration_s: Callable[..., np.ndarray] = self.model.iteration_s
            seconds = float(
                iteration_s(float(prefill_tokens), float(prefill_attn), float(batch), float(ctx))
            )
            if len(self.steps) < self.STEP_LIMIT:
                self.steps[key] = seconds
        return seconds
