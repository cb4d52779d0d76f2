"""The cost models' plain-float path and kept constants give the same doubles as
the numpy formulas they replace on the engine's hot path.

``reference_*`` below are verbatim copies of the formulas as they stood before the
float path (numpy throughout, constants derived on every call). Every comparison
is bit for bit (``bits``), not approximate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from burstlab.sim import presets
from burstlab.sim.cost import GPU, Q_TILE, Linear, Roofline, _max, kv_bytes_per_token


def reference_constants(r: Roofline) -> tuple[float, float, float, float, float, float]:
    m, g, tp = r.model, r.gpu, r.tp
    gemm_s_per_token = 2 * m.matmul_params / tp / (g.flops * r.mfu)
    weights_s = m.matmul_params * m.dtype_bytes / tp / (g.mem_bw * r.mbu)
    attn_s_per_pair = 4 * (m.heads // tp) * m.head_dim / (g.flops * r.attn_mfu)
    kv_s_per_token = kv_bytes_per_token(m, tp) / m.layers / (g.mem_bw * r.mbu)
    ar_fixed = ar_s_per_token = 0.0
    if tp > 1 and g.link_bw is not None:
        ar_fixed = 2 * m.layers * r.allreduce_latency_s
        ring = 2 * (tp - 1) / tp * m.hidden * m.dtype_bytes / g.link_bw
        ar_s_per_token = 2 * m.layers * ring
    return gemm_s_per_token, weights_s, attn_s_per_pair, kv_s_per_token, ar_fixed, ar_s_per_token


def arrays(*args: Any) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.float64) for a in args]


def reference_attention(r: Roofline, *args: Any) -> np.ndarray:
    pt, pa, ds, dc = arrays(*args)
    _, _, s_pair, s_kv, _, _ = reference_constants(r)
    pairs = pa + dc + ds
    kv_tokens = dc + ds + pa / Q_TILE + pt + ds
    floor = np.where(pairs > 0, r.kernel_floor_s, 0.0)
    work = np.maximum(np.maximum(pairs * s_pair, kv_tokens * s_kv), ds * r.attn_seq_s)
    layer = np.maximum(work, floor)
    return np.asarray(r.model.layers * layer, dtype=np.float64)


def reference_roofline(r: Roofline, *args: Any) -> np.ndarray:
    pt, pa, ds, dc = arrays(*args)
    s_gemm, s_weights, _, _, ar_fixed, s_ar = reference_constants(r)
    tokens = pt + ds
    linear = np.maximum(tokens * s_gemm, s_weights)
    total = r.overhead_s + linear + reference_attention(r, pt, pa, ds, dc)
    if ar_fixed:
        total = total + ar_fixed + tokens * s_ar
    return np.asarray(total, dtype=np.float64)


def reference_linear(c: Linear, *args: Any) -> np.ndarray:
    pt, pa, ds, dc = arrays(*args)
    total = c.c0 + c.c_prefill * pt + c.c_attn * pa + c.c_decode * ds + c.c_ctx * dc
    return np.asarray(total, dtype=np.float64)


def bits(x: Any) -> np.ndarray:
    """The float64 bit patterns of ``x`` (so that 0.0 and -0.0 differ, NaN equals itself)."""
    return np.ascontiguousarray(x, dtype=np.float64).view(np.int64)


def same(got: Any, expected: np.ndarray) -> None:
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.float64
    assert got.shape == expected.shape
    assert np.array_equal(bits(got), bits(expected))


def rooflines() -> list[Roofline]:
    """Every GPU and model preset at every tensor-parallel degree it allows, and a
    few with efficiency factors and latencies off their defaults."""
    out = []
    for g in presets.GPUS:
        for m in presets.MODELS:
            for tp in (1, 2, 4, 8):
                try:
                    out.append(presets.roofline(g, m, tp=tp))
                except ValueError:  # pydantic: no link_bw, or tp does not divide heads
                    continue
    out.append(
        presets.roofline(
            "A100-80G",
            "Llama-2-7B",
            mfu=0.37,
            attn_mfu=0.11,
            mbu=0.93,
            overhead_s=1.7e-3,
            kernel_floor_s=0.0,
            attn_seq_s=0.0,
        )
    )
    out.append(presets.roofline("H100-80G", "Llama-2-70B", tp=4, allreduce_latency_s=0.0))
    return out


ROOFLINES = rooflines()


def linears() -> list[Linear]:
    rng = np.random.default_rng(7)
    out = [Linear(c0=0.004, c_prefill=5e-5, c_attn=1e-9, c_decode=2e-5, c_ctx=2e-8), Linear(c0=0)]
    for _ in range(20):
        c = rng.random(5) * np.array([1e-2, 1e-4, 1e-8, 1e-4, 1e-7])
        names = ["c0", "c_prefill", "c_attn", "c_decode", "c_ctx"]
        out.append(Linear(**dict(zip(names, c.tolist(), strict=True))))
    return out


LINEARS = linears()


def features(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(4, n)`` iterations: engine-like ones (decode-only, prefill-only, mixed
    and empty; counts as floats, attention pairs halves) and, in a quarter of the
    columns, arbitrary non-negative reals, whose sums round (engine counts add up
    exactly, so they alone would not notice operations done in another order)."""
    chunk = rng.integers(0, 8193, n).astype(np.float64)
    context = rng.integers(0, 32_768, n).astype(np.float64)
    seqs = rng.integers(0, 513, n).astype(np.float64)
    ctx = seqs * rng.integers(1, 8192, n)
    kind = rng.integers(0, 4, n)
    chunk[kind == 0] = 0.0  # decode only
    seqs[kind == 1] = ctx[kind == 1] = 0.0  # prefill only
    empty = rng.random(n) < 0.02
    chunk[empty] = seqs[empty] = ctx[empty] = context[empty] = 0.0
    pairs = chunk * (context + (chunk + 1) / 2)
    out = np.stack([chunk, pairs, seqs, ctx])
    real = rng.random(n) < 0.25
    scale = np.array([[8192.0], [1e8], [512.0], [4e6]])
    out[:, real] = rng.random((4, int(real.sum()))) * scale
    return out


def scalar_forms(row: np.ndarray, rng: np.random.Generator) -> list[tuple[Any, ...]]:
    """One iteration's four numbers as Python floats, Python ints where they are
    whole, and numpy float64 scalars, mixed."""
    as_float = tuple(float(v) for v in row)
    as_int = tuple(int(v) if v == int(v) else float(v) for v in row)
    as_np = tuple(np.float64(v) for v in row)
    pick = rng.integers(0, 3, 4)
    mixed = tuple((as_float, as_int, as_np)[p][i] for i, p in enumerate(pick))
    return [as_float, as_int, as_np, mixed]


@pytest.mark.parametrize("r", ROOFLINES, ids=lambda r: f"{r.gpu.name}-{r.model.name}-tp{r.tp}")
def test_roofline_scalars_match_the_numpy_formulas_bit_for_bit(r: Roofline) -> None:
    rng = np.random.default_rng(ROOFLINES.index(r))
    for row in features(rng, 300).T:
        expected = reference_roofline(r, *row)
        expected_attn = reference_attention(r, *row)
        for args in scalar_forms(row, rng):
            same(r.iteration_s(*args), expected)
            same(r.attention_s(*args), expected_attn)


@pytest.mark.parametrize("r", ROOFLINES, ids=lambda r: f"{r.gpu.name}-{r.model.name}-tp{r.tp}")
def test_roofline_arrays_match_the_numpy_formulas_bit_for_bit(r: Roofline) -> None:
    rng = np.random.default_rng(1)
    pt, pa, ds, dc = features(rng, 2000)
    same(r.iteration_s(pt, pa, ds, dc), reference_roofline(r, pt, pa, ds, dc))
    same(r.attention_s(pt, pa, ds, dc), reference_attention(r, pt, pa, ds, dc))
    # Broadcasting, 2-d, a scalar among arrays, lists, and a size-1 array.
    grid = (0.0, 0.0, np.arange(1, 9.0)[:, None], np.arange(0, 4096.0, 512)[None, :] * 8)
    same(r.iteration_s(*grid), reference_roofline(r, *grid))
    mixed = (pt[:5].tolist(), 1000.0, ds[:5], np.float64(7))
    same(r.iteration_s(*mixed), reference_roofline(r, *mixed))
    one = [np.array([v]) for v in (64.0, 2080.0, 5.0, 4000.0)]
    same(r.iteration_s(*one), reference_roofline(r, *one))


@pytest.mark.parametrize("c", LINEARS, ids=range(len(LINEARS)))
def test_linear_matches_the_numpy_formula_bit_for_bit(c: Linear) -> None:
    rng = np.random.default_rng(2)
    feats = features(rng, 500)
    same(c.iteration_s(*feats), reference_linear(c, *feats))
    for row in feats[:, :200].T:
        expected = reference_linear(c, *row)
        for args in scalar_forms(row, rng):
            same(c.iteration_s(*args), expected)


def test_float_max_is_numpy_maximum_on_ties_signed_zeros_nan_and_inf() -> None:
    special = [0.0, -0.0, 1.0, -1.0, 2.5e-300, math.inf, -math.inf, math.nan]
    for a in special:
        for b in special:
            assert bits(_max(a, b)) == bits(np.maximum(np.float64(a), np.float64(b)))


def test_special_inputs_take_both_paths_to_the_same_doubles() -> None:
    """Inputs are counts, but NaN, infinities and -0.0 still agree with numpy."""
    r = presets.roofline("A100-80G", "Llama-2-7B")
    c = LINEARS[0]
    special = [0.0, -0.0, 1.0, math.inf, math.nan]
    for pt in special:
        for pa in special:
            for ds in special:
                for dc in special:
                    args = (pt, pa, ds, dc)
                    same(r.iteration_s(*args), reference_roofline(r, *args))
                    same(r.attention_s(*args), reference_attention(r, *args))
                    same(c.iteration_s(*args), reference_linear(c, *args))


def test_kept_constants_follow_every_change_of_the_fields() -> None:
    """Assignments in place and ``model_copy(update=...)`` (which copies the kept
    constants along with the ``__dict__``) are read afresh, field by field."""
    base = presets.roofline("H100-80G", "Llama-2-70B", tp=4)
    rows = [  # compute-bound prefill, memory-bound decode, a weight-bound single decode
        (4096.0, 4096 * (8192 + 4097 / 2), 0.0, 0.0),
        (0.0, 0.0, 256.0, 256 * 4000.0),
        (0.0, 0.0, 1.0, 100.0),
    ]
    changes: dict[str, Any] = {
        "mfu": 0.45,
        "attn_mfu": 0.01,
        "mbu": 0.7,
        "tp": 8,
        "allreduce_latency_s": 25e-6,
        "overhead_s": 1e-3,
        "kernel_floor_s": 1.0,
        "attn_seq_s": 1e-3,
        "gpu": GPU(name="fast", flops=2e15, mem_bw=5e12, memory=80 << 30, link_bw=9e11),
        "model": presets.model("Llama-2-13B"),
    }
    for name, value in changes.items():
        r = base.model_copy()
        before = [r.iteration_s(*row) for row in rows]  # keeps the old fields' constants
        copied = r.model_copy(update={name: value})
        setattr(r, name, value)
        for changed in (r, copied):
            assert changed._constants() == reference_constants(changed)
            after = [changed.iteration_s(*row) for row in rows]
            for row, seconds in zip(rows, after, strict=True):
                same(seconds, reference_roofline(changed, *row))
                same(changed.attention_s(*row), reference_attention(changed, *row))
            assert not np.array_equal(after, before), name
        setattr(r, name, getattr(base, name))
        for row, seconds in zip(rows, before, strict=True):
            same(r.iteration_s(*row), seconds)


def test_kept_constants_leave_equality_dumps_and_copies_alone() -> None:
    fresh = presets.roofline("A100-80G", "Llama-2-7B")
    used = presets.roofline("A100-80G", "Llama-2-7B")
    used.iteration_s(1.0, 1.0, 0.0, 0.0)
    assert used == fresh
    assert used.model_dump() == fresh.model_dump()
    assert used.model_dump_json() == fresh.model_dump_json()
    assert Roofline.model_validate_json(used.model_dump_json()) == fresh
    assert used.model_copy(deep=True) == fresh
