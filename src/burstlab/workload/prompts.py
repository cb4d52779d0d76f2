"""Prompts of an exact token length, for benchmarks and prompt-carrying exports.

A request of the workload says how many input tokens it has; a server is
sent a prompt. :class:`PromptSynth` turns ``(n_tokens, key, hash_ids)`` into
one, in three ways (:func:`make_synth`):

- :class:`TokenIdSynth`: random token ids, exact for any model whose
  vocabulary has ``vocab_size`` entries (for ``/v1/completions`` with ids);
- :class:`FallbackTextSynth`: text of common English words, each a single
  token with or without a leading space in GPT-2 (r50k), cl100k, o200k,
  Llama 2 and Llama 3 vocabularies (checked against all five), so a text of
  ``n`` words is ``n`` tokens there: an estimate elsewhere, hence ``exact=False``;
- :class:`TokenizerTextSynth`: the same words, fitted to exactly ``n`` tokens
  under a real Hugging Face tokenizer (the optional ``tokenizers`` package).

Prompt contents are a pure function of the seed and the arguments: a
counter-based hash (splitmix64) of ``(seed, stream, position)`` picks each
token, vectorised with numpy, so no state carries from one call to the next.
A request's own stream is named by ``key``; its first token is
``(key + c) mod pool``, so two keys that differ by less than the pool size
(30,000 ids, 1,000 words) differ from the first token and a server's prefix
cache only hits where the workload shares a prefix. With Mooncake-style
``hash_ids`` (one id per ``block`` tokens) each block is the stream of its id,
so equal ids give identical blocks and distinct ids distinct ones.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from burstlab.core.errors import InputError

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from tokenizers import Tokenizer

#: Tokens per ``hash_ids`` block, as in Mooncake traces.
BLOCK = 512
#: Token ids below this and at or above ``vocab_size - ID_MARGIN`` are left
#: out: special and control tokens live at the ends of common vocabularies.
ID_MARGIN = 1000

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_KEY, _BLOCK = 1, 2  # stream tags: a request's own tokens; a hash_ids block
_FILL_START = 1 << 40  # stream positions of filler words, far past any prompt
_FIT_TRIES = 16


def count_fallback_tokens(text: str) -> int:
    """Tokens of ``text`` under the shipped fallback tokenizer: one per
    whitespace-separated word (the fallback builds prompts from words that are
    single tokens in common BPE vocabularies)."""
    return len(text.split())


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt of ``tokens`` input tokens: ``text`` or ``token_ids``, never both.

    ``exact`` says whether ``tokens`` is the count under the server's own
    tokenizer (token ids, or text fitted with a real tokenizer) rather than
    the fallback's estimate.
    """

    text: str | None
    token_ids: list[int] | None
    tokens: int
    exact: bool


class PromptSynth(Protocol):
    """Builds the prompt of one request."""

    def build(self, n_tokens: int, key: int, hash_ids: Sequence[int] | None = None) -> Prompt:
        """A prompt of exactly ``n_tokens`` tokens (under the synth's tokenizer).

        ``key`` (e.g. the request's index) names the request's own tokens.
        ``hash_ids`` gives one id per ``block`` tokens of the input, the last
        block cut to what remains; ids past the input are ignored, and tokens
        past the last id come from ``key``'s stream.
        """
        ...


@functools.cache
def fallback_words() -> tuple[str, ...]:
    """The fallback vocabulary: 1,000 common lowercase words, most frequent first."""
    text = resources.files("burstlab.workload").joinpath("prompt_words.txt").read_text("utf-8")
    return tuple(text.split())


def _mix64(x: int) -> int:
    """splitmix64's finaliser on one Python integer."""
    x &= _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _mix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64's finaliser, in place over an array (uint64 arithmetic wraps)."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


@dataclass(frozen=True, slots=True)
class _Segment:
    """``length`` tokens from the start of stream ``(tag, value)``."""

    tag: int
    value: int
    length: int


@dataclass(frozen=True, slots=True)
class _Streams:
    """Deterministic streams of unit indices in ``[0, pool)``, one per ``(tag, value)``."""

    seed: int
    pool: int
    block: int

    def _base(self, tag: int, value: int) -> int:
        return _mix64(_mix64(self.seed * _GOLDEN + tag) ^ (value & _MASK))

    def _first(self, tag: int, value: int) -> int:
        """Position 0 of a stream: distinct for values less than ``pool`` apart."""
        return (value + _mix64(self.seed ^ (tag << 32))) % self.pool

    def segments(self, n: int, key: int, hash_ids: Sequence[int] | None) -> list[_Segment]:
        """How a prompt of ``n`` tokens splits into streams: hash blocks, then ``key``."""
        out: list[_Segment] = []
        done = 0
        for h in hash_ids or ():
            if done >= n:
                break
            length = min(self.block, n - done)
            out.append(_Segment(_BLOCK, int(h), length))
            done += length
        if done < n:
            out.append(_Segment(_KEY, key, n - done))
        return out

    def units(self, segments: Sequence[_Segment], start: int = 0) -> NDArray[np.intp]:
        """The units of the segments, concatenated; ``start`` offsets every stream."""
        lengths = np.array([s.length for s in segments], dtype=np.int64)
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(0, dtype=np.intp)
        bases = np.array([self._base(s.tag, s.value) for s in segments], dtype=np.uint64)
        offsets = np.cumsum(lengths) - lengths
        pos = np.arange(total, dtype=np.int64) - np.repeat(offsets, lengths) + start
        x = pos.astype(np.uint64)
        x *= np.uint64(_GOLDEN)
        x += np.repeat(bases, lengths)
        units = (_mix(x) % np.uint64(self.pool)).astype(np.intp)
        if start == 0:
            units[offsets] = [self._first(s.tag, s.value) for s in segments]
        return units


def _check_length(n_tokens: int) -> None:
    if n_tokens < 0:
        raise ValueError(f"a prompt cannot have {n_tokens} tokens")


class TokenIdSynth:
    """Random token ids in ``[ID_MARGIN, vocab_size - ID_MARGIN)``: exact by construction."""

    def __init__(self, seed: int = 0, vocab_size: int = 32000, block: int = BLOCK) -> None:
        if vocab_size <= 3 * ID_MARGIN:
            raise InputError(f"vocab size must exceed {3 * ID_MARGIN}, got {vocab_size}")
        self._streams = _Streams(seed, vocab_size - 2 * ID_MARGIN, block)

    def build(self, n_tokens: int, key: int, hash_ids: Sequence[int] | None = None) -> Prompt:
        """Token ids; see :meth:`PromptSynth.build`."""
        _check_length(n_tokens)
        units = self._streams.units(self._streams.segments(n_tokens, key, hash_ids))
        return Prompt(None, (units + ID_MARGIN).tolist(), n_tokens, exact=True)


class FallbackTextSynth:
    """Space-separated words of :func:`fallback_words`: one token per word, an estimate."""

    def __init__(self, seed: int = 0, block: int = BLOCK) -> None:
        self._words = np.array(fallback_words(), dtype=object)
        self._streams = _Streams(seed, len(self._words), block)

    def build(self, n_tokens: int, key: int, hash_ids: Sequence[int] | None = None) -> Prompt:
        """Text of ``n_tokens`` words; see :meth:`PromptSynth.build`."""
        _check_length(n_tokens)
        units = self._streams.units(self._streams.segments(n_tokens, key, hash_ids))
        return Prompt(" ".join(self._words[units].tolist()), None, n_tokens, exact=False)


class TokenizerTextSynth:
    """Words fitted to exactly ``n`` tokens under a real tokenizer (no special tokens).

    Each segment (a hash block, or the request's own tokens) starts as the
    words of its stream; the last segment is then trimmed by whole words and
    padded with words that cost one token, re-encoding the whole text until it
    has exactly ``n`` tokens. Full hash blocks are fitted on their own, so
    equal ids give identical text. The whole prompt is always exact; each block
    is also exactly ``block`` tokens of it where the tokenizer splits at spaces
    and a word costs the same at the start of a text as after a space (the
    fallback words under GPT-2, cl100k, o200k and Llama vocabularies).
    Counts leave out special tokens: a server that adds a BOS token or a chat
    template sees that many more.
    """

    def __init__(
        self, tokenizer: Tokenizer, name: str = "tokenizer", seed: int = 0, block: int = BLOCK
    ) -> None:
        self._tok = tokenizer
        self._name = name
        self._block = block
        words = fallback_words()
        self._words = np.array(words, dtype=object)
        self._streams = _Streams(seed, len(words), block)
        # What each word costs after a space, the way it appears inside a prompt.
        lead = self._count(words[0])
        self._cost = np.array(
            [
                len(e.ids) - lead
                for e in tokenizer.encode_batch(
                    [f"{words[0]} {w}" for w in words], add_special_tokens=False
                )
            ],
            dtype=np.int64,
        )
        fillers = np.flatnonzero(self._cost == 1)
        if fillers.size == 0:
            raise InputError(
                f"tokenizer {name}: none of the fallback words is a single token, "
                "so prompts of an exact length cannot be built with it"
            )
        self._fillers = fillers
        self._block_text = functools.lru_cache(maxsize=4096)(self._fit_block)

    def _count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def _fit_block(self, h: int) -> str:
        return self._fit("", _Segment(_BLOCK, h, self._block), self._block)

    def _fit(self, head: str, seg: _Segment, target: int) -> str:
        """``head`` and words of ``seg``'s stream, exactly ``target`` tokens in all."""
        units = self._streams.units([seg])
        words = units[: int(np.searchsorted(np.cumsum(self._cost[units]), seg.length, "right"))]
        chosen: list[int] = words.tolist()
        filled = 0
        for _ in range(_FIT_TRIES):
            body = " ".join(self._words[chosen].tolist())
            text = f"{head} {body}" if head and body else head or body
            have = self._count(text)
            if have == target:
                return text
            if have > target:
                if not chosen:
                    break
                cum = np.cumsum(self._cost[chosen[::-1]])
                del chosen[-(int(np.searchsorted(cum, have - target)) + 1) :]
            else:
                more = target - have
                picks = self._streams.units(
                    [_Segment(seg.tag, seg.value, more)], _FILL_START + filled
                )
                chosen += self._fillers[picks % self._fillers.size].tolist()
                filled += more
        raise InputError(
            f"tokenizer {self._name}: could not fit a prompt of exactly {target} tokens",
            hint="use --tokenizer with a BPE, SentencePiece or WordPiece tokenizer.json",
        )

    def build(self, n_tokens: int, key: int, hash_ids: Sequence[int] | None = None) -> Prompt:
        """Text of exactly ``n_tokens`` tokens; see :meth:`PromptSynth.build`."""
        _check_length(n_tokens)
        segments = self._streams.segments(n_tokens, key, hash_ids)
        if not segments:
            return Prompt("", None, 0, exact=True)
        # Every segment but the last is a full hash block: fitted alone, so shared.
        head = " ".join(self._block_text(s.value) for s in segments[:-1])
        return Prompt(self._fit(head, segments[-1], n_tokens), None, n_tokens, exact=True)


def load_tokenizer(spec: str) -> Tokenizer:
    """A Hugging Face tokenizer: a ``tokenizer.json``, a folder holding one, or a hub name.

    Raises :class:`InputError` when the optional ``tokenizers`` package is
    missing, the file is unreadable, or the hub cannot be reached (offline).
    """
    try:
        from tokenizers import Tokenizer  # noqa: PLC0415 - an optional extra, loaded on use
    except ImportError:
        raise InputError(
            f"--tokenizer {spec}: the optional 'tokenizers' package is not installed",
            hint="pip install 'burstlab[tokenizers]'",
        ) from None
    path = Path(spec)
    if path.is_dir():
        path = path / "tokenizer.json"
        if not path.is_file():
            raise InputError(f"--tokenizer {spec}: the folder has no tokenizer.json")
    if path.is_file():
        try:
            return Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises plain Exception on bad JSON
            raise InputError(f"--tokenizer {spec}: not a tokenizer.json: {exc}") from None
    try:
        return Tokenizer.from_pretrained(spec)
    except Exception as exc:  # offline, unknown name, gated repository
        raise InputError(
            f"--tokenizer {spec}: cannot load it from the Hugging Face hub: {exc}",
            hint="pass the path of a local tokenizer.json (or a folder holding one)",
        ) from None


def make_synth(
    mode: Literal["ids", "text"],
    tokenizer: str | None = None,
    seed: int = 0,
    vocab_size: int = 32000,
    block: int = BLOCK,
) -> PromptSynth:
    """The synth for a mode: ``ids``; ``text`` with ``tokenizer`` (exact) or without (fallback)."""
    if block < 1:
        raise InputError(f"block must be at least 1 token, got {block}")
    if mode == "ids":
        if tokenizer is not None:
            raise InputError("--tokenizer applies to text prompts, not token ids")
        return TokenIdSynth(seed, vocab_size, block)
    if tokenizer is None:
        return FallbackTextSynth(seed, block)
    return TokenizerTextSynth(load_tokenizer(tokenizer), tokenizer, seed, block)
