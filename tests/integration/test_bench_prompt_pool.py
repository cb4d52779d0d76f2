"""bench with a ShareGPT-format prompt pool against ``burstlab serve --tokenizer``: every
request is sent a real pool prompt, the nearest in length, and the length bench records
is the one the server reports (usage.prompt_tokens), for completions and for chat, and
behind a proxy that applies a chat template (as vLLM does) for chat sessions."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from burstlab.bench.run import BenchConfig, bench
from burstlab.results.records import load_records
from burstlab.server.app import make_app
from burstlab.server.fixed import FixedTiming
from burstlab.server.hosting import serve_in_thread
from burstlab.server.llamacpp import hf_tokenizer_json
from burstlab.server.tokens import FileTokenizer
from burstlab.workload.pools import read_pool
from support.frames import workload

pytest.importorskip("tokenizers")

DATA = Path(__file__).parents[1] / "data"
POOL = DATA / "sharegpt_small.json"
#: Input lengths across the pool's range, and past both ends of it.
LENGTHS = [1, 3, 9, 20, 40, 75, 120, 200, 400, 800, 1500, 3000, 6000, 40000]


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE that adds a BOS to a text prompt (llama-server's test vocabulary)."""
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    path.write_text(json.dumps(hf_tokenizer_json()))
    return path


@pytest.fixture(scope="module")
def url(tokenizer_file: Path) -> Iterator[str]:
    app = make_app(FixedTiming(ttft=0.001, itl=0.0005), counter=FileTokenizer(tokenizer_file))
    with serve_in_thread(app) as served:
        yield served


def _workload(sessions: list[str | None] | None = None) -> pl.DataFrame:
    table = workload([0.005 * i for i in range(len(LENGTHS))], sessions=sessions)
    return table.with_columns(
        pl.Series("input_tokens", LENGTHS, dtype=pl.Int32),
        pl.Series("output_tokens", [3] * len(LENGTHS), dtype=pl.Int32),
    )


def _pool_texts(tokenizer_file: Path) -> dict[str, int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    texts = read_pool(POOL).texts
    return {t: len(tok.encode(t, add_special_tokens=False).ids) for t in texts}


@pytest.mark.parametrize("api", ["completions", "chat"])
@pytest.mark.parametrize("tokenizer", ["file", "server"])
def test_requested_and_achieved_lengths_agree(
    api: str, tokenizer: str, url: str, tokenizer_file: Path, tmp_path: Path
) -> None:
    config = BenchConfig(
        url=url,
        api=api,  # type: ignore[arg-type]
        prompts=str(POOL),
        tokenizer=str(tokenizer_file) if tokenizer == "file" else "server",
    )
    result = bench(_workload(), config, tmp_path / "run")
    assert result.summary.counts.ok == len(LENGTHS)
    table = load_records(tmp_path / "run").sort("request_id")
    assert (table["input_tokens_achieved"] == table["input_tokens"]).all(), table.select(
        "input_tokens", "input_tokens_achieved"
    )
    assert table["input_tokens_workload"].to_list() == LENGTHS
    assert result.summary.lengths.input_mismatched_requests == 0
    # completions: the BOS the server adds to a text prompt; chat: message contents only
    bos = 1 if api == "completions" else 0
    counts = sorted(set(_pool_texts(tokenizer_file).values()))
    sent = table["input_tokens"].to_numpy() - bos
    assert set(sent.tolist()) <= set(counts)
    # each is the pool's nearest to the workload's length (the shorter on a tie)
    want = np.asarray(LENGTHS) - bos
    pool = np.asarray(counts)
    best = np.abs(pool[None, :] - want[:, None]).min(axis=1)
    assert (np.abs(sent - want) == best).all()
    assert sent.min() == pool.min()  # 1 token: the shortest prompt
    assert sent.max() == pool.max()  # 40,000: the longest (14,041), no cap


def test_chat_sessions_count_history_and_template(
    url: str, tokenizer_file: Path, tmp_path: Path
) -> None:
    """Later turns carry the real replies; what bench records is still what the server
    counts (the history's tokens as the server reported them, plus the pool prompt)."""
    sessions: list[str | None] = ["a", "b"] * (len(LENGTHS) // 2)
    config = BenchConfig(url=url, api="chat", prompts=str(POOL), tokenizer=str(tokenizer_file))
    result = bench(_workload(sessions), config, tmp_path / "run")
    assert result.summary.counts.ok == len(LENGTHS)
    table = load_records(tmp_path / "run")
    assert table.filter(pl.col("turn") > 0).height == len(LENGTHS) - 2
    assert (table["input_tokens_achieved"] == table["input_tokens"]).all()


def test_pool_size_and_seed_choose_the_prompts(
    url: str, tokenizer_file: Path, tmp_path: Path
) -> None:
    """A pool of 5 drawn with a seed: every prompt sent is one of those 5, the same
    5 for the same seed."""
    texts = _pool_texts(tokenizer_file)

    def lengths(seed: int, name: str) -> list[int]:
        config = BenchConfig(
            url=url,
            prompts=str(POOL),
            pool_size=5,
            seed=seed,
            tokenizer=str(tokenizer_file),
        )
        bench(_workload(), config, tmp_path / name)
        table = load_records(tmp_path / name).sort("request_id")
        return [n - 1 for n in table["input_tokens"].to_list()]

    first, again, other = lengths(3, "a"), lengths(3, "b"), lengths(4, "c")
    assert first == again
    assert len(set(first)) <= 5
    assert set(first) <= set(texts.values())
    assert first != other


def _render(messages: list[dict[str, str]]) -> str:
    """The chat template of :data:`TEMPLATE`, written out in Python (the server's side)."""
    body = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages)
    return f"<|bos|>{body}<|assistant|>\n"


#: The same template in jinja2, as a model's tokenizer_config.json carries it.
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@contextlib.contextmanager
def templating_proxy(upstream: str, *, tokenize_messages: bool) -> Iterator[str]:
    """A server that applies a chat template, as vLLM does: in front of ``burstlab
    serve`` (which applies none), it renders a chat's messages into one message
    holding the templated text, so the prompt the server counts is the template's
    tokens and the contents'. Its /tokenize takes messages (vLLM's) unless
    ``tokenize_messages`` is False (llama-server's, which refuses them)."""
    import aiohttp
    from aiohttp import web

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if "messages" in body:
            if request.path == "/tokenize" and not tokenize_messages:
                return web.json_response({"error": "no messages here"}, status=400)
            body["messages"] = [{"role": "user", "content": _render(body["messages"])}]
        async with (
            aiohttp.ClientSession() as session,
            session.post(upstream + request.path, json=body) as up,
        ):
            out = web.StreamResponse(status=up.status)
            out.content_type = up.content_type
            await out.prepare(request)
            async for chunk in up.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "burstlab-fixed"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_post("/tokenize", forward)
    app.router.add_get("/v1/models", models)
    with serve_in_thread(app) as url:
        yield url


@pytest.mark.parametrize("source", ["server", "tokenizer_config"])
def test_a_chat_template_is_counted(
    source: str, url: str, tokenizer_file: Path, tmp_path: Path
) -> None:
    """Against a server that applies a chat template, requested and achieved lengths
    agree: the template's tokens are measured from its /tokenize on messages, or (when
    it takes none) from the chat_template beside the tokenizer. Sessions included."""
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes(tokenizer_file.read_bytes())
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": TEMPLATE, "bos_token": "<|bos|>"})
    )
    sessions: list[str | None] = [None, None, "a", "b"] * (len(LENGTHS) // 4) + [None, None]
    with templating_proxy(url, tokenize_messages=source == "server") as proxy:
        config = BenchConfig(url=proxy, api="chat", prompts=str(POOL), tokenizer=str(folder))
        result = bench(_workload(sessions), config, tmp_path / "run")
    assert result.summary.counts.ok == len(LENGTHS)
    table = load_records(tmp_path / "run")
    assert table.filter(pl.col("turn") > 0).height > 0
    assert (table["input_tokens_achieved"] == table["input_tokens"]).all(), table.select(
        "turn", "input_tokens", "input_tokens_achieved"
    )
    # a first turn is its pool prompt and the template's tokens around one message
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    text = "any words at all"
    rendered = _render([{"role": "user", "content": text}])
    template = len(tok.encode(rendered, add_special_tokens=False).ids) - len(
        tok.encode(text, add_special_tokens=False).ids
    )
    assert template > 1
    firsts = table.filter(pl.col("turn").is_null() | (pl.col("turn") == 0))
    counts = set(_pool_texts(tokenizer_file).values())
    assert {n - template for n in firsts["input_tokens"].to_list()} <= counts
