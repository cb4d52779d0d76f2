"""Writing workloads for other tools: BurstGPT CSV, Mooncake/AIPerf and vLLM JSONL.

Native tables go through :func:`burstlab.trace.io.write_table` (format from
the extension). Foreign formats are named with ``--to`` (:data:`FOREIGN`);
each is read back in the tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import orjson
import polars as pl

from burstlab.core.errors import InputError
from burstlab.core.files import atomic_file
from burstlab.trace.io import write_table
from burstlab.workload.prompts import make_synth

#: Tokens per KV block in Mooncake/AIPerf traces (their ``hash_ids`` cover the input).
MOONCAKE_BLOCK = 512
FOREIGN = ("burstgpt", "mooncake", "vllm-timed", "vllm-custom")


def export(
    table: pl.DataFrame, path: str | Path, to: str | None = None, *, tokenizer: str | None = None
) -> Path:
    """Write ``table`` to ``path``: native by extension, or the foreign format ``to``.

    ``tokenizer`` (a ``tokenizer.json``, a folder holding one, or a hub name)
    makes ``vllm-custom`` prompts exact under it; no other format has prompts.
    """
    path = Path(path)
    if tokenizer is not None and to != "vllm-custom":
        raise InputError("--tokenizer applies only to --to vllm-custom (prompt text)")
    if to is None:
        return write_table(table, path)
    if to == "burstgpt":
        with atomic_file(path) as fh:
            to_burstgpt(table).write_csv(fh)
        return path
    if to in ("mooncake", "vllm-timed"):
        with atomic_file(path) as fh:
            write_mooncake(table, fh)
        return path
    if to == "vllm-custom":
        if path.suffix != ".jsonl":
            raise InputError(
                f"{path}: vLLM's custom dataset reads only files named *.jsonl",
                hint="name the output file with a .jsonl extension",
            )
        with atomic_file(path) as fh:
            write_vllm_custom(table, fh, tokenizer=tokenizer)
        return path
    raise InputError(f"--to {to!r} is not a known format; known: {', '.join(FOREIGN)}")


def to_burstgpt(table: pl.DataFrame) -> pl.DataFrame:
    """The BurstGPT CSV columns: v3 (with ``Session ID`` and ``Elapsed time``) when the
    table has sessions or elapsed times, else v1/v2."""
    log_type = (
        pl.col("log_type")
        .cast(pl.String)
        .replace_strict({"conversation": "Conversation log", "api": "API log"}, default=None)
        .fill_null("API log")
    )
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
        pl.col("output_tokens").alias("Response tokens"),
        (pl.col("input_tokens") + pl.col("output_tokens")).alias("Total tokens"),
        log_type.alias("Log Type"),
    ]
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


def write_mooncake(table: pl.DataFrame, fh: BinaryIO) -> None:
    """Mooncake/AIPerf JSONL: ``timestamp`` (integer ms), ``input_length``,
    ``output_length``, ``hash_ids`` (blocks of :data:`MOONCAKE_BLOCK` tokens).

    The same file is ``--to vllm-timed``: vLLM's ``timed_trace`` dataset reads
    these four fields by default. Replay it at the trace's times with
    ``vllm bench serve --dataset-name timed_trace --dataset-path FILE
    --self-timed --timed-trace-sec-multiplier 0.001`` (ms to s)
    ``--timed-trace-chunk-hash-size 512`` (vLLM's default block is 16 tokens).
    """
    ms = np.rint(table["arrival_s"].to_numpy() * 1000).astype(np.int64).tolist()
    hashes = mooncake_hash_ids(table)
    for t, i, o, h in zip(
        ms,
        table["input_tokens"].to_list(),
        table["output_tokens"].to_list(),
        hashes,
        strict=True,
    ):
        fh.write(
            orjson.dumps({"timestamp": t, "input_length": i, "output_length": o, "hash_ids": h})
        )
        fh.write(b"\n")


def write_vllm_custom(table: pl.DataFrame, fh: BinaryIO, *, tokenizer: str | None = None) -> None:
    """vLLM ``bench serve --dataset-name custom`` JSONL: ``{"prompt", "output_tokens"}``.

    Prompts come from :mod:`burstlab.workload.prompts`: exactly
    ``input_tokens`` tokens under ``tokenizer`` when one is given, else the
    fallback's word-per-token estimate. Blocks of :func:`mooncake_hash_ids`
    become shared text, so session turns share their prefixes. A failed
    request (0 output tokens) is written with 1, since a server rejects
    ``max_tokens`` 0. vLLM's custom dataset keeps no timing (it sends at
    ``--request-rate``), shuffles unless ``--disable-shuffle``, wraps each
    prompt in the chat template unless ``--skip-chat-template``, and uses
    ``output_tokens`` only with ``--custom-output-len -1``.
    """
    synth = make_synth("text", tokenizer=tokenizer, block=MOONCAKE_BLOCK)
    outputs = np.maximum(table["output_tokens"].to_numpy(), 1).tolist()
    for key, (n, out, hashes) in enumerate(
        zip(table["input_tokens"].to_list(), outputs, mooncake_hash_ids(table), strict=True)
    ):
        prompt = synth.build(n, key, hashes)
        fh.write(orjson.dumps({"prompt": prompt.text, "output_tokens": out}))
        fh.write(b"\n")
