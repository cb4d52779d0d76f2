"""Engine: one replica simulated over a whole workload known in advance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from burstlab.sim.engine.config import EngineConfig
from burstlab.sim.engine.costs import CostMemo, CostModel
from burstlab.sim.engine.replica import Replica
from burstlab.sim.engine.result import SimResult
from burstlab.sim.engine.step import step


class Engine:
    """Simulates one replica over a whole workload; see :mod:`burstlab.sim.engine`."""

    def __init__(self, config: EngineConfig, cost: CostModel, *, fast: bool = True) -> None:
        self.cfg = config
        self.cost = cost
        self.fast = fast
        self._costs: CostMemo | None = None

    def _cached_costs(self) -> CostMemo:
        """The memoised costs of ``self.cost``, shared by the live engines made from
        this engine (a fleet makes one engine per run); renewed if ``cost`` is
        replaced."""
        if self._costs is None or self._costs.model is not self.cost:
            self._costs = CostMemo(self.cost)
        return self._costs

    def replica(
        self,
        arrival_s: Sequence[float] | np.ndarray = (),
        input_tokens: Sequence[int] | np.ndarray = (),
        output_tokens: Sequence[int] | np.ndarray = (),
        predicted_output: Sequence[int] | np.ndarray | None = None,
    ) -> Replica:
        """A replica of this engine with these requests to arrive (none: a live one)."""
        return Replica(
            self.cfg,
            self._cached_costs(),
            fast=self.fast,
            arrival_s=arrival_s,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            predicted=predicted_output,
        )

    def run(
        self,
        arrival_s: Sequence[float] | np.ndarray,
        input_tokens: Sequence[int] | np.ndarray,
        output_tokens: Sequence[int] | np.ndarray,
        predicted_output: Sequence[int] | np.ndarray | None = None,
    ) -> SimResult:
        """Simulate requests arriving at ``arrival_s`` (sorted, seconds) with these
        lengths (output lengths below 1 count as 1); returns every request's fate."""
        self._costs = None  # a fresh memo: the cost model may have changed in place
        rep = self.replica(arrival_s, input_tokens, output_tokens, predicted_output)
        t = 0.0
        reqs = rep.reqs
        while True:
            rep.intake(t)
            if not rep.running and not rep.queue.count:
                if rep.next_arrival >= rep.n:
                    break
                t = max(t, reqs[rep.next_arrival].arrival)
                continue
            t = step(rep, t)
        return rep.result()
