"""GPU utilisation: the roofline's work terms by hand and their bounds, and busy share,
MFU and MBU per replica per bin on hand-made simulation results."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from burstlab.sim import presets
from burstlab.sim.cost import Q_TILE, Linear, Roofline, kv_bytes_per_token
from burstlab.sim.engine.result import LOAD_COLUMNS, TELEMETRY_COLUMNS, SimResult
from burstlab.sim.utilisation import MAX_BINS, UTILISATION_COLUMNS, _spread, utilisation

P_7B = 6_738_415_616 - 32000 * 4096  # Llama-2-7B matmul parameters
KV_7B = 524_288  # KV bytes per token, tp=1


def a100_7b(**overrides: float) -> Roofline:
    return presets.roofline("A100-80G", "Llama-2-7B", **overrides)


# ---------------------------------------------------------------- work by hand


def test_decode_work_by_hand() -> None:
    """4 sequences at context 1000: every linear weight once per token, attention over
    4004 pairs per layer; the weights read once, 4004 KV tokens read and 4 written."""
    w = a100_7b().work(0.0, 0.0, 4.0, 4000.0)
    assert float(w.flops) == 2 * P_7B * 4 + 32 * 4 * 32 * 128 * 4004
    assert float(w.bytes) == P_7B * 2 + KV_7B * (4004 + 4)


def test_prefill_work_by_hand() -> None:
    chunk, ctx = 1024, 512
    pairs = chunk * (ctx + (chunk + 1) / 2)
    w = a100_7b().work(chunk, pairs, 0.0, 0.0)
    assert float(w.flops) == pytest.approx(2 * P_7B * chunk + 32 * 4 * 32 * 128 * pairs, rel=1e-15)
    assert float(w.bytes) == pytest.approx(P_7B * 2 + KV_7B * (pairs / Q_TILE + chunk), rel=1e-15)


def test_tensor_parallel_work_is_per_gpu() -> None:
    """At tp=2 each GPU does half the FLOPs and reads half the weights; Llama-2-70B's
    8 KV heads split over 8 GPUs, but over 16 they are replicated (1 per GPU)."""
    feats = (300.0, 5e4, 16.0, 16e3)
    one = presets.roofline("A100-80G", "Llama-2-13B").work(*feats)
    two = presets.roofline("A100-80G", "Llama-2-13B", tp=2).work(*feats)
    assert float(two.flops) == pytest.approx(float(one.flops) / 2, rel=1e-14)
    assert float(two.bytes) == pytest.approx(float(one.bytes) / 2, rel=1e-14)
    seventy = presets.model("Llama-2-70B")
    assert kv_bytes_per_token(seventy, 8) == kv_bytes_per_token(seventy, 1) / 8


def test_work_is_linear_so_a_run_costs_its_sums() -> None:
    """A telemetry row of k iterations: the work of its summed numbers is the sum of
    its iterations' work (weights counted once per iteration)."""
    r = a100_7b(tp=2)
    batches = np.array([[0, 0, 8, 8000], [0, 0, 8, 8008], [0, 0, 7, 7009]], dtype=float)
    each = r.work(*batches.T)
    summed = r.work(*batches.sum(axis=0), iterations=3)
    assert float(summed.flops) == pytest.approx(float(each.flops.sum()), rel=1e-14)
    assert float(summed.bytes) == pytest.approx(float(each.bytes.sum()), rel=1e-14)


@settings(max_examples=200, deadline=None)
@given(
    chunk=st.floats(0, 8192),
    ctx=st.floats(0, 32_000),
    seqs=st.floats(0, 512),
    ctx_each=st.floats(0, 8000),
    tp=st.sampled_from([1, 2, 4]),
)
def test_mfu_and_mbu_never_exceed_the_efficiency_factors(
    chunk: float, ctx: float, seqs: float, ctx_each: float, tp: int
) -> None:
    """The iteration spends at least work / (peak * efficiency) on each bound, so the
    utilisation of one iteration stays under the factors (and the datasheet)."""
    if chunk + seqs == 0:
        return
    r = presets.roofline("H100-80G", "Llama-2-70B", tp=tp)
    feats = (chunk, chunk * (ctx + (chunk + 1) / 2), seqs, seqs * ctx_each)
    t = float(r.iteration_s(*feats))
    w = r.work(*feats)
    assert float(w.flops) / (r.gpu.flops * t) <= max(r.mfu, r.attn_mfu) * (1 + 1e-12)
    assert float(w.bytes) / (r.gpu.mem_bw * t) <= r.mbu * (1 + 1e-12)


def test_preset_peaks_are_dense_datasheet_figures() -> None:
    """MFU divides by the dense tensor-core peak, never the sparse one (twice as high)."""
    assert presets.gpu("A100-80G").flops == 312e12
    assert presets.gpu("H100-80G").flops == 989.4e12
    assert presets.gpu("A100-80G").mem_bw == 2.039e12
    assert presets.gpu("H100-80G").mem_bw == 3.35e12


# ---------------------------------------------------------------- hand-made results


def result(
    rows: list[tuple[float, float, int, int, int]],
    load: list[tuple[float, float, float]] | None = None,
    replica: list[int] | None = None,
) -> SimResult:
    """A SimResult with these telemetry rows ``(start, end, iterations, batch,
    prefill_tokens)`` and load rows ``(decode_seqs, prefill_attn, decode_ctx)``."""
    table = np.zeros((len(rows), len(TELEMETRY_COLUMNS)))
    for i, (s, e, k, b, p) in enumerate(rows):
        table[i, :5] = (s, e, k, b, p)
    sums = np.array(load if load is not None else [(0.0, 0.0, 0.0)] * len(rows), dtype=float)
    empty = np.zeros(0)
    return SimResult(
        outcome=empty,
        first=empty,
        end=empty,
        preemptions=empty,
        tokens=empty,
        max_gap=empty,
        admitted=empty,
        telemetry=table,
        iterations=sum(r[2] for r in rows),
        load=sums.reshape(-1, len(LOAD_COLUMNS)),
        replica=None if replica is None else np.array(replica, dtype=np.int32),
    )


def test_busy_share_per_bin_and_over_the_window() -> None:
    """Busy [0, 2) then idle, then busy [3, 4): iterations of 0.1 s, so bins of 2 s
    (20 mean iterations): 100% then 50%; 75% over the window."""
    r = result([(0.0, 2.0, 20, 4, 0), (3.0, 4.0, 10, 4, 0)])
    u = utilisation(r, Linear(c0=0.1))
    assert u is not None
    assert u.basis == "busy_only"
    assert u.mfu is None
    assert u.mbu is None
    assert u.bin_s == 2.0
    assert u.busy.tolist() == [[1.0, 0.5]]
    stats = u.stats()
    assert stats.busy_share == 0.75
    assert stats.peak_busy_share.value == 1.0
    assert stats.peak_busy_share.start_s == 0.0
    assert stats.mfu is None
    assert stats.peak_mfu is None
    assert stats.replicas == []


def test_a_row_spanning_bins_is_spread_evenly() -> None:
    """A decode run of 100 iterations over [0, 10) s and one over [15, 16): with bins
    of 5 s the first run fills two bins and the fourth holds a fifth."""
    r = result([(0.0, 10.0, 100, 8, 0), (15.0, 16.0, 1, 8, 0)])
    u = utilisation(r, Linear(c0=0.1), max_bins=3)
    assert u is not None
    assert u.bin_s == 10.0  # 16 s / 3 bins, rounded up to 1-2-5
    assert u.busy.tolist() == [[1.0, 0.1]]
    u = utilisation(r, Linear(c0=0.1), max_bins=5)
    assert u is not None
    assert u.bin_s == 5.0
    assert u.busy.tolist() == [[1.0, 1.0, 0.0, 0.2]]


def test_roofline_mfu_and_mbu_by_hand() -> None:
    """One decode row: 10 iterations of 4 sequences at context ~1000 over 0.2 s."""
    cost = a100_7b()
    load = (40.0, 0.0, 40_180.0)  # sums over the 10 iterations
    r = result([(1.0, 1.2, 10, 4, 0)], [load])
    u = utilisation(r, cost)
    assert u is not None
    assert u.mfu is not None
    assert u.mbu is not None
    flops = 2 * P_7B * 40 + 32 * 4 * 32 * 128 * (40_180 + 40)
    moved = 10 * P_7B * 2 + KV_7B * (40_180 + 40 + 40)
    stats = u.stats()
    assert stats.basis == "roofline"
    assert stats.window_s == pytest.approx(0.2)
    assert stats.mfu == pytest.approx(flops / (312e12 * 0.2), rel=1e-9)
    assert stats.mbu == pytest.approx(moved / (2.039e12 * 0.2), rel=1e-9)
    assert stats.mfu_when_busy == pytest.approx(stats.mfu, rel=1e-9)
    # the bins hold the same work: their mean over the bins' time is the same share
    assert u.mfu.sum() * u.bin_s == pytest.approx(flops / 312e12, rel=1e-9)
    assert u.mbu.sum() * u.bin_s == pytest.approx(moved / 2.039e12, rel=1e-9)
    # decode at batch 4 is memory-bound: MBU far above MFU
    assert stats.mbu is not None
    assert stats.mfu is not None
    assert stats.mbu > 10 * stats.mfu


def test_prefill_rows_count_their_tokens_once_per_iteration() -> None:
    """A prefill row's ``prefill_tokens`` is per iteration: 2 iterations of 512 tokens."""
    cost = a100_7b()
    pairs = 2 * 512 * (0 + 513 / 2)
    r = result([(0.0, 0.1, 2, 2, 512)], [(0.0, pairs, 0.0)])
    u = utilisation(r, cost)
    assert u is not None
    assert u.flops is not None
    assert float(u.flops[0]) == pytest.approx(float(cost.work(1024, pairs, 0, 0, 2).flops))


def test_without_load_the_roofline_gives_busy_share_only() -> None:
    """An engine that reports no load (decode rows with no decode sequences) gets no
    MFU or MBU rather than a wrong one."""
    r = result([(0.0, 1.0, 10, 4, 0)])
    u = utilisation(r, a100_7b())
    assert u is not None
    assert u.basis == "busy_only"
    assert u.table()["mfu"].null_count() == u.table().height


def test_cluster_replicas_each_get_a_series() -> None:
    rows = [(0.0, 1.0, 10, 4, 0), (0.0, 4.0, 40, 4, 0), (2.0, 3.0, 10, 4, 0)]
    load = [(40.0, 0.0, 4e4), (160.0, 0.0, 16e4), (40.0, 0.0, 4e4)]
    r = result(rows, load, replica=[0, 1, 0])
    u = utilisation(r, a100_7b(), max_bins=3)
    assert u is not None
    assert u.bin_s == 2.0
    assert u.busy.tolist() == [[0.5, 0.5], [1.0, 1.0]]
    table = u.table()
    assert table.columns == list(UTILISATION_COLUMNS)
    assert table.height == 4
    assert table["replica"].to_list() == [0, 0, 1, 1]
    stats = u.stats()
    assert [x.replica for x in stats.replicas] == [0, 1]
    assert [x.busy_share for x in stats.replicas] == [0.5, 1.0]
    assert stats.busy_share == 0.75
    assert stats.peak_busy_share.replica == 1
    assert stats.peak_mbu is not None
    assert stats.peak_mbu.replica == 1
    mbu = [x.mbu for x in stats.replicas]
    assert mbu[0] is not None
    assert mbu[1] is not None
    assert mbu[1] > mbu[0]


def test_no_iteration_is_no_utilisation() -> None:
    assert utilisation(result([]), a100_7b()) is None


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.tuples(st.floats(0, 50), st.floats(1e-3, 30)), min_size=1, max_size=60),
    max_bins=st.integers(1, 40),
)
def test_bins_conserve_busy_time_and_stay_bounded(
    gaps: list[tuple[float, float]], max_bins: int
) -> None:
    """Whatever the rows, the bins sum to the busy time, number at most ``max_bins``,
    and every share lies in [0, 1]."""
    rows, t = [], 0.0
    for idle, busy in gaps:
        rows.append((t + idle, t + idle + busy, 1, 1, 0))
        t += idle + busy
    u = utilisation(result(rows), Linear(c0=0.01), max_bins=max_bins)
    assert u is not None
    assert u.busy.shape[1] <= max_bins
    assert ((u.busy >= 0) & (u.busy <= 1)).all()
    total = sum(e - s for s, e, *_ in rows)
    assert u.busy.sum() * u.bin_s == pytest.approx(total, rel=1e-9)
    assert u.stats().busy_share == pytest.approx(total / (rows[-1][1] - rows[0][0]), rel=1e-9)


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(st.tuples(st.floats(0, 5), st.floats(0, 5), st.floats(0, 100)), max_size=30),
    edges=st.lists(st.floats(-5, 200), min_size=2, max_size=12, unique=True),
)
def test_spread_is_the_overlap_of_every_row_with_every_bin(
    rows: list[tuple[float, float, float]], edges: list[float]
) -> None:
    """Against a loop over rows and bins: each row's amount times the share of its
    span inside the bin (an instant row counts where it begins)."""
    start, end, amount, t = [], [], [], 0.0
    for idle, busy, x in rows:
        start.append(t + idle)
        end.append(t + idle + busy)
        amount.append(x)
        t += idle + busy
    cuts = np.sort(np.array(edges))
    got = _spread(np.array(start), np.array(end), np.array(amount), cuts)
    want = np.zeros(cuts.size - 1)
    for s, e, x in zip(start, end, amount, strict=True):
        for j in range(cuts.size - 1):
            lo, hi = cuts[j], cuts[j + 1]
            if e > s:
                want[j] += x * max(0.0, min(e, hi) - max(s, lo)) / (e - s)
            elif lo < s <= hi:
                want[j] += x
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_a_long_run_gets_at_most_max_bins() -> None:
    n = 200_000
    start = np.arange(n) * 0.05
    rows = [(float(s), float(s) + 0.03, 1, 1, 0) for s in start[:: n // 1000]]
    u = utilisation(result(rows), Linear(c0=0.03))
    assert u is not None
    assert u.busy.shape[1] <= MAX_BINS
    assert u.busy.shape[1] >= 100
