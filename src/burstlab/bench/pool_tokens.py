"""A run's prompt pool (``bench --prompts``), counted and framed as the target counts them.

A pool prompt is matched on its token count, so the count must be the target's:
with ``--tokenizer PATH|NAME`` it is the local tokenizer's, with ``--tokenizer
server`` the target's own ``/tokenize`` (:func:`~burstlab.bench.server_tokens.tokenize_texts`),
and without one a word count (an estimate). Counts leave out special tokens;
what the server puts around the text is measured once, before the run, as an
``overhead`` added to every request:

- completions: the special tokens the tokenizer adds to a text prompt (a BOS),
  the local tokenizer's, or the server's ``/tokenize`` with special tokens on
  and off;
- chat: the chat template. The target's ``/tokenize`` is asked for the count of
  ``messages`` (vLLM's and ``burstlab serve``'s take them, and apply the
  template the chat endpoint applies); the template's tokens are that count
  minus the content's. A later turn of a session adds the template of the
  assistant's reply and the new user message: measured the same way on a
  three-message chat. A server without ``messages`` in ``/tokenize`` falls back
  to the ``chat_template`` of ``tokenizer_config.json`` beside a local tokenizer,
  rendered with jinja2; with neither, the template is not counted and the
  prompts are marked inexact (``prompt_exact`` false).

The template's tokens are taken as the same for every content: true of common
templates, whose contents sit between special tokens or newlines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import numpy as np
import orjson
import polars as pl

from burstlab.bench.server_tokens import SERVER_TOKENIZER, tokenize_texts
from burstlab.core.loop import run as run_loop
from burstlab.results.metrics import percentile
from burstlab.workload.pools import (
    PoolSynth,
    TokenCounter,
    TokenizerCounter,
    chat_template_renderer,
    load_pool,
    local_counter,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from burstlab.bench.config import BenchConfig

#: The texts of the probe chats that measure a template (any short words do).
PROBE_USER = "hello there"
PROBE_REPLY = "general remarks"


class ServerCounter:
    """Counts with the target's own ``/tokenize`` (no special tokens)."""

    name = "the server's /tokenize"
    exact = True
    identity: str | None = None  # a server may change between runs: never kept

    def __init__(
        self, url: str, headers: dict[str, str], *, insecure: bool, timeout_s: float
    ) -> None:
        self.url = url
        self.headers = headers
        self.insecure = insecure
        self.timeout_s = timeout_s

    def count(self, texts: Sequence[str]) -> NDArray[np.int64]:
        ids = tokenize_texts(
            self.url, texts, self.headers, insecure=self.insecure, timeout_s=self.timeout_s
        )
        return np.fromiter((len(i) for i in ids), np.int64, len(ids))


@dataclass(frozen=True, slots=True)
class Overheads:
    """Tokens the server adds: to a request's prompt (``first``), and to a later
    chat turn beyond its history and content (``later``); ``exact`` is False when
    they could not be measured."""

    first: int
    later: int
    exact: bool
    how: str


async def _tokenize_bodies(
    url: str,
    bodies: list[dict[str, Any]],
    headers: dict[str, str],
    *,
    insecure: bool,
    timeout_s: float,
) -> list[int | None]:
    """The token count ``/tokenize`` answers for each body, None where it refuses."""
    endpoint = url.rstrip("/") + "/tokenize"
    out: list[int | None] = []
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for body in bodies:
            async with session.post(
                endpoint,
                data=orjson.dumps(body),
                headers={**headers, "Content-Type": "application/json"},
                ssl=not insecure,
                allow_redirects=False,
            ) as resp:
                raw = await resp.content.read(1 << 20)
                if resp.status != 200:
                    out.append(None)
                    continue
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                out.append(None)
                continue
            tokens = data.get("tokens") if isinstance(data, dict) else None
            out.append(len(tokens) if isinstance(tokens, list) else None)
    return out


def _ask(
    config: BenchConfig, headers: dict[str, str], bodies: list[dict[str, Any]]
) -> list[int | None]:
    """Counts for ``bodies`` from the target's ``/tokenize``; all None when it
    cannot be reached (the run's own checks then say so)."""
    try:
        return run_loop(
            _tokenize_bodies(
                config.url,
                bodies,
                headers,
                insecure=config.insecure,
                timeout_s=config.connect_timeout_s + 20,
            )
        )
    except (TimeoutError, OSError, ValueError, aiohttp.ClientError):
        return [None] * len(bodies)


def _chat(*contents: str) -> list[dict[str, str]]:
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]


def special_overhead_from_server(config: BenchConfig, headers: dict[str, str]) -> int | None:
    """Tokens the server adds to a text prompt (a BOS), from ``/tokenize`` with
    special tokens on and off, in llama.cpp's dialect or vLLM's; None if neither."""
    for text, special in (("content", "add_special"), ("prompt", "add_special_tokens")):
        on, off = _ask(
            config,
            headers,
            [{text: PROBE_USER, special: True}, {text: PROBE_USER, special: False}],
        )
        if on is not None and off is not None:
            return on - off
    return None


def chat_overheads(
    config: BenchConfig, headers: dict[str, str], counter: TokenCounter
) -> Overheads:
    """The chat template's tokens (see the module docstring)."""
    user, reply = counter.count([PROBE_USER, PROBE_REPLY]).tolist()
    one, three = _ask(
        config,
        headers,
        [
            {"messages": _chat(PROBE_USER)},
            {"messages": _chat(PROBE_USER, PROBE_REPLY, PROBE_USER)},
        ],
    )
    if one is not None and three is not None:
        return Overheads(
            one - user, three - one - reply - user, True, "the server's /tokenize on messages"
        )
    render = (
        chat_template_renderer(config.tokenizer)
        if config.tokenizer not in (None, SERVER_TOKENIZER)
        else None
    )
    if render is not None:
        one, three = counter.count(
            [render(_chat(PROBE_USER)), render(_chat(PROBE_USER, PROBE_REPLY, PROBE_USER))]
        ).tolist()
        return Overheads(
            one - user, three - one - reply - user, True, "tokenizer_config.json's chat_template"
        )
    return Overheads(0, 0, False, "not counted: the chat template is unknown")


def pool_synth(config: BenchConfig, headers: dict[str, str] | None = None) -> PoolSynth:
    """The prompt builder of a run with ``config.prompts``: the pool drawn and
    counted (once per process), and the server's overheads measured."""
    assert config.prompts is not None
    headers = headers or {}
    counter: TokenCounter
    # llama.cpp's own /tokenize by default, as for its synthetic prompts.
    by_server = config.tokenizer is None and config.backend == "llamacpp"
    if config.tokenizer == SERVER_TOKENIZER or by_server:
        counter = ServerCounter(
            config.url, headers, insecure=config.insecure, timeout_s=config.connect_timeout_s + 50
        )
        cache_key: Any = ("server", config.url)  # counts do not depend on headers
    else:
        counter = local_counter(config.tokenizer)
        cache_key = ("local", config.tokenizer)
    pool = load_pool(
        config.prompts, counter, pool_size=config.pool_size, seed=config.seed, cache_key=cache_key
    )
    if not counter.exact:  # word counts: nothing added, an estimate anyway
        over = Overheads(0, 0, False, "none (word counts)")
    elif config.api == "chat":
        over = chat_overheads(config, headers, counter)
    elif isinstance(counter, TokenizerCounter):
        added = counter.special_overhead()
        over = Overheads(added, added, True, "the tokenizer's special tokens")
    else:
        bos = special_overhead_from_server(config, headers)
        how = "the server's /tokenize" if bos is not None else "not counted: no /tokenize"
        over = Overheads(bos or 0, bos or 0, bos is not None, how)
    synth = PoolSynth(
        pool,
        overhead=over.first,
        followup_overhead=over.later,
        exact=pool.exact and over.exact,
        seed=config.seed,
        overhead_how=over.how,
        reply_counter=None if isinstance(counter, ServerCounter) else counter,
    )
    _described[_config_key(config)] = synth.describe()
    return synth


#: :meth:`PoolSynth.describe` of each pool built in this process, by :func:`_config_key`.
_described: dict[tuple[Any, ...], str] = {}


def _config_key(config: BenchConfig) -> tuple[Any, ...]:
    return (config.prompts, config.pool_size, config.seed, config.tokenizer, config.api, config.url)


def describe_pool(config: BenchConfig) -> str | None:
    """The line describing the pool of ``config`` as this process built it for a run
    (its draw, lengths, counter and overheads); None if it built none."""
    return _described.get(_config_key(config))


def length_gap_line(table: pl.DataFrame) -> str | None:
    """One line on how far the prompts sent were from the workload's input lengths
    (requests that were sent; ``input_tokens`` against ``input_tokens_workload``),
    in tokens; None when no request was sent."""
    sent = table.filter(
        pl.col("sent_s").is_not_null() & pl.col("input_tokens_workload").is_not_null()
    )
    if sent.height == 0:
        return None
    gap = (sent["input_tokens"] - sent["input_tokens_workload"]).abs().to_numpy()
    wanted, got = int(sent["input_tokens_workload"].sum()), int(sent["input_tokens"].sum())
    p50, p90 = percentile(gap, 50), percentile(gap, 90)
    return (
        f"input tokens: {got:,} sent for the workload's {wanted:,}; per request off by "
        f"median {p50 or 0:,.0f}, p90 {p90 or 0:,.0f}, max {int(gap.max()):,}"
    )
