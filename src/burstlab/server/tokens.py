"""How the mock server counts prompt tokens: with a ``tokenizer.json`` (exact), or by words.

A server that times its prefill on a prompt's length must count that length as
the client's model would. :class:`FileTokenizer` encodes with a Hugging Face
``tokenizer.json`` read from a local file (never downloaded; the ``tokenizers``
package is imported only when one is given). Without one, :class:`WordCounter`
counts one token per whitespace-separated word, which is exact for prompts made
by burstlab's fallback synth and an estimate otherwise; the method in use is
stated in ``/v1/models`` (``token_count`` of each model).

Chat prompts are counted as the sum of each message's text content encoded
without special tokens: no chat template is applied (a ``tokenizer.json`` has
none), so a real server's count is higher by its template's tokens per message.
Token-id prompts are exact whatever the counter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import xxhash

from burstlab.core.errors import InputError


class PromptCounter(Protocol):
    """Turns prompt text into token ids, as the served model's tokenizer would."""

    #: How tokens are counted, in words (shown in ``/v1/models``).
    method: str

    def encode(self, text: str, *, special: bool) -> list[int]:
        """Token ids of ``text``; ``special``: with the tokenizer's special tokens
        (a BOS, as for a completions prompt), else without (a chat message's content)."""
        ...


class WordCounter:
    """One token per whitespace-separated word: burstlab's fallback tokenizer.

    Its ids are a 31-bit hash of each word: stable, but no model's vocabulary.
    """

    method = "whitespace-words: one token per whitespace-separated word (no --tokenizer given)"

    def encode(self, text: str, *, special: bool) -> list[int]:  # noqa: ARG002 - none to add
        return [xxhash.xxh32_intdigest(word.encode()) >> 1 for word in text.split()]


class FileTokenizer:
    """The exact count of a Hugging Face ``tokenizer.json`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.method = f"tokenizer: {path.name} (exact; chat: message contents, no template)"
        self._tok: Any = _load(path)

    def encode(self, text: str, *, special: bool) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=special).ids)


def _load(path: Path) -> Any:
    """A ``tokenizers.Tokenizer`` from ``path`` (a file, or a folder holding
    ``tokenizer.json``); :class:`InputError` when it cannot be read. Never downloads."""
    where = path / "tokenizer.json" if path.is_dir() else path
    if not where.is_file():
        raise InputError(
            f"no such file: {where}",
            field="--tokenizer",
            hint="pass a local tokenizer.json; serve never downloads one",
        )
    try:
        from tokenizers import Tokenizer  # noqa: PLC0415 - an optional extra, loaded on use
    except ImportError:
        raise InputError(
            "the optional 'tokenizers' package is not installed",
            field="--tokenizer",
            hint="pip install 'burstlab[tokenizers]'",
        ) from None
    try:
        return Tokenizer.from_file(str(where))
    except Exception as exc:  # the Rust side raises plain Exception on bad JSON
        raise InputError(f"{where} is not a tokenizer.json: {exc}", field="--tokenizer") from None
