"""Seconds per iteration: the cost-model interface the engine calls, and its compiled form."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from burstlab.sim.cost import Q_TILE, Linear, Roofline
from burstlab.sim.engine.kernel import COST_LINEAR, COST_PYTHON, COST_ROOFLINE


class CostModel(Protocol):
    """Seconds per iteration for batches described by four (broadcast) arrays.

    Elementwise and pure: each iteration's seconds depend only on its own four
    numbers (see :mod:`burstlab.sim.cost`). Plain Python floats must work too: the
    engine asks a model it cannot compile for one iteration at a time.
    """

    def iteration_s(
        self,
        prefill_tokens: np.ndarray | float,
        prefill_attn: np.ndarray | float,
        decode_seqs: np.ndarray | float,
        decode_ctx: np.ndarray | float,
    ) -> np.ndarray: ...


def compile_cost(model: CostModel) -> tuple[int, np.ndarray]:
    """The kernel's form of ``model``: its kind and parameters.

    :class:`~burstlab.sim.cost.Linear` and :class:`~burstlab.sim.cost.Roofline`
    are evaluated inside the compiled kernel by the same operations in the same
    order as their Python code, so to the same doubles; any other model is called
    from Python once per iteration (correct, and slower). Read afresh for every
    simulation, so a model changed in place between two runs is honoured.
    """
    if type(model) is Linear:
        return COST_LINEAR, np.array(
            [model.c0, model.c_prefill, model.c_attn, model.c_decode, model.c_ctx]
        )
    if type(model) is Roofline:
        s_gemm, s_weights, s_pair, s_kv, ar_fixed, s_ar = model._constants()
        return COST_ROOFLINE, np.array(
            [
                model.overhead_s,
                s_gemm,
                s_weights,
                s_pair,
                s_kv,
                ar_fixed,
                s_ar,
                float(model.model.layers),
                model.kernel_floor_s,
                model.attn_seq_s,
                float(Q_TILE),
            ]
        )
    return COST_PYTHON, np.zeros(0)
