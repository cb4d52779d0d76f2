"""Cost models: formulas by hand, invariants (monotone, vectorised, broadcasting),
presets, KV capacity, the linear fit, and the roofline against real kernel times."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from burstlab.core.errors import InputError
from burstlab.sim import presets
from burstlab.sim.cost import (
    GPU,
    Q_TILE,
    CostSpec,
    Linear,
    ModelSpec,
    Roofline,
    fit_linear,
    kv_blocks,
    kv_bytes_per_token,
)
from burstlab.sim.engine import OK, Engine, EngineConfig

ANCHORS = Path(__file__).parents[2] / "data" / "vidur_llama2_7b_a100_attention.json"


def a100_7b(**overrides: float) -> Roofline:
    return presets.roofline("A100-80G", "Llama-2-7B", **overrides)


def prefill(chunk: float, context: float = 0.0) -> tuple[float, float, float, float]:
    """The four features of one prefill chunk of ``chunk`` tokens after ``context``."""
    return chunk, chunk * (context + (chunk + 1) / 2), 0.0, 0.0


def decode(seqs: float, context_each: float) -> tuple[float, float, float, float]:
    return 0.0, 0.0, seqs, seqs * context_each


# ---------------------------------------------------------------- presets


def llama_params(m: ModelSpec) -> int:
    """Llama architecture: untied embedding and LM head, q/k/v/o, gated MLP, 2 RMSNorms."""
    kv_dim = m.kv_heads * m.head_dim
    attn = m.hidden * m.heads * m.head_dim * 2 + m.hidden * kv_dim * 2
    mlp = 3 * m.hidden * m.intermediate
    return 2 * m.vocab * m.hidden + m.layers * (attn + mlp + 2 * m.hidden) + m.hidden


@pytest.mark.parametrize("name", sorted(presets.MODELS))
def test_model_presets_are_consistent(name: str) -> None:
    m = presets.model(name)
    assert m.name == name
    assert m.params == llama_params(m)
    assert m.head_dim == m.hidden // m.heads == 128


def test_preset_figures() -> None:
    a100, h100 = presets.gpu("A100-80G"), presets.gpu("H100-80G")
    assert (a100.flops, a100.mem_bw, a100.memory) == (312e12, 2.039e12, 80 * 2**30)
    assert (h100.flops, h100.mem_bw) == (989.4e12, 3.35e12)
    a800 = presets.gpu("A800-80G")
    assert (a800.flops, a800.mem_bw, a800.memory) == (a100.flops, a100.mem_bw, a100.memory)
    assert a800.link_bw is not None
    assert a100.link_bw is not None
    assert a800.link_bw < a100.link_bw
    assert presets.gpu("A6000").flops == 154.8e12
    assert presets.model("Llama-2-70B").kv_heads == 8
    assert presets.model("Llama-3-8B").vocab == 128256


@pytest.mark.parametrize(
    ("lookup", "name", "known"),
    [
        (presets.gpu, "B200", "A100-80G, A6000, A800-80G, H100-80G"),
        (presets.model, "gpt-5", "Llama-2-13B, Llama-2-70B, Llama-2-7B, Llama-3-8B"),
    ],
)
def test_unknown_preset_names_it_and_lists_known(
    lookup: Callable[[str], object], name: str, known: str
) -> None:
    with pytest.raises(InputError) as err:
        lookup(name)
    assert repr(name) in str(err.value)
    assert str(err.value).endswith(f"known: {known}")
    with pytest.raises(InputError, match="B200"):
        presets.roofline("B200", "Llama-2-7B")


def test_model_spec_defaults_and_checks() -> None:
    m = ModelSpec(
        name="x", layers=2, hidden=64, heads=4, kv_heads=2, intermediate=128, vocab=10, params=10**5
    )
    assert m.head_dim == 16
    good = m.model_dump()
    for bad in ({"kv_heads": 3}, {"vocab": 10**4}, {"hidden": 66, "head_dim": 0}, {"extra": 1}):
        with pytest.raises(ValidationError):
            ModelSpec.model_validate({**good, **bad})


# ---------------------------------------------------------------- KV capacity


def test_kv_bytes_per_token() -> None:
    assert kv_bytes_per_token(presets.model("Llama-2-7B")) == 524_288  # the engine's default
    assert kv_bytes_per_token(presets.model("Llama-2-70B")) == 2 * 80 * 8 * 128 * 2
    assert kv_bytes_per_token(presets.model("Llama-3-8B")) == 131_072
    # TP splits KV heads; beyond kv_heads they are replicated (one per GPU)
    assert kv_bytes_per_token(presets.model("Llama-2-70B"), tp=4) == 2 * 80 * 2 * 128 * 2
    assert kv_bytes_per_token(presets.model("Llama-2-70B"), tp=16) == 2 * 80 * 1 * 128 * 2
    with pytest.raises(InputError):
        kv_bytes_per_token(presets.model("Llama-2-7B"), tp=0)


def test_kv_blocks_llama2_7b_on_a100_matches_vllm() -> None:
    gpu, model = presets.gpu("A100-80G"), presets.model("Llama-2-7B")
    # (0.9 * 80 GiB - 13.48e9 weight bytes - 1.25 GiB) / (16 tokens * 0.5 MiB), floored:
    expected = int((0.9 * 80 * 2**30 - 6_738_415_616 * 2 - 1.25 * 2**30) // (16 * 2**19))
    assert kv_blocks(gpu, model) == expected == 7449  # what vLLM 0.2 logged for this setup
    assert kv_blocks(gpu, model, block_size=32) == 3724
    assert kv_blocks(gpu, model, gpu_memory_utilization=0.5) < 7449 // 2
    assert kv_blocks(gpu, model, activation_reserve_bytes=0) > 7449


def test_kv_blocks_edges() -> None:
    a100 = presets.gpu("A100-80G")
    seventy = presets.model("Llama-2-70B")
    assert kv_blocks(a100, seventy) == 0  # 138 GB of weights do not fit: no blocks, not negative
    # TP: a quarter of the weights, a quarter of the KV heads per GPU
    assert kv_blocks(a100, seventy, tp=4) == int(
        (0.9 * 80 * 2**30 - seventy.weight_bytes / 4 - 1.25 * 2**30) // (16 * 2 * 80 * 2 * 128 * 2)
    )
    for bad in (
        {"block_size": 0},
        {"gpu_memory_utilization": 0.0},
        {"activation_reserve_bytes": -1},
    ):
        with pytest.raises(InputError):
            kv_blocks(a100, seventy, **bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------- roofline formulas


def test_decode_formula_by_hand() -> None:
    r = a100_7b()
    p = 6_738_415_616 - 32000 * 4096  # matmul params
    weights = p * 2 / (2.039e12 * 0.8)
    kv_layer = 524_288 / 32
    # batch 4 at context 1000 each: reads 4000 + 4 tokens, writes 4, per layer
    attn_layer = max(kv_layer * (4000 + 4 + 4) / (2.039e12 * 0.8), 4 * 1.4e-6, 9e-6)
    expected = 3e-3 + max(2 * p * 4 / (312e12 * 0.6), weights) + 32 * attn_layer
    assert float(r.iteration_s(*decode(4, 1000))) == pytest.approx(expected, rel=1e-12)


def test_prefill_formula_by_hand() -> None:
    r = a100_7b()
    p = 6_738_415_616 - 32000 * 4096
    chunk, ctx = 1024, 512
    pairs = chunk * (ctx + (chunk + 1) / 2)
    flops_layer = 4 * 32 * 128 * pairs
    kv_layer_bytes = 524_288 / 32 * (pairs / Q_TILE + chunk)
    attn_layer = max(flops_layer / (312e12 * 0.2), kv_layer_bytes / (2.039e12 * 0.8))
    expected = 3e-3 + 2 * p * chunk / (312e12 * 0.6) + 32 * attn_layer
    assert float(r.iteration_s(*prefill(chunk, ctx))) == pytest.approx(expected, rel=1e-12)


def test_tensor_parallel_adds_all_reduce_and_splits_work() -> None:
    one = presets.roofline("A100-80G", "Llama-2-13B")
    two = presets.roofline("A100-80G", "Llama-2-13B", tp=2)
    feats = decode(8, 500)
    # split weights and heads, plus 2 all-reduces per layer of 8 tokens * 5120 * 2 bytes
    ar = 2 * 40 * (10e-6 + 2 * 1 / 2 * 8 * 5120 * 2 / 300e9)
    halved = one.model_copy(update={"overhead_s": 0.0})
    expected = 3e-3 + float(halved.iteration_s(*feats)) / 2 + ar
    assert float(two.iteration_s(*feats)) == pytest.approx(expected, rel=1e-12)
    # Llama-2-70B decode gets faster with more GPUs; the slower A800 link costs time
    times = [
        float(presets.roofline("A100-80G", "Llama-2-70B", tp=t).iteration_s(*decode(16, 1000)))
        for t in (2, 4, 8)
    ]
    assert times[0] > times[1] > times[2]
    big_prefill = prefill(4096)
    a800 = presets.roofline("A800-80G", "Llama-2-70B", tp=8)
    a100 = presets.roofline("A100-80G", "Llama-2-70B", tp=8)
    assert float(a800.iteration_s(*big_prefill)) > float(a100.iteration_s(*big_prefill))


def test_roofline_rejects_impossible_setups() -> None:
    no_link = GPU(name="x", flops=1e12, mem_bw=1e11, memory=10**10)
    model = presets.model("Llama-2-7B")
    Roofline(gpu=no_link, model=model)  # fine at tp=1
    with pytest.raises(ValidationError, match="link_bw"):
        Roofline(gpu=no_link, model=model, tp=2)
    with pytest.raises(ValidationError, match="divide"):
        presets.roofline("A100-80G", "Llama-2-7B", tp=3)
    with pytest.raises(ValidationError):
        presets.roofline("A100-80G", "Llama-2-7B", mfu=0.0)
    with pytest.raises(ValidationError):
        presets.roofline("A100-80G", "Llama-2-7B", mbu=1.5)
    with pytest.raises(ValidationError):
        Roofline.model_validate({"gpu": no_link, "model": model, "unknown": 1})


# ---------------------------------------------------------------- invariants

COST_MODELS = [
    a100_7b(),
    presets.roofline("H100-80G", "Llama-3-8B"),
    presets.roofline("A6000", "Llama-2-70B", tp=8),
    Linear(c0=4e-3, c_prefill=5e-5, c_attn=1e-9, c_decode=2e-5, c_ctx=2e-8),
]

counts = st.floats(min_value=0, max_value=1e6, allow_nan=False)
steps = st.floats(min_value=0, max_value=1e5, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    model_index=st.integers(0, len(COST_MODELS) - 1),
    base=st.tuples(counts, st.floats(0, 1e10), counts, st.floats(0, 1e8)),
    which=st.integers(0, 3),
    step=steps,
)
def test_monotone_in_every_argument(
    model_index: int, base: tuple[float, float, float, float], which: int, step: float
) -> None:
    """More work of any kind never takes less time."""
    cost = COST_MODELS[model_index]
    more = list(base)
    more[which] += step * (1e4 if which == 1 else 1.0)
    before, after = float(cost.iteration_s(*base)), float(cost.iteration_s(*more))
    assert after >= before
    assert before > 0


@pytest.mark.parametrize("cost", COST_MODELS, ids=lambda c: getattr(c, "kind", "?"))
def test_vectorised_equals_scalar_loop(cost: Roofline | Linear) -> None:
    rng = np.random.default_rng(7)
    n = 500
    chunk = rng.integers(0, 4096, n).astype(np.float64)
    ctx = rng.integers(0, 8192, n)
    pt, pa = chunk, chunk * (ctx + (chunk + 1) / 2)
    ds = rng.integers(0, 256, n).astype(np.float64)
    dc = ds * rng.integers(0, 4096, n)
    pt[::5] = 0  # decode-only iterations
    pa[::5] = 0
    ds[::7] = 0  # prefill-only iterations
    dc[::7] = 0
    vec = cost.iteration_s(pt, pa, ds, dc)
    assert isinstance(vec, np.ndarray)
    assert vec.dtype == np.float64
    assert vec.shape == (n,)
    loop = [float(cost.iteration_s(pt[i], pa[i], ds[i], dc[i])) for i in range(n)]
    np.testing.assert_allclose(vec, loop, rtol=1e-15, atol=0)
    # Python numbers give a 0-d array, as float() callers expect
    scalar = cost.iteration_s(100, 5000.0, 3, 3000)
    assert isinstance(scalar, np.ndarray)
    assert scalar.shape == ()


@pytest.mark.parametrize("cost", COST_MODELS, ids=lambda c: getattr(c, "kind", "?"))
def test_broadcasting(cost: Roofline | Linear) -> None:
    batch = np.arange(1, 5, dtype=np.float64)[:, None]  # (4, 1)
    ctx = np.array([0.0, 100.0, 1000.0])  # (3,)
    grid = cost.iteration_s(0.0, 0.0, batch, batch * ctx)
    assert grid.shape == (4, 3)
    for i, b in enumerate(batch[:, 0]):
        for j, c in enumerate(ctx):
            assert grid[i, j] == float(cost.iteration_s(0, 0, b, b * c))
    # the engine's fast path: a run of k decode steps with the context growing
    k = 10
    run = cost.iteration_s(np.zeros(k), np.zeros(k), np.full(k, 8.0), 800 + 8 * np.arange(k))
    assert run.shape == (k,)
    assert np.all(np.diff(run) >= 0)


def test_engine_runs_on_the_roofline() -> None:
    """The engine calls the cost model with (1,)-arrays per step and (k,)-arrays
    on its fast path; both paths must agree to the last bit of the cost model."""
    r = a100_7b()
    cfg = EngineConfig(num_blocks=kv_blocks(r.gpu, r.model), max_num_seqs=64)
    rng = np.random.default_rng(3)
    n = 200
    arrivals = np.cumsum(rng.exponential(0.2, n))
    prompts, outputs = rng.integers(10, 2000, n), rng.integers(1, 300, n)
    fast = Engine(cfg, r).run(arrivals, prompts, outputs)
    slow = Engine(cfg, r, fast=False).run(arrivals, prompts, outputs)
    assert (fast.outcome == OK).all()
    np.testing.assert_allclose(fast.end, slow.end, rtol=1e-9)
    lone = Engine(cfg, r).run([0.0], [2048], [2])
    assert lone.first[0] == pytest.approx(float(r.iteration_s(*prefill(2048))))


# ---------------------------------------------------------------- published scale


def test_llama2_7b_a100_decode_batch1_is_weight_bound() -> None:
    """Batch-1 decode at a 1k context: 13.2 GB of matmul weights at 80% of 2.039 TB/s
    (8.1 ms) + 0.3 ms of KV + 3 ms overhead = 11.4 ms. vLLM measured 11.2-11.4 ms per
    token for Llama-2-7B at batch 1 on an A100-80GB (FlightLLM/flightllm_test_demo,
    profile/README.md); NeMo/TensorRT-LLM report 234 ms for 128 in / 20 out (<= 11.7 ms
    per token). The floor is the weights at full bandwidth (6.5 ms)."""
    t = float(a100_7b().iteration_s(*decode(1, 1024)))
    assert 9e-3 < t < 14e-3
    assert t == pytest.approx(11.4e-3, rel=0.02)
    # H100: 3.35 TB/s instead of 2.039, and the same 3 ms of overhead
    h100 = float(presets.roofline("H100-80G", "Llama-2-7B").iteration_s(*decode(1, 1024)))
    assert 6e-3 < h100 < t


def test_llama2_7b_a100_prefill_is_compute_bound() -> None:
    """A 2k-token prefill: 2 * 6.6e9 * 2048 = 27 TFLOP at 60% of 312 TFLOP/s (145 ms)
    + causal attention (1.1 TFLOP at 20%, 18 ms) + 3 ms = 165 ms. vLLM's time to first
    token for 512 tokens on an A100 is 40.4 ms (same artifact), where this model says
    40.2 ms; prefill scales about linearly from there."""
    t2k = float(a100_7b().iteration_s(*prefill(2048)))
    assert 0.1 < t2k < 0.25
    assert t2k == pytest.approx(0.165, rel=0.02)
    t512 = float(a100_7b().iteration_s(*prefill(512)))
    assert t512 == pytest.approx(40.4e-3, rel=0.1)


# ---------------------------------------------------------------- against Vidur's kernels


def anchor_points() -> list[tuple[str, tuple[float, float, float, float], float]]:
    """Every anchor as (label, iteration features, measured ms per layer)."""
    data = json.loads(ANCHORS.read_text())
    points = []
    for kv, row in data["decode"].items():
        for i, ms in enumerate(row["values"]):
            b = row["b_start"] + i
            points.append((f"decode b={b} kv={kv}", decode(b, int(kv)), ms))
    for chunk, pairs in data["prefill"].items():
        for kv, ms in pairs:
            points.append((f"prefill c={chunk} kv={kv}", prefill(int(chunk), kv), ms))
    return points


def test_anchor_file_is_what_we_think() -> None:
    points = anchor_points()
    assert len(points) == 1027
    assert json.loads(ANCHORS.read_text())["source_file"].startswith("microsoft/vidur:")


def test_attention_within_stated_factors_of_vidur_kernels() -> None:
    """The anchors time one layer's attention kernel (FlashAttention, A100, TP1):
    compare ``attention_s / layers``. Decode spans batch 1-128 at contexts 32-4032;
    prefill chunks of 64-2496 tokens after up to 3,840 cached tokens.

    Stated factors, predicted/measured: every decode point within 2x (0.52-1.24:
    long contexts stream KV at ~98% of peak, above the 80% we assume); prefill
    points of at least 0.1 ms within 2.2x (0.46-1.57); every point within 4x (the
    worst, 0.26, is a 288-token chunk measured at 42 us where the roofline has
    11 us: small prefill kernels carry a per-token cost we do not model). The
    geometric mean ratio is within 10% of 1.
    """
    r = a100_7b()
    ratios: dict[str, list[float]] = {"decode": [], "prefill_big": [], "all": []}
    for label, feats, ms in anchor_points():
        predicted_ms = float(r.attention_s(*feats)) / r.model.layers * 1e3
        ratio = predicted_ms / ms
        ratios["all"].append(ratio)
        if label.startswith("decode"):
            ratios["decode"].append(ratio)
        elif ms >= 0.1:
            ratios["prefill_big"].append(ratio)
        assert 1 / 4 <= ratio <= 4, label
    decode_r, big_r, all_r = (np.array(ratios[k]) for k in ("decode", "prefill_big", "all"))
    assert decode_r.size == 755
    assert decode_r.min() >= 1 / 2
    assert decode_r.max() <= 2
    assert big_r.size > 200
    assert big_r.min() >= 1 / 2.2
    assert big_r.max() <= 2.2
    assert abs(np.exp(np.log(all_r).mean()) - 1) < 0.1


def test_attention_misses_are_small_next_to_the_iteration() -> None:
    """Where the roofline misses a kernel, the miss over all 32 layers stays below 20%
    of the modelled iteration (median 4%): attention errors do not decide the
    simulated latency."""
    r = a100_7b()
    shares = []
    for label, feats, ms in anchor_points():
        predicted = float(r.attention_s(*feats))
        miss = abs(predicted - r.model.layers * ms * 1e-3)
        share = miss / float(r.iteration_s(*feats))
        assert share < 0.2, label
        shares.append(share)
    assert float(np.median(shares)) < 0.06


# ---------------------------------------------------------------- linear model and fit


def synthetic_iterations(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chunk = rng.integers(0, 2048, n).astype(np.float64) * (rng.random(n) < 0.4)
    ctx = rng.integers(0, 4096, n)
    seqs = rng.integers(0, 256, n).astype(np.float64)
    return np.column_stack(
        [chunk, chunk * (ctx + (chunk + 1) / 2), seqs, seqs * rng.integers(1, 3000, n)]
    )


def test_fit_linear_recovers_known_coefficients() -> None:
    truth = Linear(c0=4e-3, c_prefill=6e-5, c_attn=2e-10, c_decode=3e-5, c_ctx=1.5e-8)
    x = synthetic_iterations(2000)
    y = truth.iteration_s(*x.T)
    exact = fit_linear(x, y)
    np.testing.assert_allclose(exact.coefficients(), truth.coefficients(), rtol=1e-6)
    # 2% timing noise: the attention-pair coefficient shares most of its signal with
    # the prefill-token one, so it is the least determined; predictions stay tight
    noisy_y = y * (1 + np.random.default_rng(1).normal(0, 0.02, y.size))
    noisy = fit_linear(x, noisy_y)
    got, want = noisy.coefficients(), truth.coefficients()
    np.testing.assert_allclose(got[[0, 1, 3, 4]], want[[0, 1, 3, 4]], rtol=0.05)
    assert got[2] == pytest.approx(want[2], rel=0.3)
    assert np.median(np.abs(noisy.iteration_s(*x.T) / y - 1)) < 0.005


def test_fit_linear_keeps_coefficients_non_negative() -> None:
    # time that does not depend on decode work at all, minus a little noise: plain
    # least squares would give small negative decode coefficients
    x = synthetic_iterations(500, seed=2)
    y = 5e-3 + 5e-5 * x[:, 0] - 1e-9 * x[:, 3] * (x[:, 3] < 1e5)
    fitted = fit_linear(x, np.maximum(y, 0))
    assert (fitted.coefficients() >= 0).all()
    # an all-zero column is allowed and gets 0
    x[:, 1] = 0
    assert fit_linear(x, 1e-3 + 1e-5 * x[:, 0]).c_attn == 0.0


@pytest.mark.parametrize(
    ("features", "seconds", "match"),
    [
        (np.ones((3, 3)), np.ones(3), "shape"),
        (np.ones((3, 4)), np.ones(2), "shape"),
        (np.ones((0, 4)), np.ones(0), "no iterations"),
        (np.full((2, 4), np.nan), np.ones(2), "finite"),
        (-np.ones((2, 4)), np.ones(2), "non-negative"),
    ],
)
def test_fit_linear_rejects_bad_input(
    features: np.ndarray, seconds: np.ndarray, match: str
) -> None:
    with pytest.raises(InputError, match=match):
        fit_linear(features, seconds)


def test_linear_rejects_negative_coefficients() -> None:
    with pytest.raises(ValidationError):
        Linear(c0=1e-3, c_decode=-1e-5)


# ---------------------------------------------------------------- saved configs


@pytest.mark.parametrize("cost", COST_MODELS, ids=lambda c: getattr(c, "kind", "?"))
def test_json_round_trip_through_the_kind_union(cost: Roofline | Linear) -> None:
    adapter: TypeAdapter[Roofline | Linear] = TypeAdapter(CostSpec)
    again = adapter.validate_json(cost.model_dump_json())
    assert again == cost
    assert type(again) is type(cost)
    feats = decode(32, 700)
    assert float(again.iteration_s(*feats)) == float(cost.iteration_s(*feats))
