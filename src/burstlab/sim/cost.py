"""How long one engine iteration takes: the simulator's swappable cost models.

The engine (:mod:`burstlab.sim.engine`) describes every iteration by four numbers
and asks a cost model for its duration. Between batch-composition events it asks
for many iterations at once, so every model here is evaluated on numpy arrays:

``prefill_tokens``
    tokens prefilled this iteration (sum of the prefill chunks' lengths).
``prefill_attn``
    attention token pairs of those chunks,
    ``sum(chunk_len * (context_before + (chunk_len + 1) / 2))``: each new token
    attends to the context already cached and, causally, to the chunk up to itself.
``decode_seqs``
    sequences decoding one token this iteration.
``decode_ctx``
    sum of those sequences' context lengths (tokens already in their KV cache).

All four are float64 token (or sequence) counts, non-negative, and broadcast
against each other like numpy arguments; plain Python numbers work too. The
result is a float64 ``ndarray`` of seconds with the broadcast shape (0-d for
scalar arguments, so ``float(result)`` works). Scalar arguments (Python ``int``
or ``float``, ``np.float64``) are evaluated in plain floats, about 1.5 us a call
instead of 13 us of numpy overhead, by the same operations in the same order, so
the same doubles as the array path. Inputs are not validated: this is the
simulator's hot path, and the engine only passes counts.

Two models:

- :class:`Roofline`: analytical, from a :class:`GPU` datasheet and a
  :class:`ModelSpec`, with efficiency factors; needs no measurement.
- :class:`Linear`: five non-negative coefficients, fitted by :func:`fit_linear`
  from per-iteration timings of a real engine (``burstlab calibrate``).

What an iteration asks of the GPU, for utilisation (:mod:`burstlab.sim.utilisation`):
:meth:`Roofline.work` gives its FLOPs and HBM bytes. :class:`Linear` has no
datasheet, so it knows durations only: with it, utilisation is the busy share alone.

And the KV-cache capacity an engine would get on a GPU: :func:`kv_bytes_per_token`
and :func:`kv_blocks`. GPU and model presets live in :mod:`burstlab.sim.presets`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.optimize import nnls

from burstlab.core.errors import InputError

GiB = 1 << 30

#: Query rows a FlashAttention-style prefill kernel processes per tile. Every tile
#: streams the keys and values it attends to from HBM once, so a prefill chunk
#: reads about ``attention pairs / Q_TILE`` tokens' worth of KV cache. 128 is
#: FlashAttention-2's forward tile height on A100/H100 for head_dim 128.
Q_TILE = 128


class GPU(BaseModel):
    """One accelerator's datasheet figures, in SI units.

    ``flops`` is the peak *dense* tensor-core rate for the dtype the model runs in
    (FLOP/s; no 2:4 sparsity), ``mem_bw`` the HBM/GDDR bandwidth (bytes/s) and
    ``memory`` the capacity (bytes, as the driver reports it: that is what
    ``gpu_memory_utilization`` multiplies). ``link_bw`` is the GPU-to-GPU
    bandwidth in one direction (bytes/s; NVLink, or PCIe where there is none),
    used only for tensor-parallel all-reduces; ``None`` means unknown, and then
    ``tp > 1`` is refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    flops: float = Field(gt=0)
    mem_bw: float = Field(gt=0)
    memory: int = Field(gt=0)
    link_bw: float | None = Field(None, gt=0)


class ModelSpec(BaseModel):
    """A dense decoder-only transformer (Llama family) as the cost model sees it.

    Sizes are counts; ``params`` is the total parameter count including the
    embedding table and the LM head; ``dtype_bytes`` is the size of one weight and
    one KV-cache element (2 for fp16/bf16). ``head_dim`` defaults to
    ``hidden // heads``. ``intermediate`` (the MLP width) is descriptive: the
    FLOP count comes from ``params``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(0, ge=0, description="0: hidden // heads")
    intermediate: int = Field(gt=0)
    vocab: int = Field(gt=0)
    params: int = Field(gt=0)
    dtype_bytes: int = Field(2, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.head_dim == 0:
            if self.hidden % self.heads:
                raise ValueError("hidden is not a multiple of heads; give head_dim")
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        if self.heads % self.kv_heads:
            raise ValueError("heads must be a multiple of kv_heads")
        if self.params <= self.vocab * self.hidden:
            raise ValueError("params must exceed the embedding table (vocab * hidden)")
        return self

    @property
    def matmul_params(self) -> int:
        """Parameters that multiply every token: all but the input embedding
        table, which is a row lookup (no FLOPs, and only the looked-up rows are read)."""
        return self.params - self.vocab * self.hidden

    @property
    def weight_bytes(self) -> int:
        """Bytes the weights occupy in GPU memory (all GPUs together)."""
        return self.params * self.dtype_bytes


def kv_bytes_per_token(model: ModelSpec, tp: int = 1) -> int:
    """KV-cache bytes one token occupies on one GPU:
    ``2 (K and V) * layers * kv_heads_per_gpu * head_dim * dtype_bytes``.

    With tensor parallelism the KV heads are split over ``tp`` GPUs
    (``ceil(kv_heads / tp)`` each; replicated when ``tp`` exceeds ``kv_heads``).
    For Llama-2-7B in fp16 at ``tp=1`` this is 524,288 bytes (0.5 MiB).
    """
    if tp < 1:
        raise InputError(f"tp must be at least 1, got {tp}")
    kv_heads = -(-model.kv_heads // tp)
    return 2 * model.layers * kv_heads * model.head_dim * model.dtype_bytes


def kv_blocks(
    gpu: GPU,
    model: ModelSpec,
    block_size: int = 16,
    *,
    gpu_memory_utilization: float = 0.9,
    activation_reserve_bytes: int = 5 * GiB // 4,
    tp: int = 1,
) -> int:
    """Paged-KV blocks a vLLM-like engine gets on each of ``tp`` GPUs (count).

    ``floor((memory * util - weight_bytes / tp - reserve) / (block_size * kv))``,
    at least 0, where ``kv`` is :func:`kv_bytes_per_token` and ``reserve`` is what
    the engine keeps for activations and the runtime (bytes). vLLM measures that
    reserve with a profiling forward pass at its token budget; the default,
    1.25 GiB, reproduces the 7,449 blocks vLLM 0.2 logged for Llama-2-7B (fp16,
    max_model_len 4096) on an A100-80GB at utilisation 0.9
    (FlightLLM/flightllm_test_demo: profile/README.md). A larger
    ``max_num_batched_tokens`` needs a larger reserve; to match a real engine,
    pass the block count it logs to the engine config instead.
    """
    if block_size < 1:
        raise InputError(f"block_size must be at least 1, got {block_size}")
    if not 0 < gpu_memory_utilization <= 1:
        raise InputError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    if activation_reserve_bytes < 0:
        raise InputError(
            f"activation_reserve_bytes must be non-negative, got {activation_reserve_bytes}"
        )
    per_block = block_size * kv_bytes_per_token(model, tp)
    free = gpu.memory * gpu_memory_utilization - model.weight_bytes / tp
    return max(math.floor((free - activation_reserve_bytes) / per_block), 0)


def _arrays(*args: Any) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.float64) for a in args]


#: Argument types the models evaluate in plain Python floats: the engine asks for
#: one iteration at a time between batch changes, and numpy's per-call overhead on
#: 0-d inputs (tens of microseconds over a formula) would dominate. ``np.float64``
#: subclasses ``float``. ``float(x)`` of each is the value ``np.asarray(x,
#: dtype=np.float64)`` holds (both round an int to the nearest double).
_SCALAR_TYPES = frozenset({float, int, np.float64})


#: ``np.maximum`` or :func:`_max`: the one operation the two paths spell differently.
Maximum = Callable[[Any, Any], Any]


def _inputs(a: Any, b: Any, c: Any, d: Any) -> tuple[Any, Any, Any, Any, Maximum]:
    """The four arguments as Python floats with :func:`_max` when all are plain
    numbers, else as float64 arrays with ``np.maximum``."""
    t = _SCALAR_TYPES
    if type(a) in t and type(b) in t and type(c) in t and type(d) in t:
        return float(a), float(b), float(c), float(d), _max
    pa, pb, pc, pd = _arrays(a, b, c, d)
    return pa, pb, pc, pd, np.maximum


#: :meth:`Roofline._constants`: six rates and times in seconds.
_Constants = tuple[float, float, float, float, float, float]


def _max(a: float, b: float) -> float:
    """``np.maximum(a, b)`` on two floats, bit for bit: ``b`` on a tie (so on
    ``0.0`` against ``-0.0`` too), and NaN when either is NaN."""
    return a if a > b or math.isnan(a) else b


class Work(NamedTuple):
    """What some iterations ask of one GPU: model FLOPs and HBM bytes moved.

    Counts only what the roofline counts: the linear layers' and attention's
    multiply-adds (2 FLOPs each), and reads of the weights and of the KV cache plus
    writes of new KV entries. Activations, norms, sampling and all-reduces are not
    counted, so an MFU or MBU from these is a lower bound of the real kernels'; the
    LM head is counted for every token, as :class:`Roofline` times it (about 2% of
    a Llama-2-7B prefill more than vLLM computes).
    """

    #: FLOPs one GPU performs (each of a replica's ``tp`` GPUs does the same).
    flops: np.ndarray
    #: Bytes one GPU moves between HBM and its cores.
    bytes: np.ndarray


class Roofline(BaseModel):
    """Analytical iteration time from datasheet figures (no measurements needed).

    One iteration runs every layer once over the batch. Its time, per GPU, is::

        t = overhead_s + t_linear + t_attn + t_allreduce

    **Linear layers** (QKV/O projections, MLP, LM head), with ``T =
    prefill_tokens + decode_seqs`` tokens and ``P = model.matmul_params``::

        flops_linear = 2 * P * T / tp                      # one multiply-add per weight per token
        bytes_linear = P * dtype_bytes / tp                # every weight read once per iteration
        t_linear     = max(flops_linear / (gpu.flops * mfu),
                           bytes_linear / (gpu.mem_bw * mbu))

    Small batches are bound by reading the weights, large ones by compute. The LM
    head is counted for every token (vLLM computes logits only for sampled
    positions; the excess is about 2% of a Llama-2-7B prefill).

    **Attention** (scores and weighted values; its projections are linear layers),
    per layer, with ``pairs = prefill_attn + decode_ctx + decode_seqs`` query-key
    pairs (a decoding token also attends to itself) and ``kv =
    kv_bytes_per_token(model, tp) / layers`` bytes per token per layer::

        flops_layer = 4 * (heads / tp) * head_dim * pairs    # QK^T and PV, 2 FLOPs per MAC
        kv_read     = decode_ctx + decode_seqs + prefill_attn / Q_TILE
        kv_written  = prefill_tokens + decode_seqs
        t_layer     = max(flops_layer / (gpu.flops * attn_mfu),
                          kv * (kv_read + kv_written) / (gpu.mem_bw * mbu),
                          decode_seqs * attn_seq_s,
                          kernel_floor_s if pairs > 0 else 0)
        t_attn      = layers * t_layer

    Decoding reads every cached token once per sequence (memory-bound); a prefill
    tile of :data:`Q_TILE` queries shares one read of its keys (compute-bound).
    FlashAttention-style kernels reach a smaller fraction of peak than GEMMs,
    hence ``attn_mfu``. A paged decode kernel spends a fixed time per sequence
    (its thread blocks, the query load, the softmax reduction) that dominates
    short contexts: ``attn_seq_s``. And no kernel is shorter than
    ``kernel_floor_s``.

    **Tensor parallelism** (``tp > 1``): weights, heads and KV heads are split over
    ``tp`` GPUs, which run in lock step; each layer adds two all-reduces of the
    ``T * hidden * dtype_bytes`` activations, as a ring::

        t_allreduce = 2 * layers * (allreduce_latency_s
                                    + 2 * (tp - 1) / tp * T * hidden * dtype_bytes / gpu.link_bw)

    Summing the parts, rather than taking one max over the whole iteration, reflects
    that the kernels run one after another: a compute-bound prefill GEMM does not
    hide the memory-bound decode attention of the same batch.

    Units: seconds, FLOP/s and bytes/s; ``mfu``, ``attn_mfu`` and ``mbu`` are
    fractions of the datasheet peak. An all-zero batch still costs
    ``overhead_s`` plus one weight pass (the engine never runs an empty step).
    The kernel-level defaults (``attn_*``, ``kernel_floor_s``) were read off an
    A100; on other GPUs they are a guess of the right order.

    Defaults and where they come from:

    - ``mfu = 0.6``: large bf16 GEMMs reach 60-70% of A100/H100 dense peak; with it
      this model gives 40 ms for a 512-token Llama-2-7B prefill on an A100 (36 ms
      of it GEMMs), where vLLM took 40.4 ms to the first token (FlightLLM artifact,
      FlightLLM/flightllm_test_demo: profile/README.md).
    - ``mbu = 0.8``: the usual planning figure for streaming weights from HBM.
      Vidur's long-context decode kernels stream KV at up to 98% of 2.039 TB/s,
      so this model overestimates them by up to 1.25x.
    - ``overhead_s = 3 ms``: scheduler, sampling, and the dozens of small
      per-layer kernels (norms, rotary, activation, residual) that neither FLOPs nor
      bytes account for. vLLM decodes Llama-2-7B at batch 1 on an A100-80GB in
      11.2-11.4 ms per token at contexts of 128-2,000 tokens (same artifact);
      its weights at 80% of 2.039 TB/s take 8.1 ms, which leaves about 3 ms.
    - ``attn_mfu = 0.2``, ``attn_seq_s = 1.4 us`` and ``kernel_floor_s = 9 us``:
      read off Vidur's A100 profile of Llama-2-7B attention kernels
      (microsoft/vidur, MIT): prefill attention reaches 10-30% of peak there,
      decode at context 32 grows by 1.4 us per sequence per layer, and the
      shortest kernel takes 9 us. The tests compare this model with those kernels.
    - ``allreduce_latency_s = 10 us``: a small-message all-reduce over NVLink
      with vLLM's custom kernel takes 9-10 us on H100 (sgl-project/sglang#2904).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["roofline"] = "roofline"
    gpu: GPU
    model: ModelSpec
    tp: int = Field(1, ge=1)
    mfu: float = Field(0.6, gt=0, le=1)
    attn_mfu: float = Field(0.2, gt=0, le=1)
    mbu: float = Field(0.8, gt=0, le=1)
    overhead_s: float = Field(3e-3, ge=0)
    kernel_floor_s: float = Field(9e-6, ge=0)
    attn_seq_s: float = Field(1.4e-6, ge=0)
    allreduce_latency_s: float = Field(10e-6, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Roofline:
        if self.tp > 1 and self.gpu.link_bw is None:
            raise ValueError(f"tp={self.tp} needs gpu.link_bw (GPU-to-GPU bytes/s)")
        if self.model.heads % self.tp:
            raise ValueError(f"tp={self.tp} does not divide heads={self.model.heads}")
        return self

    def _constants(self) -> _Constants:
        """Seconds per linear-layer token, for one weight pass, per attention pair
        per layer, per KV token per layer, per iteration of all-reduce latency, and
        per token all-reduced.

        Kept in the instance ``__dict__`` with the fields they derive from, and
        derived afresh when any of those differs (a field assigned in place, a
        ``model_copy(update=...)``, which copies the ``__dict__``): the engine asks
        for one iteration at a time, and deriving them costs more than the
        iteration's formula. Pydantic ignores ``__dict__`` keys that are not
        fields (as it does for ``functools.cached_property``): equality, dumps and
        the schema are unchanged. ``gpu`` and ``model`` are frozen, so comparing
        them (by identity first) covers their figures.
        """
        key = (
            self.gpu,
            self.model,
            self.tp,
            self.mfu,
            self.attn_mfu,
            self.mbu,
            self.allreduce_latency_s,
        )
        kept: tuple[tuple[Any, ...], _Constants] | None = self.__dict__.get("_constants_kept")
        if kept is not None and kept[0] == key:
            return kept[1]
        m, g, tp = self.model, self.gpu, self.tp
        gemm_s_per_token = 2 * m.matmul_params / tp / (g.flops * self.mfu)
        weights_s = m.matmul_params * m.dtype_bytes / tp / (g.mem_bw * self.mbu)
        attn_s_per_pair = 4 * (m.heads // tp) * m.head_dim / (g.flops * self.attn_mfu)
        kv_s_per_token = kv_bytes_per_token(m, tp) / m.layers / (g.mem_bw * self.mbu)
        ar_fixed = ar_s_per_token = 0.0
        if tp > 1 and g.link_bw is not None:
            ar_fixed = 2 * m.layers * self.allreduce_latency_s
            ring = 2 * (tp - 1) / tp * m.hidden * m.dtype_bytes / g.link_bw
            ar_s_per_token = 2 * m.layers * ring
        constants = (
            float(gemm_s_per_token),
            float(weights_s),
            float(attn_s_per_pair),
            float(kv_s_per_token),
            float(ar_fixed),
            float(ar_s_per_token),
        )
        self.__dict__["_constants_kept"] = (key, constants)
        return constants

    def attention_s(
        self,
        prefill_tokens: Any,
        prefill_attn: Any,
        decode_seqs: Any,
        decode_ctx: Any,
    ) -> np.ndarray:
        """Seconds the attention kernels of one iteration take, all layers together
        (``t_attn`` in the class docstring); divide by ``model.layers`` for one layer."""
        pt, pa, ds, dc, maximum = _inputs(prefill_tokens, prefill_attn, decode_seqs, decode_ctx)
        return np.asarray(self._attention(pt, pa, ds, dc, maximum), dtype=np.float64)

    def _attention(self, pt: Any, pa: Any, ds: Any, dc: Any, maximum: Maximum) -> Any:
        """:meth:`attention_s` on four floats (``maximum`` :func:`_max`) or four
        float64 arrays (``np.maximum``): one formula, the same operations in the
        same order either way, so the same doubles (seconds)."""
        _, _, s_pair, s_kv, _, _ = self._constants()
        pairs = pa + dc + ds
        kv_tokens = dc + ds + pa / Q_TILE + pt + ds
        floor = self.kernel_floor_s * (pairs > 0)  # no kernel runs without pairs
        work = maximum(maximum(pairs * s_pair, kv_tokens * s_kv), ds * self.attn_seq_s)
        return self.model.layers * maximum(work, floor)

    def iteration_s(
        self,
        prefill_tokens: Any,
        prefill_attn: Any,
        decode_seqs: Any,
        decode_ctx: Any,
    ) -> np.ndarray:
        """Seconds one iteration takes (see the class docstring for the formulas and
        the module docstring for the arguments). Python numbers take a plain-float
        path that gives the same doubles as the array path."""
        pt, pa, ds, dc, maximum = _inputs(prefill_tokens, prefill_attn, decode_seqs, decode_ctx)
        return np.asarray(self._iteration(pt, pa, ds, dc, maximum), dtype=np.float64)

    def work(
        self,
        prefill_tokens: Any,
        prefill_attn: Any,
        decode_seqs: Any,
        decode_ctx: Any,
        iterations: Any = 1,
    ) -> Work:
        """FLOPs and HBM bytes of ``iterations`` iterations on **one GPU**, whose
        four batch numbers (the module docstring's) sum to the arguments: the class
        docstring's work terms, without efficiency factors or overheads::

            flops = 2 * P * (prefill_tokens + decode_seqs) / tp
                    + layers * 4 * (heads / tp) * head_dim * pairs
            bytes = iterations * P * dtype_bytes / tp
                    + kv_bytes_per_token(model, tp) * (kv_read + kv_written)

        with ``pairs``, ``kv_read`` and ``kv_written`` as in the class docstring.
        Linear in the five arguments, so a run of iterations costs what the sums of
        its numbers cost: pass a telemetry row's sums. Dividing by the GPU's peaks
        and a duration gives that GPU's MFU (against ``gpu.flops``) and MBU
        (against ``gpu.mem_bw``); its ``tp`` GPUs run in lock step on equal
        shares, so these are also the replica's. Because :meth:`iteration_s`
        spends at least ``flops / (gpu.flops * mfu)`` and ``bytes / (gpu.mem_bw *
        mbu)`` on them, MFU never exceeds ``max(mfu, attn_mfu)`` nor MBU ``mbu``.
        """
        pt, pa, ds, dc, it = _arrays(
            prefill_tokens, prefill_attn, decode_seqs, decode_ctx, iterations
        )
        m, tp = self.model, self.tp
        pairs = pa + dc + ds
        flops = (
            2.0 * m.matmul_params / tp * (pt + ds)
            + (m.layers * 4.0 * (m.heads // tp) * m.head_dim) * pairs
        )
        kv_tokens = dc + ds + pa / Q_TILE + pt + ds
        moved = it * (m.matmul_params * m.dtype_bytes / tp) + kv_bytes_per_token(m, tp) * kv_tokens
        return Work(np.asarray(flops, dtype=np.float64), np.asarray(moved, dtype=np.float64))

    def _iteration(self, pt: Any, pa: Any, ds: Any, dc: Any, maximum: Maximum) -> Any:
        """:meth:`iteration_s` on floats or arrays, as :meth:`_attention` (seconds)."""
        s_gemm, s_weights, _, _, ar_fixed, s_ar = self._constants()
        tokens = pt + ds
        linear = maximum(tokens * s_gemm, s_weights)
        total = self.overhead_s + linear + self._attention(pt, pa, ds, dc, maximum)
        if ar_fixed:
            total = total + ar_fixed + tokens * s_ar
        return total


class Linear(BaseModel):
    """Iteration time as a non-negative linear function of the batch description::

        iteration_s = c0 + c_prefill * prefill_tokens + c_attn * prefill_attn
                      + c_decode * decode_seqs + c_ctx * decode_ctx

    Units: ``c0`` seconds per iteration, ``c_prefill`` seconds per prefilled
    token, ``c_attn`` seconds per prefill attention pair, ``c_decode`` seconds per
    decoding sequence, ``c_ctx`` seconds per token of decode context. The form is
    what a real engine's per-iteration timings can pin down by least squares
    (:func:`fit_linear`); coefficients are non-negative so that more work never
    takes less time. It knows durations, not work (no datasheet): utilisation
    under it (:mod:`burstlab.sim.utilisation`) is the busy share alone, with no
    MFU or MBU.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["linear"] = "linear"
    c0: float = Field(ge=0)
    c_prefill: float = Field(0.0, ge=0)
    c_attn: float = Field(0.0, ge=0)
    c_decode: float = Field(0.0, ge=0)
    c_ctx: float = Field(0.0, ge=0)

    def iteration_s(
        self,
        prefill_tokens: Any,
        prefill_attn: Any,
        decode_seqs: Any,
        decode_ctx: Any,
    ) -> np.ndarray:
        """Seconds one iteration takes (the class docstring's formula). Python
        numbers take a plain-float path: the same operations in the same order as
        the array path, so the same doubles."""
        pt, pa, ds, dc, _ = _inputs(prefill_tokens, prefill_attn, decode_seqs, decode_ctx)
        total = (
            self.c0 + self.c_prefill * pt + self.c_attn * pa + self.c_decode * ds + self.c_ctx * dc
        )
        return np.asarray(total, dtype=np.float64)

    def coefficients(self) -> np.ndarray:
        """``[c0, c_prefill, c_attn, c_decode, c_ctx]`` as a float64 array."""
        return np.array([self.c0, self.c_prefill, self.c_attn, self.c_decode, self.c_ctx])


def fit_linear(
    features: np.ndarray, seconds: np.ndarray, weights: np.ndarray | None = None
) -> Linear:
    """Fit :class:`Linear` to measured iterations by non-negative least squares.

    ``features`` is ``(n, 4)``: one row per iteration with ``prefill_tokens,
    prefill_attn, decode_seqs, decode_ctx`` (the engine's four arguments);
    ``seconds`` is ``(n,)``, each iteration's measured duration. Minimises
    ``sum((intercept + features @ c - seconds) ** 2)`` subject to every
    coefficient, the intercept included, being >= 0 (``scipy.optimize.nnls``).
    Columns are scaled to unit maximum before solving, because they span ten
    orders of magnitude (attention pairs vs sequences), then scaled back.
    A column that is all zeros gets coefficient 0. ``weights`` (``(n,)``,
    positive) weight each row's squared error, e.g. ``1 / seconds`` to fit
    relative rather than absolute errors. Raises :class:`InputError`
    on shapes that do not match, non-finite or negative values, or no rows.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(seconds, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 4:
        raise InputError(f"features must have shape (n, 4), got {x.shape}")
    if y.shape != (x.shape[0],):
        raise InputError(f"seconds must have shape ({x.shape[0]},), got {y.shape}")
    if x.shape[0] == 0:
        raise InputError("no iterations to fit")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("features and seconds must be finite")
    if (x < 0).any() or (y < 0).any():
        raise InputError("features and seconds must be non-negative")
    design = np.column_stack([np.ones(x.shape[0]), x])
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != y.shape or not np.isfinite(w).all() or (w <= 0).any():
            raise InputError("weights must be positive and finite, one per row")
        design = design * w[:, None]
        y = y * w
    scale = design.max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(design / scale, y)
    c = np.asarray(coef, dtype=np.float64) / scale
    return Linear(
        c0=float(c[0]),
        c_prefill=float(c[1]),
        c_attn=float(c[2]),
        c_decode=float(c[3]),
        c_ctx=float(c[4]),
    )


#: A cost model as it appears in a saved config: picked by its ``kind``.
CostSpec = Annotated[Roofline | Linear, Field(discriminator="kind")]
