"""Each export against the field list of the peer tool that reads it.

The peers are not test dependencies, so their loaders' fields are written
down here, with the version and source file they were read from. A field a
peer reads must have the type it expects; a field it does not read must be
one the peer ignores (AIPerf's trace model allows extra fields; vLLM and
GuideLLM read named columns only), and never one of the names a peer gives
a meaning to (AIPerf merges ``extra`` into the request body).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pytest

from burstlab import read_trace
from burstlab.workload.exports import FOREIGN, MOONCAKE_BLOCK, export, to_burstgpt
from burstlab.workload.prompts import count_fallback_tokens

# aiperf 0.13.0, aiperf/dataset/loader/models.py, class MooncakeTrace (pydantic,
# extra="allow" from AIPerfBaseModel in aiperf/common/models/base_models.py).
# timestamp and delay are ms; TurnMetadata.delay_ms (common/models/dataset_models.py)
# is ge=0. Exactly one of input_length, text_input, messages, payload; hash_ids only
# with input_length. Rows sharing session_id are one conversation, in file order
# (dataset/loader/mooncake_trace.py, _group_traces); the first turn needs a
# timestamp under --fixed-schedule (timing/strategies/fixed_schedule.py).
AIPERF_MOONCAKE: dict[str, tuple[type, ...]] = {
    "input_length": (int,),
    "output_length": (int,),
    "hash_ids": (list,),
    "timestamp": (int, float),
    "delay": (int, float),
    "session_id": (str,),
}
#: Fields AIPerf gives a meaning to that burstlab must never write.
AIPERF_RESERVED = {"text_input", "messages", "tools", "payload", "extra", "type", "request_body"}

# vllm 0.34.0, vllm/benchmarks/datasets/datasets.py, class TimedTrace.sample: reads
# entry.get(label) for the four default labels (--timed-trace-label-*); all but
# hash_ids are required (ValueError); hash_ids default [] and the prompt covers only
# the blocks listed (_expand_prompt), --timed-trace-chunk-hash-size tokens each.
VLLM_TIMED: dict[str, tuple[type, ...]] = {
    "timestamp": (int, float),
    "input_length": (int,),
    "output_length": (int,),
    "hash_ids": (list,),
}
# Same file, class CustomDataset: pandas.read_json(lines=True); "prompt" (str)
# required, "output_tokens" (int) read with --custom-output-len -1.
VLLM_CUSTOM: dict[str, tuple[type, ...]] = {"prompt": (str,), "output_tokens": (int,)}
# Same file, class BurstGPTDataset: pandas.read_csv, keeps Model == "GPT-4" and
# "Response tokens" > 0, then reads the row by position: [2] input, [3] output.
VLLM_BURSTGPT_POSITIONS = {2: "Request tokens", 3: "Response tokens"}

# guidellm 0.8.1, guidellm/data/preprocessors/mappers.py, GenerativeColumnMapper:
# default names per column type, matched by ^(name)(es|s)?([-_]<turn>)?$ (case-
# insensitive); data/finalizers/generative.py sends output_tokens_count as max_tokens
# (with ignore_eos), and relative_timestamp (s) drives the replay profile.
GUIDELLM_COLUMNS = {
    "prompt_tokens_count_column": ["prompt_tokens_count", "input_tokens_count"],
    "output_tokens_count_column": ["output_tokens_count", "completion_tokens_count"],
    "prefix_column": ["system_prompt", "system", "prefix"],
    "text_column": [
        "prompt", "instruction", "question", "input", "context", "content",
        "conversation", "turn", "text",
    ],
    "raw_messages_column": ["messages", "chat_messages"],
    "image_column": ["image", "picture", "photo", "img"],
    "video_column": ["video", "clip", "movie", "footage", "mp4", "mov", "avi"],
    "audio_column": ["audio", "sound", "voice", "speech", "wav", "mp3"],
    "tools_column": ["tools", "functions", "tool_definitions"],
    "tool_response_column": ["tool_response", "tool_result", "tool_output"],
    "tool_choice_column": ["tool_choice"],
    "relative_timestamp_column": ["relative_timestamp"],
    "requeue_delay_column": ["requeue_delay"],
    "request_duration_column": ["duration", "request_duration"],
    "conversation_turns_column": ["conversation_turns"],
}  # fmt: skip
GUIDELLM_WANTED = {
    "prompt": "text_column",
    "prompt_tokens_count": "prompt_tokens_count_column",
    "output_tokens_count": "output_tokens_count_column",
    "relative_timestamp": "relative_timestamp_column",
}
# guidellm 0.8.1, guidellm/data/deserializers/trace_mooncake.py (validate_row) and
# schemas/data/deserializers/trace_mooncake.py: hash_id_block_size 512, ids >= 0,
# ceil(input_length / 512) == len(hash_ids); timestamps in the file's unit.


def table() -> pl.DataFrame:
    """Two sessions whose inputs include the earlier turns (as with --history), one
    session of per-turn inputs, lone requests, and two failures (0 output tokens)."""
    rows = [
        # arrival, session, turn, input, output
        (0.0, "a", 0, 700, 100),
        (0.4, None, None, 30, 0),
        (1.0, "b", 0, 40, 5),
        (2.5, "a", 1, 1300, 0),
        (3.0, "b", 1, 90, 7),
        (4.2, "a", 2, 1900, 50),
        (5.0, None, None, 2500, 64),
    ]
    arrival, session, turn, inputs, outputs = map(list, zip(*rows, strict=True))
    n = len(rows)
    return pl.DataFrame(
        {
            "arrival_s": arrival,
            "model": ["GPT-4"] * n,
            "log_type": ["conversation"] * n,
            "session_id": pl.Series(session, dtype=pl.String),
            "turn": pl.Series(turn, dtype=pl.Int32),
            "input_tokens": pl.Series(inputs, dtype=pl.Int32),
            "output_tokens": pl.Series(outputs, dtype=pl.Int32),
            "failed": [o == 0 for o in outputs],
            "elapsed_s": pl.Series([None] * n, dtype=pl.Float64),
        }
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def check_types(row: dict[str, Any], fields: dict[str, tuple[type, ...]]) -> None:
    for name, types in fields.items():
        value = row.get(name)
        if value is not None:
            assert isinstance(value, types), (name, value)
            assert not isinstance(value, bool), (name, value)


def test_mooncake_fits_aiperf_trace_model(tmp_path: Path) -> None:
    src = table()
    rows = lines(export(src, tmp_path / "m.jsonl", to="mooncake"))
    assert len(rows) == src.height
    first_turn: dict[str, int] = {}
    for i, row in enumerate(rows):
        assert set(row) <= set(AIPERF_MOONCAKE) | {"failed"}
        assert not set(row) & AIPERF_RESERVED
        check_types(row, AIPERF_MOONCAKE)
        assert row["input_length"] >= 1
        assert row["output_length"] >= 1
        assert all(isinstance(h, int) and h >= 0 for h in row["hash_ids"])
        assert isinstance(row["failed"], bool)
        sid = row["session_id"]
        if sid is not None and sid not in first_turn:
            first_turn[sid] = i
            assert row["delay"] is None
            assert row["timestamp"] is not None
        elif sid is not None:
            assert row["delay"] >= 0
    assert first_turn == {"a": 0, "b": 2}


def test_mooncake_sessions_replay_as_aiperf_sends_them(tmp_path: Path) -> None:
    """AIPerf's default for mooncake sessions (deltas without responses) sends a turn
    as the earlier turns' prompts and live replies, then the turn's own tokens: with
    replies of output_length tokens that is the workload's input, turn by turn."""
    src = table()
    rows = lines(export(src, tmp_path / "m.jsonl", to="mooncake"))
    history: dict[str, int] = {}
    sent = []
    for row in rows:
        sid = row["session_id"]
        total = history.get(sid, 0) + row["input_length"] if sid else row["input_length"]
        sent.append(total)
        if sid:
            history[sid] = total + row["output_length"]
    # session a's failed turn asks for 1 token (the workload's 0 is not a request),
    # so the next turn carries that one extra token of live reply
    assert sent == [700, 30, 40, 1300, 90, 1901, 2500]
    arrival_ms = [round(a * 1000) for a in src["arrival_s"]]
    assert [r["timestamp"] for r in rows] == arrival_ms
    assert [r["delay"] for r in rows] == [None, None, None, 2500, 2000, 1700, None]
    # fresh blocks for a later turn's own tokens: AIPerf prepends the history itself
    for row in rows:
        assert len(row["hash_ids"]) == math.ceil(row["input_length"] / MOONCAKE_BLOCK)
    assert not set(rows[3]["hash_ids"]) & set(rows[0]["hash_ids"])


def test_per_turn_session_inputs_are_kept(tmp_path: Path) -> None:
    """Inputs that do not hold the earlier turns (a trace's per-turn tokens) are
    written as they are: AIPerf adds the history, as burstlab bench does."""
    src = table().with_columns(
        pl.when(pl.col("session_id") == "a")
        .then(pl.Series([700, 0, 0, 50, 0, 60, 0], dtype=pl.Int32))
        .otherwise(pl.col("input_tokens"))
        .alias("input_tokens")
    )
    rows = lines(export(src, tmp_path / "m.jsonl", to="mooncake"))
    assert [r["input_length"] for r in rows] == src["input_tokens"].to_list()


@pytest.mark.parametrize("to", ["mooncake", "vllm-timed"])
def test_vllm_timed_trace_reads_it(tmp_path: Path, to: str) -> None:
    """Both files replay in vLLM: every row has the four labels, and the blocks
    cover the input (a prompt is only as long as its blocks)."""
    rows = lines(export(table(), tmp_path / "t.jsonl", to=to))
    for row in rows:
        assert set(VLLM_TIMED) <= set(row)
        check_types(row, VLLM_TIMED)
        assert len(row["hash_ids"]) * MOONCAKE_BLOCK >= row["input_length"]
        # GuideLLM's mooncake reader wants exactly the blocks that cover the input
        assert len(row["hash_ids"]) == math.ceil(row["input_length"] / MOONCAKE_BLOCK)
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)


def test_vllm_custom_fields(tmp_path: Path) -> None:
    src = table()
    rows = lines(export(src, tmp_path / "c.jsonl", to="vllm-custom"))
    for row in rows:
        assert set(row) == set(VLLM_CUSTOM) | {"failed"}
        check_types(row, VLLM_CUSTOM)
    assert [count_fallback_tokens(r["prompt"]) for r in rows] == src["input_tokens"].to_list()


def guidellm_column(name: str) -> str | None:
    """The GuideLLM column type a file column maps to, as its mapper matches names."""
    hits = [
        kind
        for kind, names in GUIDELLM_COLUMNS.items()
        for base in names
        if re.fullmatch(rf"({re.escape(base)})(es|s)?([-_]\d+)?", name, re.IGNORECASE)
    ]
    assert len(hits) <= 1, (name, hits)
    return hits[0] if hits else None


def test_guidellm_columns_are_the_ones_it_maps(tmp_path: Path) -> None:
    src = table()
    rows = lines(export(src, tmp_path / "g.jsonl", to="guidellm"))
    for row in rows:
        assert {k: guidellm_column(k) for k in row} == {**GUIDELLM_WANTED, "failed": None}
        assert isinstance(row["prompt"], str)
        assert isinstance(row["relative_timestamp"], float)
    assert [r["prompt_tokens_count"] for r in rows] == src["input_tokens"].to_list()
    assert [count_fallback_tokens(r["prompt"]) for r in rows] == src["input_tokens"].to_list()
    assert [r["output_tokens_count"] for r in rows] == src["output_tokens"].clip(1).to_list()
    assert [r["relative_timestamp"] for r in rows] == src["arrival_s"].to_list()
    # output_tokens (vllm-custom's name) would be read by GuideLLM as nothing
    assert guidellm_column("output_tokens") is None


def test_burstgpt_csv_fits_vllm_positions(tmp_path: Path) -> None:
    src = table().with_columns(pl.lit(None, pl.String).alias("session_id"))
    path = export(src, tmp_path / "b.csv", to="burstgpt")
    header = path.read_text().splitlines()[0].split(",")
    assert header[-1] == "Failed"
    assert {i: header[i] for i in VLLM_BURSTGPT_POSITIONS} == VLLM_BURSTGPT_POSITIONS
    frame = to_burstgpt(src)
    assert frame["Response tokens"].min() == 1  # vLLM keeps rows with > 0
    back, report = read_trace(path)
    assert report.format == "burstgpt"
    assert back["failed"].equals(src["failed"])


@pytest.mark.parametrize("to", FOREIGN)
def test_a_failed_row_never_asks_for_zero_tokens(tmp_path: Path, to: str) -> None:
    src = table()
    name = "x.csv" if to == "burstgpt" else "x.jsonl"
    path = export(src, tmp_path / name, to=to)
    if to == "burstgpt":
        frame = pl.read_csv(path)
        outputs, failed = frame["Response tokens"].to_list(), frame["Failed"].to_list()
    else:
        rows = lines(path)
        key = {"vllm-custom": "output_tokens", "guidellm": "output_tokens_count"}.get(
            to, "output_length"
        )
        outputs, failed = [r[key] for r in rows], [r["failed"] for r in rows]
    assert min(outputs) == 1
    assert failed == src["failed"].to_list()
    want = np.maximum(src["output_tokens"].to_numpy(), 1).tolist()
    assert outputs == want
