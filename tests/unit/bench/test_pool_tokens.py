"""A run's prompt pool as the target counts it: the tokens the server adds (a BOS, a
chat template) measured from its /tokenize, from a local chat_template, or marked
unknown; and the line on how far sent lengths were from the workload's."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import polars as pl
import pytest

from burstlab.bench.config import BenchConfig
from burstlab.bench.pool_tokens import (
    PROBE_REPLY,
    PROBE_USER,
    describe_pool,
    length_gap_line,
    pool_synth,
)
from burstlab.server.app import make_app
from burstlab.server.fixed import FixedTiming
from burstlab.server.hosting import serve_in_thread
from burstlab.server.llamacpp import hf_tokenizer_json
from burstlab.server.tokens import FileTokenizer
from support.fake_llama import fake_llama

pytest.importorskip("tokenizers")

POOL = str(Path(__file__).parents[2] / "data" / "sharegpt_small.json")
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture
def tokenizer_dir(tmp_path: Path) -> Path:
    (tmp_path / "tokenizer.json").write_text(json.dumps(hf_tokenizer_json()))
    return tmp_path


def _count(tokenizer_dir: Path, text: str) -> int:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    return len(tok.encode(text, add_special_tokens=False).ids)


def test_chat_template_from_tokenizer_config_when_the_server_has_none(
    tokenizer_dir: Path,
) -> None:
    """llama-server's /tokenize takes no messages: the template beside the tokenizer
    is rendered and counted instead, for a first turn and for a later one."""
    config_file = tokenizer_dir / "tokenizer_config.json"
    config_file.write_bytes(orjson.dumps({"chat_template": TEMPLATE, "bos_token": "<s>"}))
    with fake_llama() as server:
        config = BenchConfig(url=server.url, api="chat", prompts=POOL, tokenizer=str(tokenizer_dir))
        synth = pool_synth(config)
    first = "<s><|user|>\n" + PROBE_USER + "<|end|>\n<|assistant|>\n"
    three = (
        f"<s><|user|>\n{PROBE_USER}<|end|>\n<|assistant|>\n{PROBE_REPLY}<|end|>\n"
        f"<|user|>\n{PROBE_USER}<|end|>\n<|assistant|>\n"
    )
    want_first = _count(tokenizer_dir, first) - _count(tokenizer_dir, PROBE_USER)
    want_later = (
        _count(tokenizer_dir, three)
        - _count(tokenizer_dir, first)
        - _count(tokenizer_dir, PROBE_REPLY)
        - _count(tokenizer_dir, PROBE_USER)
    )
    assert want_first > 0
    assert want_later > 0
    assert synth.overhead == want_first
    assert synth.followup.overhead == want_later
    assert synth.exact
    prompt = synth.build(500, key=0)
    assert prompt.tokens == _count(tokenizer_dir, prompt.text or "") + want_first
    assert "tokenizer_config.json's chat_template" in synth.describe()


def test_an_unknown_template_is_not_counted_and_marked_inexact(tokenizer_dir: Path) -> None:
    with fake_llama() as server:
        config = BenchConfig(url=server.url, api="chat", prompts=POOL, tokenizer=str(tokenizer_dir))
        synth = pool_synth(config)
    assert synth.overhead == 0
    assert not synth.exact
    assert not synth.build(50, key=1).exact
    assert "not counted: the chat template is unknown" in synth.describe()


@pytest.mark.parametrize(
    ("tokenizer", "backend"), [("server", "generic"), (None, "llamacpp"), ("server", "vllm")]
)
def test_the_server_counts_the_pool_and_its_bos(tokenizer: str | None, backend: str) -> None:
    """--tokenizer server (llamacpp's default): the pool counted by llama-server's
    /tokenize (bytes there), and the BOS it adds to a text prompt measured from it."""
    with fake_llama(vllm=backend == "vllm") as server:
        config = BenchConfig(
            url=server.url, backend=backend, prompts=POOL, tokenizer=tokenizer, pool_size=9
        )
        synth = pool_synth(config)
        line = describe_pool(config)
    assert synth.overhead == 1
    assert synth.pool.size == 9
    for text, n in zip(synth.pool.texts, synth.pool.lengths.tolist(), strict=True):
        assert n == len(text.encode())
    assert synth.build(100, key=0).tokens == synth.build(100, key=0).tokens
    assert line is not None
    assert "9 of 40 prompts (seeded draw)" in line
    assert "counted by the server's /tokenize; +1 token per request" in line


def test_burstlab_serve_counts_chat_messages_without_a_template(tokenizer_dir: Path) -> None:
    app = make_app(FixedTiming(), counter=FileTokenizer(tokenizer_dir / "tokenizer.json"))
    with serve_in_thread(app) as url:
        config = BenchConfig(url=url, api="chat", prompts=POOL, tokenizer="server")
        synth = pool_synth(config)
    assert (synth.overhead, synth.followup.overhead) == (0, 0)
    assert synth.exact
    assert "the server's /tokenize on messages" in synth.describe()


def test_length_gap_line() -> None:
    table = pl.DataFrame(
        {
            "sent_s": [0.1, 0.2, None, 0.4],
            "input_tokens": [12, 90, 5, 300],
            "input_tokens_workload": [10, 100, 5, 300],
        }
    )
    assert length_gap_line(table) == (
        "input tokens: 402 sent for the workload's 410; per request off by median 2, p90 8, max 10"
    )
    assert length_gap_line(table.filter(pl.col("sent_s").is_null())) is None
