"""Fit the simulator's linear cost model to a real benchmark run (``burstlab calibrate``).

A client sees requests, not iterations, so the batch each request met is
estimated from the run's own records: at a time ``t`` the decoding batch holds
every request between its first token and its end, and each one's context is
its prompt plus the tokens it has produced by ``t`` (at its own TPOT). Then:

- a request's TTFT is taken as one prefill iteration of its prompt
  (``prefill_tokens = P``, ``prefill_attn = P (P + 1) / 2``) alongside the decoding
  batch at the middle of its wait;
- its TPOT as the average iteration during its decode: the batch at the middle
  of its decode, plus the prefill work of the requests whose first token fell
  inside that decode, spread over its iterations (chunked prefill mixes them
  into the same iterations, and they are what makes a TPOT jitter).

Both sets of samples are fitted together by non-negative least squares of the
relative errors (:func:`burstlab.sim.cost.fit_linear`). Queueing inflates TTFT, so a run at
moderate load (the server busy, not backlogged) calibrates best, unless the
server reported its own account (llama.cpp's ``timings``: ``server_prompt_ms``
in the records): then a TTFT sample is that, the time from the slot taking the
prompt to its first token, with no queueing in it. The fit's median errors on
TTFT and TPOT are reported so a poor fit shows, and a run whose samples cannot
tell the coefficients apart (a feature that never varies, or two that vary
together) is refused rather than fitted to an arbitrary answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import minimize

from burstlab.core.errors import InputError
from burstlab.sim.cost import Linear, fit_linear
from burstlab.sim.engine import Engine, EngineConfig

#: Fewest usable requests for a fit.
MIN_REQUESTS = 20


def _active(
    times: np.ndarray, start: np.ndarray, stop: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """Sum of ``weight`` over intervals ``[start, stop)`` containing each of ``times``."""
    order_a = np.argsort(start)
    order_b = np.argsort(stop)
    cum_a = np.concatenate([[0.0], np.cumsum(weight[order_a])])
    cum_b = np.concatenate([[0.0], np.cumsum(weight[order_b])])
    began = cum_a[np.searchsorted(start[order_a], times, side="right")]
    ended = cum_b[np.searchsorted(stop[order_b], times, side="right")]
    out: np.ndarray = began - ended
    return out


def _within(at: np.ndarray, weight: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sum of ``weight`` over events at times ``at`` inside each ``(lo, hi)``."""
    order = np.argsort(at)
    cum = np.concatenate([[0.0], np.cumsum(weight[order])])
    times = at[order]
    out: np.ndarray = (
        cum[np.searchsorted(times, hi, side="left")] - cum[np.searchsorted(times, lo, side="right")]
    )
    return out


def batch_at(times: np.ndarray, first: np.ndarray, end: np.ndarray, prompt: np.ndarray,
             tpot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(decoding sequences, their total context in tokens) at each of ``times``."""
    rate = np.where(tpot > 0, 1.0 / np.where(tpot > 0, tpot, 1.0), 0.0)
    seqs = _active(times, first, end, np.ones_like(first))
    # context_j(t) = prompt_j + (t - first_j) * rate_j = (prompt_j - first_j rate_j) + t rate_j
    ctx = _active(times, first, end, prompt - first * rate) + times * _active(
        times, first, end, rate
    )
    return seqs, np.maximum(ctx, 0.0)


def calibration_samples(records: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features ``(n, 4)``, seconds ``(n,)`` and which rows are TTFT samples (the
    rest are TPOT samples), from a result table's ok requests."""
    ok = records.filter(
        (pl.col("outcome") == "ok")
        & pl.col("first_s").is_not_null()
        & pl.col("end_s").is_not_null()
    )
    if ok.height < MIN_REQUESTS:
        raise InputError(
            f"calibration needs at least {MIN_REQUESTS} completed requests, the run has {ok.height}"
        )
    sent = ok["sent_s"].to_numpy().astype(np.float64)
    first = ok["first_s"].to_numpy().astype(np.float64)
    end = ok["end_s"].to_numpy().astype(np.float64)
    prompt = ok["input_tokens_achieved"].fill_null(ok["input_tokens"]).to_numpy().astype(np.float64)
    # The tokens the server actually prefilled (a prompt-cache hit is context, not
    # work), where it says; cached ones are attended to like the context they are.
    fresh = prompt
    if "server_prompt_n" in ok.columns:
        done = ok["server_prompt_n"].to_numpy().astype(np.float64)
        fresh = np.where(np.isfinite(done), np.minimum(done, prompt), prompt)
    cached = prompt - fresh
    tokens = ok["output_tokens_achieved"].fill_null(1).to_numpy().astype(np.float64)
    multi = tokens > 1
    tpot = np.where(multi, (end - first) / np.maximum(tokens - 1, 1), 0.0)
    # The prefill began when the server says it did, else at the send (queueing in).
    began = sent
    if "server_prompt_ms" in ok.columns:
        server = ok["server_prompt_ms"].to_numpy().astype(np.float64) / 1000
        began = np.where(np.isfinite(server), first - server, sent)
    wait_mid = (began + first) / 2
    d_seqs, d_ctx = batch_at(wait_mid, first, end, prompt, tpot)
    pairs = fresh * (cached + (fresh + 1) / 2)
    prefill = np.column_stack([fresh, pairs, d_seqs, d_ctx])
    decode_mid = ((first + end) / 2)[multi]
    b_seqs, b_ctx = batch_at(decode_mid, first, end, prompt, tpot)
    iterations = (tokens - 1)[multi]
    p_tokens = _within(first, fresh, first[multi], end[multi]) / iterations
    p_attn = _within(first, pairs, first[multi], end[multi]) / iterations
    decode = np.column_stack([p_tokens, p_attn, np.maximum(b_seqs, 1), b_ctx])
    features = np.vstack([prefill, decode])
    seconds = np.concatenate([first - began, tpot[multi]])
    is_ttft = np.arange(seconds.size) < prefill.shape[0]
    keep = np.isfinite(features).all(axis=1) & np.isfinite(seconds) & (seconds >= 0)
    return features[keep], seconds[keep], is_ttft[keep]


#: Names of the features, as the refusal names them.
FEATURES = ("prefill tokens", "prefill attention pairs", "decoding sequences", "decode context")
#: Largest condition number of the scaled design the fit accepts.
MAX_CONDITION = 1e6


def identifiable(features: np.ndarray) -> None:
    """Refuse samples that cannot tell the coefficients apart: with an intercept,
    the columns (each scaled to unit maximum; all-zero ones dropped, their
    coefficient is 0) must be far from collinear. Raises :class:`InputError`
    naming a feature that does not vary when one is the cause."""
    used = [j for j in range(features.shape[1]) if np.any(features[:, j] != 0)]
    for j in used:
        column = features[:, j]
        if np.ptp(column) <= 1e-9 * np.max(np.abs(column)):
            raise InputError(
                f"the run cannot identify the cost model: {FEATURES[j]} are the same in "
                "every sample, so they cannot be told from the fixed cost per iteration",
                hint="calibrate on a run with varied input lengths and a varying load",
            )
    design = np.column_stack([np.ones(features.shape[0]), features[:, used]])
    design = design / np.max(np.abs(design), axis=0)
    _, singular, vt = np.linalg.svd(design, full_matrices=False)
    condition = float(singular[0] / max(singular[-1], 1e-300))
    if condition > MAX_CONDITION:
        # The direction the samples do not pin down: its largest components are the
        # coefficients that trade against each other.
        names = ["the fixed cost per iteration", *(FEATURES[j] for j in used)]
        weights = np.abs(vt[-1])
        a, b = (names[i] for i in np.argsort(weights)[::-1][:2])
        raise InputError(
            f"the run cannot identify the cost model: {a} and {b} move together in its "
            f"samples (condition number {condition:.3g})",
            hint="calibrate on a run with varied input lengths and a varying load",
        )


#: Most simulations the refinement runs.
REFINE_EVALUATIONS = 400


def refine(
    records: pl.DataFrame, model: Linear, config: EngineConfig
) -> tuple[Linear, dict[str, float]]:
    """``model`` refined by simulating the run itself: the run's ok requests (at their
    send times, with the lengths the server reported) go through an engine of
    ``config``, and the coefficients (all but ``c_attn``, searched on a log scale from
    ``model`` by Nelder-Mead) minimise the mean squared log ratio of simulated to
    measured TTFT and TPOT per request. Least squares on request-level samples has
    to guess each request's batch; the simulation knows it, queueing and the stalls
    other requests' prompts cause included. Returns the model and how well the
    simulated run then matches: median relative error of TTFT and TPOT per request."""
    ok = records.filter(pl.col("outcome") == "ok").sort("sent_s")
    sent = ok["sent_s"].to_numpy().astype(np.float64)
    sent = sent - sent[0]
    prompt = ok["input_tokens_achieved"].fill_null(ok["input_tokens"]).to_numpy()
    output = ok["output_tokens_achieved"].fill_null(ok["output_tokens"]).to_numpy()
    ttft = (ok["first_s"] - ok["sent_s"]).to_numpy().astype(np.float64)
    tpot = ok["tpot_s"].to_numpy().astype(np.float64) if "tpot_s" in ok.columns else None
    if tpot is None:
        end = ok["end_s"].to_numpy().astype(np.float64)
        tpot = (end - ok["first_s"].to_numpy()) / np.maximum(output - 1, 1)
    has_ttft = np.isfinite(ttft) & (ttft > 0)
    has_tpot = np.isfinite(tpot) & (tpot > 0) & (output > 1)
    floors = np.array([1e-5, 1e-7, 1e-6, 1e-11])
    start = np.log(np.maximum([model.c0, model.c_prefill, model.c_decode, model.c_ctx], floors))

    def candidate(theta: np.ndarray) -> Linear:
        c0, cp, cd, cc = np.exp(theta)
        return Linear(c0=c0, c_prefill=cp, c_attn=model.c_attn, c_decode=cd, c_ctx=cc)

    def ratios(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log of simulated over measured TTFT and TPOT, per request."""
        result = Engine(config, candidate(theta)).run(sent, prompt, output, token_times=False)
        first = result.first - sent
        per = (result.end - result.first) / np.maximum(output - 1, 1)
        a = np.log(np.maximum(first[has_ttft], 1e-9) / ttft[has_ttft])
        return a, np.log(np.maximum(per[has_tpot], 1e-9) / tpot[has_tpot])

    def loss(theta: np.ndarray) -> float:
        a, b = ratios(theta)
        return float(np.mean(a * a) + (np.mean(b * b) if b.size else 0.0))

    best = minimize(
        loss, start, method="Nelder-Mead", options={"maxfev": REFINE_EVALUATIONS, "xatol": 1e-3}
    )
    a, b = ratios(best.x)
    return candidate(best.x), {
        "simulated_ttft_median_rel_error": float(np.median(np.abs(np.expm1(a)))),
        "simulated_tpot_median_rel_error": (
            float(np.median(np.abs(np.expm1(b)))) if b.size else float("nan")
        ),
    }


def calibrate(
    records: pl.DataFrame, config: EngineConfig | None = None
) -> tuple[Linear, dict[str, Any]]:
    """The fitted cost model and its quality: requests used, median relative error
    of the predicted TTFT and TPOT samples. With the engine's ``config``, the fit is
    then refined by simulating the run (:func:`refine`), and the quality gains the
    simulated requests' median relative errors. Refuses (:class:`InputError`) a run
    that cannot identify the coefficients (:func:`identifiable`)."""
    features, seconds, is_ttft = calibration_samples(records)
    identifiable(features)
    # relative errors: TTFTs are ten times TPOTs and would otherwise decide the fit
    model = fit_linear(features, seconds, weights=1.0 / np.maximum(seconds, 1e-4))
    predicted = model.iteration_s(*features.T)
    rel = np.abs(predicted - seconds) / np.maximum(seconds, 1e-9)
    quality = {
        "samples": int(seconds.size),
        "ttft_samples": int(is_ttft.sum()),
        "ttft_median_rel_error": float(np.median(rel[is_ttft])) if is_ttft.any() else None,
        "tpot_median_rel_error": float(np.median(rel[~is_ttft])) if (~is_ttft).any() else None,
    }
    if config is not None:
        model, simulated = refine(records, model, config)
        quality.update(simulated)
    return model, quality
