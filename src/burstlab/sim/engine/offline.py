"""Engine: one replica simulated over a whole workload known in advance."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from burstlab.sim.engine.config import EngineConfig
from burstlab.sim.engine.costs import CostModel
from burstlab.sim.engine.replica import NO_EVENTS, Replica, TelemetrySink
from burstlab.sim.engine.result import SimResult


class Engine:
    """Simulates one replica over a whole workload; see :mod:`burstlab.sim.engine`.

    ``fast`` is accepted for compatibility and changes nothing: every iteration is
    stepped by the compiled kernel, which is as fast as the closed-form runs it
    replaced were and exact by construction.
    """

    def __init__(self, config: EngineConfig, cost: CostModel, *, fast: bool = True) -> None:
        self.cfg = config
        self.cost = cost
        self.fast = fast

    def replica(
        self,
        arrival_s: Sequence[float] | np.ndarray = (),
        input_tokens: Sequence[int] | np.ndarray = (),
        output_tokens: Sequence[int] | np.ndarray = (),
        predicted_output: Sequence[int] | np.ndarray | None = None,
        *,
        token_times: bool = True,
        events: int = NO_EVENTS,
        telemetry_sink: TelemetrySink | None = None,
    ) -> Replica:
        """A replica of this engine with these requests to arrive (none: a live one)."""
        return Replica(
            self.cfg,
            self.cost,
            arrival_s=arrival_s,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            predicted=predicted_output,
            token_times=token_times,
            events=events,
            telemetry_sink=telemetry_sink,
        )

    def run(
        self,
        arrival_s: Sequence[float] | np.ndarray,
        input_tokens: Sequence[int] | np.ndarray,
        output_tokens: Sequence[int] | np.ndarray,
        predicted_output: Sequence[int] | np.ndarray | None = None,
        *,
        token_times: bool = True,
        progress: Callable[[int], None] | None = None,
        telemetry_sink: TelemetrySink | None = None,
    ) -> SimResult:
        """Simulate requests arriving at ``arrival_s`` (sorted, seconds) with these
        lengths (output lengths below 1 count as 1); returns every request's fate.

        ``token_times=False`` keeps no token times (memory then grows with the
        requests, not their tokens). ``progress`` is called now and then with the
        number of requests ended so far. ``telemetry_sink`` is given the telemetry
        rows in chunks as they are made, and the result keeps none (``steps`` counts
        them): memory then no longer grows with the steps.
        """
        rep = self.replica(
            arrival_s,
            input_tokens,
            output_tokens,
            predicted_output,
            token_times=token_times,
            telemetry_sink=telemetry_sink,
        )
        rep.progress = progress
        rep.advance(math.inf)
        if progress is not None:
            progress(rep.n)
        return rep.result()
