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

from burstlab.bench.server_tokens import SERVER_TOKENIZER, tokenize_texts
from burstlab.core.loop import run as run_loop
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
    if config.tokenizer == SERVER_TOKENIZER:
        counter = ServerCounter(
            config.url, headers, insecure=config.insecure, timeout_s=config.connect_timeout_s + 50
        )
        cache_key: Any = ("server", config.url, orjson.dumps(headers, option=orjson.OPT_SORT_KEYS))
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
        over = Overheads(counter.special_overhead(), 0, True, "the tokenizer's special tokens")
    else:
        bos = special_overhead_from_server(config, headers)
        over = Overheads(bos or 0, 0, bos is not None, "the server's /tokenize")
    return PoolSynth(
        pool,
        overhead=over.first,
        followup_overhead=over.later,
        exact=pool.exact and over.exact,
        seed=config.seed,
        overhead_how=over.how,
        reply_counter=None if isinstance(counter, ServerCounter) else counter,
    )
