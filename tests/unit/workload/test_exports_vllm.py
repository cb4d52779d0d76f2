"""vLLM exports read back: timed_trace (Mooncake fields) and custom (prompt text) JSONL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest

from burstlab import read_trace
from burstlab.core.errors import InputError
from burstlab.workload.exports import export
from burstlab.workload.prompts import count_fallback_tokens


def table() -> pl.DataFrame:
    """Two sessions of growing inputs (as with --history) and three lone requests."""
    n = 7
    return pl.DataFrame(
        {
            "arrival_s": np.arange(n) * 0.75,
            "model": ["ChatGPT"] * n,
            "log_type": ["conversation"] * 4 + ["api"] * 3,
            "session_id": ["s1", "s2", "s1", "s2", None, None, None],
            "turn": pl.Series([0, 0, 1, 1, None, None, None], dtype=pl.Int32),
            "input_tokens": pl.Series([700, 40, 1300, 90, 3, 1, 2500], dtype=pl.Int32),
            "output_tokens": pl.Series([100, 5, 0, 7, 3, 1, 64], dtype=pl.Int32),
            "failed": [False, False, True, False, False, False, False],
            "elapsed_s": pl.Series([None] * n, dtype=pl.Float64),
        }
    )


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_vllm_timed_is_the_mooncake_file_without_sessions(tmp_path: Path) -> None:
    src = table().with_columns(
        pl.lit(None, pl.String).alias("session_id"), pl.lit(None, pl.Int32).alias("turn")
    )
    timed = export(src, tmp_path / "t.jsonl", to="vllm-timed")
    assert timed.read_bytes() == export(src, tmp_path / "m.jsonl", to="mooncake").read_bytes()
    back, report = read_trace(timed, format="mooncake")
    assert report.format == "mooncake"
    assert back["input_tokens"].equals(src["input_tokens"])
    assert back["output_tokens"].equals(src["output_tokens"].clip(1))
    assert back["failed"].equals(src["failed"])
    assert np.allclose(back["arrival_s"].to_numpy(), src["arrival_s"].to_numpy(), atol=6e-4)
    assert list(lines(timed)[0]) == [
        "timestamp", "input_length", "output_length", "hash_ids", "failed"
    ]  # fmt: skip


def test_vllm_timed_keeps_whole_session_turns(tmp_path: Path) -> None:
    """vLLM has no sessions: each turn is sent whole, sharing the previous turn's blocks."""
    src = table()
    rows = lines(export(src, tmp_path / "t.jsonl", to="vllm-timed"))
    assert [r["input_length"] for r in rows] == src["input_tokens"].to_list()
    assert all("session_id" not in r and "delay" not in r for r in rows)
    assert rows[2]["hash_ids"][:1] == rows[0]["hash_ids"][:1]  # type: ignore[index]


def test_vllm_custom_prompts_have_the_request_lengths(tmp_path: Path) -> None:
    src = table()
    rows = lines(export(src, tmp_path / "c.jsonl", to="vllm-custom"))
    assert [list(r) for r in rows] == [["prompt", "output_tokens", "failed"]] * src.height
    assert [r["failed"] for r in rows] == src["failed"].to_list()
    prompts = [str(r["prompt"]) for r in rows]
    assert [count_fallback_tokens(p) for p in prompts] == src["input_tokens"].to_list()
    # a failed request (0 output tokens) asks for 1: servers reject max_tokens 0
    assert [r["output_tokens"] for r in rows] == [100, 5, 1, 7, 3, 1, 64]
    # turn 1 of s1 shares turn 0's one full 512-token block; other requests share nothing
    first = prompts[0].split()
    assert prompts[2].split()[:512] == first[:512]
    assert prompts[2].split()[512] != first[512]
    assert prompts[6].split()[0] not in {p.split()[0] for p in prompts[:4]}
    again = export(src, tmp_path / "again.jsonl", to="vllm-custom")
    assert again.read_bytes() == (tmp_path / "c.jsonl").read_bytes()  # deterministic


def test_prompts_with_a_tokenizer_are_exact(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Regex, models, pre_tokenizers

    # One token per letter: every word costs its length, so fitting is not trivial.
    tok = tokenizers.Tokenizer(
        models.WordLevel({c: i for i, c in enumerate("?abcdefghijklmnopqrstuvwxyz")}, "?")
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), "isolated")]
    )
    tok.save(str(tmp_path / "tokenizer.json"))
    src = table()
    for to in ("vllm-custom", "guidellm"):
        path = export(src, tmp_path / f"{to}.jsonl", to=to, tokenizer=str(tmp_path))
        rows = lines(path)
        counts = [len(tok.encode(str(r["prompt"]), add_special_tokens=False).ids) for r in rows]
        assert counts == src["input_tokens"].to_list(), to


def test_vllm_custom_option_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"only files named \*\.jsonl"):
        export(table(), tmp_path / "c.json", to="vllm-custom")
    with pytest.raises(
        InputError, match="--tokenizer applies only to --to vllm-custom or guidellm"
    ):
        export(table(), tmp_path / "m.jsonl", to="vllm-timed", tokenizer="gpt2")
    assert not list(tmp_path.iterdir())
