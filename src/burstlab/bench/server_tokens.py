"""Prompts exact under the target's own tokenizer, read from its ``/tokenize``.

llama.cpp's ``llama-server`` tokenizes text on a ``POST /tokenize`` with
``{"content": ..., "add_special": false}`` (vLLM and ``burstlab serve`` with
``{"prompt": ..., "add_special_tokens": false}``: tried next). :class:`ServerTokenSynth` asks
the server once, before the run, for the token ids of each of the 1,000 fallback
words with a leading space (the way a word appears inside a prompt), then builds
every prompt as the concatenation of its words' ids, cut to exactly ``n`` ids.
The prompt is sent as token ids (``/v1/completions``), which llama-server takes
as they are (no BOS is added to an id prompt), so the server's
``usage.prompt_tokens`` is exactly the requested count, whatever the vocabulary:
a byte-level one with a few merges as well as a 128k BPE. The ids are real text
of the engine's vocabulary, not random ids that could hit control tokens.

Prompts keep :mod:`burstlab.workload.prompts`' streams: a request's own words
come from its ``key``, and Mooncake-style ``hash_ids`` blocks are the same ids
wherever the same hash appears, so prefix-cache hits are where the workload
shares a prefix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np
import orjson

from burstlab.core.errors import BurstlabError, InputError
from burstlab.core.loop import run as run_loop
from burstlab.workload.prompts import BLOCK, Prompt, _Segment, _Streams, fallback_words

#: ``--tokenizer server``: count with the target's own ``/tokenize``.
SERVER_TOKENIZER = "server"

#: Tokenize calls in flight at once while reading the vocabulary.
_PARALLEL = 8

_cache: dict[tuple[str, str], tuple[tuple[int, ...], ...]] = {}


#: The two ``/tokenize`` dialects, tried in order: llama.cpp's, then vLLM's (and
#: ``burstlab serve``'s); each asks for no special tokens.
_SHAPES: tuple[tuple[str, str], ...] = (
    ("content", "add_special"),
    ("prompt", "add_special_tokens"),
)


async def _tokenize_words(
    url: str, words: Sequence[str], headers: dict[str, str], *, insecure: bool, timeout_s: float
) -> list[list[int]]:
    endpoint = url.rstrip("/") + "/tokenize"
    limit = asyncio.Semaphore(_PARALLEL)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    hint = "--tokenizer server needs a server with /tokenize (llama-server, vLLM)"

    async def one(
        session: aiohttp.ClientSession, word: str, shape: tuple[str, str]
    ) -> list[int] | int:
        """The ids of ``word``, or the HTTP status of a refusal."""
        body = orjson.dumps({shape[0]: word, shape[1]: False})
        async with (
            limit,
            session.post(
                endpoint,
                data=body,
                headers={**headers, "Content-Type": "application/json"},
                ssl=not insecure,
                allow_redirects=False,
            ) as resp,
        ):
            raw = await resp.content.read(1 << 20)
            if resp.status != 200:
                return resp.status
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BurstlabError(f"{endpoint} did not answer JSON", hint=hint) from None
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list):
            raise BurstlabError(f"{endpoint} answered no 'tokens' list", hint=hint)
        # llama-server answers ids, or {"id", "piece"} objects with ``with_pieces``.
        return [int(t["id"] if isinstance(t, dict) else t) for t in tokens]

    async with aiohttp.ClientSession(timeout=timeout) as session:
        status = 0
        for shape in _SHAPES:
            probe = await one(session, words[0], shape)
            if isinstance(probe, int):
                status = probe
                continue
            rest = await asyncio.gather(*(one(session, w, shape) for w in words[1:]))
            out = [probe]
            for ids in rest:
                if isinstance(ids, int):
                    raise BurstlabError(f"{endpoint} answered HTTP {ids}", hint=hint)
                out.append(ids)
            return out
        raise BurstlabError(f"{endpoint} answered HTTP {status}", hint=hint)


def word_ids(
    url: str,
    headers: dict[str, str] | None = None,
    *,
    insecure: bool = False,
    timeout_s: float = 60.0,
) -> tuple[tuple[int, ...], ...]:
    """The target's token ids of each fallback word after a space (no special
    tokens), asked once per URL and process. A server that cannot be reached or
    has no ``/tokenize`` raises :class:`BurstlabError`."""
    key = (url.rstrip("/"), orjson.dumps(headers or {}, option=orjson.OPT_SORT_KEYS).decode())
    if key not in _cache:
        words = [f" {w}" for w in fallback_words()]
        ids = tokenize_texts(url, words, headers, insecure=insecure, timeout_s=timeout_s)
        _cache[key] = tuple(tuple(i) for i in ids)
    return _cache[key]


def tokenize_texts(
    url: str,
    texts: Sequence[str],
    headers: dict[str, str] | None = None,
    *,
    insecure: bool = False,
    timeout_s: float = 60.0,
) -> list[list[int]]:
    """The target's token ids of each text, without special tokens, from its
    ``/tokenize`` (either dialect; a few calls in flight at once). A server that
    cannot be reached or has no ``/tokenize`` raises :class:`BurstlabError`."""
    try:
        return run_loop(
            _tokenize_words(url, texts, headers or {}, insecure=insecure, timeout_s=timeout_s)
        )
    except (TimeoutError, OSError, ValueError, aiohttp.ClientError) as exc:
        raise BurstlabError(
            f"--tokenizer server: cannot read {url.rstrip('/')}/tokenize: "
            f"{str(exc) or type(exc).__name__}"
        ) from None


class ServerTokenSynth:
    """Token-id prompts of exactly ``n`` tokens of the server's own vocabulary: the
    ids of :func:`fallback_words` (``vocab`` holds each word's ids), concatenated
    and cut to ``n``. ``exact`` is True: the ids are what the server counts."""

    def __init__(self, vocab: Sequence[Sequence[int]], seed: int = 0, block: int = BLOCK) -> None:
        kept = [np.asarray(ids, dtype=np.int64) for ids in vocab if len(ids) > 0]
        if not kept:
            raise InputError("--tokenizer server: the server tokenized every word to nothing")
        self._ids = kept
        self._streams = _Streams(seed, len(kept), block)

    @classmethod
    def from_server(
        cls,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        seed: int = 0,
        insecure: bool = False,
        timeout_s: float = 60.0,
    ) -> ServerTokenSynth:
        """The synth for the server at ``url`` (see :func:`word_ids`)."""
        return cls(word_ids(url, headers, insecure=insecure, timeout_s=timeout_s), seed)

    def _segment(self, seg: _Segment) -> np.ndarray[Any, np.dtype[np.int64]]:
        # Every word is at least one token: ``length`` words cover ``length`` tokens.
        units = self._streams.units([seg])
        return np.concatenate([self._ids[u] for u in units.tolist()])[: seg.length]

    def build(self, n_tokens: int, key: int, hash_ids: Sequence[int] | None = None) -> Prompt:
        """Token ids; see :meth:`burstlab.workload.prompts.PromptSynth.build`."""
        if n_tokens < 0:
            raise ValueError(f"a prompt cannot have {n_tokens} tokens")
        segments = self._streams.segments(n_tokens, key, hash_ids)
        if not segments:
            return Prompt(None, [], 0, exact=True)
        ids = np.concatenate([self._segment(s) for s in segments])
        return Prompt(None, ids.tolist(), n_tokens, exact=True)
