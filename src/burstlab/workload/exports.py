"""Writing workloads for other tools: BurstGPT CSV, Mooncake/AIPerf, vLLM and GuideLLM.

Native tables go through :func:`burstlab.trace.io.write_table` (format from
the extension). Foreign formats are named with ``--to`` (:data:`FOREIGN`);
each is read back in the tests, and its fields are checked against the
field list of the peer tool that reads it.

A failed request (``failed``, or 0 output tokens as BurstGPT records a
failure) is never written as a request for 0 tokens, which vLLM and most
servers reject: it asks for 1 token, and the failure is kept in a field of
its own (``Failed`` in CSV, ``failed`` in JSONL) that the peers' loaders do
not read (see :data:`FAILED_FIELD`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
import polars as pl

from burstlab.core.errors import InputError
from burstlab.core.files import atomic_file
from burstlab.trace.io import write_table
from burstlab.workload.prompts import make_synth

#: Tokens per KV block in Mooncake/AIPerf traces (their ``hash_ids`` cover the input).
MOONCAKE_BLOCK = 512
FOREIGN = ("burstgpt", "mooncake", "vllm-timed", "vllm-custom", "guidellm")
#: Formats that carry prompt text, made exact by ``--tokenizer``.
WITH_PROMPTS = ("vllm-custom", "guidellm")
#: Where each format keeps the failure flag, and who reads the file without it.
FAILED_FIELD = {
    "burstgpt": ("Failed", "vLLM's burstgpt dataset"),
    "mooncake": ("failed", "AIPerf, vLLM and GuideLLM"),
    "vllm-timed": ("failed", "vLLM"),
    "vllm-custom": ("failed", "vLLM"),
    "guidellm": ("failed", "GuideLLM"),
}


def export(
    table: pl.DataFrame, path: str | Path, to: str | None = None, *, tokenizer: str | None = None
) -> Path:
    """Write ``table`` to ``path``: native by extension, or the foreign format ``to``.

    ``tokenizer`` (a ``tokenizer.json``, a folder holding one, or a hub name)
    makes the prompts of ``vllm-custom`` and ``guidellm`` exact under it; no
    other format has prompts.
    """
    path = Path(path)
    if to is not None and to not in FOREIGN:
        raise InputError(f"--to {to!r} is not a known format; known: {', '.join(FOREIGN)}")
    if tokenizer is not None and to not in WITH_PROMPTS:
        raise InputError(
            f"--tokenizer applies only to --to {' or '.join(WITH_PROMPTS)} (prompt text)"
        )
    if to is None:
        return write_table(table, path)
    if to == "vllm-custom" and path.suffix != ".jsonl":
        raise InputError(
            f"{path}: vLLM's custom dataset reads only files named *.jsonl",
            hint="name the output file with a .jsonl extension",
        )
    with atomic_file(path) as fh:
        if to == "burstgpt":
            to_burstgpt(table).write_csv(fh)
        elif to == "mooncake":
            write_mooncake(table, fh)
        elif to == "vllm-timed":
            write_vllm_timed(table, fh)
        elif to == "vllm-custom":
            write_vllm_custom(table, fh, tokenizer=tokenizer)
        else:
            write_guidellm(table, fh, tokenizer=tokenizer)
    return path


def failed_rows(table: pl.DataFrame) -> np.ndarray:
    """Rows the source marks as failed: ``failed``, or 0 output tokens (BurstGPT's mark)."""
    zero = np.asarray(table["output_tokens"].to_numpy() == 0, dtype=bool)
    if "failed" in table.columns:
        zero |= table["failed"].fill_null(False).to_numpy().astype(bool)
    return zero


def zero_output_rows(table: pl.DataFrame) -> int:
    """How many rows a foreign export writes as requests for 1 token instead of 0."""
    return int((table["output_tokens"].to_numpy() == 0).sum())


def _request_outputs(table: pl.DataFrame) -> list[int]:
    """Output tokens to ask for: at least 1, since servers reject ``max_tokens`` 0."""
    return np.maximum(table["output_tokens"].to_numpy(), 1).tolist()  # type: ignore[no-any-return]


def to_burstgpt(table: pl.DataFrame) -> pl.DataFrame:
    """The BurstGPT CSV columns: v3 (with ``Session ID`` and ``Elapsed time``) when the
    table has sessions or elapsed times, else v1/v2.

    A failed request is written with 1 response token and ``Failed`` true in a
    last column (only when some row failed), so positional readers (vLLM's
    ``burstgpt`` dataset reads columns 2 and 3 of the v1/v2 layout) still
    find theirs; burstlab reads ``Failed`` back.
    """
    log_type = (
        pl.col("log_type")
        .cast(pl.String)
        .replace_strict({"conversation": "Conversation log", "api": "API log"}, default=None)
        .fill_null("API log")
    )
    response = pl.max_horizontal(pl.col("output_tokens"), pl.lit(1, pl.Int32))
    columns = [pl.col("arrival_s").alias("Timestamp")]
    if table["session_id"].null_count() < table.height or (
        table["elapsed_s"].null_count() < table.height
    ):
        columns += [
            pl.col("session_id").alias("Session ID"),
            pl.col("elapsed_s").alias("Elapsed time"),
        ]
    columns += [
        pl.col("model").cast(pl.String).fill_null("unknown").alias("Model"),
        pl.col("input_tokens").alias("Request tokens"),
        response.alias("Response tokens"),
        (pl.col("input_tokens") + response).alias("Total tokens"),
        log_type.alias("Log Type"),
    ]
    failed = failed_rows(table)
    if failed.any():
        columns.append(pl.lit(pl.Series("Failed", failed)))
    return table.select(columns)


def mooncake_hash_ids(table: pl.DataFrame, block: int = MOONCAKE_BLOCK) -> list[list[int]]:
    """Block ids covering each request's input: ``ceil(input / block)`` ids per request.

    A turn of a session reuses the ids of the previous turn's full input blocks
    (its prefix is that turn's conversation so far), so prefix caches see the
    sharing; every other block gets a fresh id.
    """
    if "hash_ids" in table.columns and table["hash_ids"].null_count() == 0:
        return table["hash_ids"].to_list()
    need = -(-table["input_tokens"].to_numpy().astype(np.int64) // block)
    sessions = table["session_id"].to_list()
    inputs = table["input_tokens"].to_list()
    last: dict[str, tuple[list[int], int]] = {}
    out: list[list[int]] = []
    next_id = 0
    for i, n in enumerate(need.tolist()):
        ids: list[int] = []
        sid = sessions[i]
        if sid is not None and sid in last:
            prev_ids, prev_input = last[sid]
            ids = prev_ids[: min(prev_input // block, n)]
        fresh = n - len(ids)
        ids = ids + list(range(next_id, next_id + fresh))
        next_id += fresh
        if sid is not None:
            last[sid] = (ids, inputs[i])
        out.append(ids)
    return out


def previous_turns(table: pl.DataFrame) -> list[int]:
    """For each row, the row of the same session's previous turn (by ``turn``, then
    arrival), or -1 for a first turn and a request outside sessions."""
    sessions = table["session_id"].to_list()
    turns = table["turn"].to_list() if "turn" in table.columns else [None] * table.height
    arrival = table["arrival_s"].to_list()
    prev = [-1] * table.height
    last: dict[str, int] = {}
    order = sorted(
        (i for i in range(table.height) if sessions[i] is not None),
        key=lambda i: (sessions[i], turns[i] if turns[i] is not None else 0, arrival[i], i),
    )
    for i in order:
        sid = sessions[i]
        prev[i] = last.get(sid, -1)
        last[sid] = i
    return prev


def cumulative_inputs(table: pl.DataFrame, prev: list[int] | None = None) -> bool:
    """Whether session inputs already include the earlier turns (``generate --history``):
    every later turn's input holds at least the previous turn's input and output."""
    prev = previous_turns(table) if prev is None else prev
    inputs = table["input_tokens"].to_list()
    outputs = table["output_tokens"].to_list()
    linked = [(i, p) for i, p in enumerate(prev) if p >= 0]
    return bool(linked) and all(inputs[i] >= inputs[p] + outputs[p] for i, p in linked)


def _ms(table: pl.DataFrame) -> list[int]:
    return np.rint(table["arrival_s"].to_numpy() * 1000).astype(np.int64).tolist()  # type: ignore[no-any-return]


def _write_lines(fh: BinaryIO, rows: list[dict[str, Any]]) -> None:
    fh.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))


def write_mooncake(table: pl.DataFrame, fh: BinaryIO) -> None:
    """AIPerf's ``mooncake_trace`` JSONL (aiperf 0.13, ``MooncakeTrace``).

    Every row: ``timestamp`` (integer ms from the start), ``input_length``,
    ``output_length`` (at least 1) and ``hash_ids`` (one id per
    :data:`MOONCAKE_BLOCK` input tokens). A table with sessions adds
    ``session_id`` (string; null outside sessions) and, on a session's later
    turns, ``delay``: ms from the previous turn's scheduled send, the think
    time ``burstlab bench`` waits after the previous turn ends. AIPerf
    accumulates a session's turns and live replies into the chat history
    itself, so a later turn's ``input_length`` is its new tokens only (for a
    ``--history`` table, the growth past the previous turn's input and
    output) and its ``hash_ids`` are fresh. With ``--fixed-schedule`` AIPerf
    sends a later turn at its ``timestamp`` or, if the previous turn is still
    running, when it ends; in its rate modes it queues the turn ``delay``
    after the previous turn ends.
    A table with failures adds ``failed`` (bool) to every row, which AIPerf,
    vLLM and GuideLLM do not read.
    """
    outputs = _request_outputs(table)
    ms = _ms(table)
    hashes = mooncake_hash_ids(table.with_columns(pl.lit(None, pl.String).alias("session_id")))
    failed = failed_rows(table)
    with_failed = bool(failed.any())
    sessions = table["session_id"].to_list()
    with_sessions = any(s is not None for s in sessions)
    lengths = table["input_tokens"].to_list()
    prev = previous_turns(table) if with_sessions else [-1] * table.height
    if with_sessions:
        grown = cumulative_inputs(table, prev)
        inputs = table["input_tokens"].to_list()
        next_id = 1 + max((max(h) for h in hashes if h), default=-1)
        for i, p in enumerate(prev):
            if p < 0:
                continue
            if grown:
                lengths[i] = max(1, inputs[i] - inputs[p] - int(table["output_tokens"][p]))
            n = -(-lengths[i] // MOONCAKE_BLOCK)
            hashes[i] = list(range(next_id, next_id + n))
            next_id += n
    rows: list[dict[str, Any]] = []
    for i in range(table.height):
        row: dict[str, Any] = {
            "timestamp": ms[i],
            "input_length": lengths[i],
            "output_length": outputs[i],
            "hash_ids": hashes[i],
        }
        if with_sessions:
            row["session_id"] = sessions[i]
            row["delay"] = max(0, ms[i] - ms[prev[i]]) if prev[i] >= 0 else None
        if with_failed:
            row["failed"] = bool(failed[i])
        rows.append(row)
    _write_lines(fh, rows)


def write_vllm_timed(table: pl.DataFrame, fh: BinaryIO) -> None:
    """vLLM ``bench serve --dataset-name timed_trace`` JSONL (vLLM 0.34, ``TimedTrace``).

    The four fields vLLM reads by default (``timestamp``, ``input_length``,
    ``output_length``, ``hash_ids``) on every row, each request whole: vLLM
    has no sessions, so a turn's input is the conversation so far and its
    ``hash_ids`` repeat the previous turn's full blocks (the prefix a cache
    can hit). Without sessions this is the ``mooncake`` file. A table with
    failures adds ``failed``, which vLLM does not read. Replay it with
    ``--self-timed --timed-trace-sec-multiplier 0.001`` (ms to s),
    ``--timed-trace-chunk-hash-size 512`` (vLLM's default block is 16
    tokens) and ``--num-prompts`` at least the row count (default 1000).
    """
    outputs = _request_outputs(table)
    failed = failed_rows(table)
    with_failed = bool(failed.any())
    rows: list[dict[str, Any]] = []
    for i, (t, n, h) in enumerate(
        zip(_ms(table), table["input_tokens"].to_list(), mooncake_hash_ids(table), strict=True)
    ):
        row: dict[str, Any] = {
            "timestamp": t,
            "input_length": n,
            "output_length": outputs[i],
            "hash_ids": h,
        }
        if with_failed:
            row["failed"] = bool(failed[i])
        rows.append(row)
    _write_lines(fh, rows)


def _prompts(table: pl.DataFrame, tokenizer: str | None) -> list[str]:
    """Each request's prompt: ``input_tokens`` tokens (exact under ``tokenizer``), session
    turns sharing the blocks of :func:`mooncake_hash_ids` as text."""
    synth = make_synth("text", tokenizer=tokenizer, block=MOONCAKE_BLOCK)
    out = []
    for key, (n, hashes) in enumerate(
        zip(table["input_tokens"].to_list(), mooncake_hash_ids(table), strict=True)
    ):
        text = synth.build(n, key, hashes).text
        assert text is not None  # a text synth
        out.append(text)
    return out


def write_vllm_custom(table: pl.DataFrame, fh: BinaryIO, *, tokenizer: str | None = None) -> None:
    """vLLM ``bench serve --dataset-name custom`` JSONL: ``{"prompt", "output_tokens"}``.

    Prompts come from :mod:`burstlab.workload.prompts`: exactly
    ``input_tokens`` tokens under ``tokenizer`` when one is given, else the
    fallback's word-per-token estimate. Blocks of :func:`mooncake_hash_ids`
    become shared text, so session turns share their prefixes. A failed
    request asks for 1 token and carries ``"failed": true`` (every row has
    ``failed`` when some row failed; vLLM does not read it). vLLM's custom
    dataset keeps no timing (it sends at ``--request-rate``), shuffles unless
    ``--disable-shuffle``, wraps each prompt in the chat template unless
    ``--skip-chat-template``, draws ``--num-prompts`` (default 1000) requests,
    repeating rows, unless ``--no-oversample``, and uses ``output_tokens``
    only with ``--custom-output-len -1``.
    """
    failed = failed_rows(table)
    with_failed = bool(failed.any())
    rows: list[dict[str, Any]] = []
    for i, (prompt, out) in enumerate(
        zip(_prompts(table, tokenizer), _request_outputs(table), strict=True)
    ):
        row: dict[str, Any] = {"prompt": prompt, "output_tokens": out}
        if with_failed:
            row["failed"] = bool(failed[i])
        rows.append(row)
    _write_lines(fh, rows)


def write_guidellm(table: pl.DataFrame, fh: BinaryIO, *, tokenizer: str | None = None) -> None:
    """GuideLLM JSONL for its ``replay`` profile (guidellm 0.8, ``GenerativeColumnMapper``).

    ``prompt`` (text, as :func:`write_vllm_custom`), ``prompt_tokens_count``
    and ``output_tokens_count`` (the columns GuideLLM reads for lengths; it
    sends ``output_tokens_count`` as ``max_tokens`` with ``ignore_eos``), and
    ``relative_timestamp`` (seconds from the start; the replay profile sends
    each row at ``start + time_scale * relative_timestamp``). Every request is
    its own conversation: a session turn's prompt holds the text it shares
    with the previous turn, and it is sent at its own time. A table with
    failures adds ``failed`` (bool), which GuideLLM maps to no column.
    """
    failed = failed_rows(table)
    with_failed = bool(failed.any())
    arrival = np.round(table["arrival_s"].to_numpy(), 6).tolist()
    rows: list[dict[str, Any]] = []
    for i, (prompt, n, out) in enumerate(
        zip(
            _prompts(table, tokenizer),
            table["input_tokens"].to_list(),
            _request_outputs(table),
            strict=True,
        )
    ):
        row: dict[str, Any] = {
            "prompt": prompt,
            "prompt_tokens_count": n,
            "output_tokens_count": out,
            "relative_timestamp": arrival[i],
        }
        if with_failed:
            row["failed"] = bool(failed[i])
        rows.append(row)
    _write_lines(fh, rows)
