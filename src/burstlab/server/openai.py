"""The OpenAI wire format of the mock server: what a request asks for, and the JSON it gets back.

A completions ``prompt`` is counted with the fallback tokenizer (one token per
whitespace-separated word) or as the length of a token-id list; response length
follows ``max_tokens``, ``ignore_eos`` and ``min_tokens`` as
:func:`response_length` describes. Responses are made of :data:`WORDS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from burstlab.workload.prompts import count_fallback_tokens

Finish = Literal["length", "stop"]

#: Words the responses are made of; each is a single token in common BPE vocabularies.
WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog")
#: ``max_tokens`` when a completions request gives none (OpenAI's default).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
#: Largest response accepted, in tokens: bounds the memory a non-streamed reply takes.
MAX_RESPONSE_TOKENS = 1 << 20


def response_length(
    max_tokens: int | None, *, eos: int, min_tokens: int | None = None, ignore_eos: bool = False
) -> tuple[int, Finish]:
    """Tokens a response has, and why it ends.

    A response is cut at ``max_tokens`` (``"length"``). Without ``ignore_eos``
    it ends earlier at its natural length ``max(eos, min_tokens)`` (``"stop"``),
    as a model would at its end-of-sequence token: ``min_tokens`` holds the
    end off, as vLLM's does. ``max_tokens=None`` (a chat request with no
    limit) ends at the natural length, or is cut there (``"length"``, standing
    in for the context limit) when ``ignore_eos`` is set.
    """
    natural = max(eos, min_tokens or 0)
    if max_tokens is None:
        return natural, "length" if ignore_eos else "stop"
    if ignore_eos or (min_tokens is not None and min_tokens >= max_tokens):
        return max_tokens, "length"
    if natural < max_tokens:
        return natural, "stop"
    return max_tokens, "length"


class BadRequestError(ValueError):
    """A request body the server refuses with 400; the message says why."""


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request asked for, once validated."""

    stream: bool
    include_usage: bool
    prompt_tokens: int
    tokens: int
    finish: Finish


def parse_request(body: object, *, chat: bool, eos: int) -> Ask:
    """Validate a decoded JSON body of ``/v1/completions`` (``chat=False``) or
    ``/v1/chat/completions``; :class:`BadRequestError` says what is wrong.

    A completions ``prompt`` is text, a list of token ids, a list of texts or a
    list of token-id lists; a list of prompts counts the sum of their tokens
    and is answered with one choice (a mock has no use for ``n`` choices).
    Chat takes ``max_completion_tokens``, else ``max_tokens``, else no limit;
    completions default to 16 tokens, as OpenAI's do.
    """
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    if chat:
        prompt_tokens = _chat_tokens(body.get("messages"))
        has_new = body.get("max_completion_tokens") is not None
        field = "max_completion_tokens" if has_new else "max_tokens"
        limit = body.get(field)
        default = None
    else:
        prompt_tokens = _prompt_tokens(body.get("prompt"))
        field, limit, default = "max_tokens", body.get("max_tokens"), COMPLETIONS_DEFAULT_MAX_TOKENS
    max_tokens = default if limit is None else _int(limit, field, low=1, high=MAX_RESPONSE_TOKENS)
    min_tokens = body.get("min_tokens")
    if min_tokens is not None:
        min_tokens = _int(min_tokens, "min_tokens", low=0, high=MAX_RESPONSE_TOKENS)
    ignore_eos = _bool(body.get("ignore_eos"), "ignore_eos")
    stream = _bool(body.get("stream"), "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequestError("'stream_options' must be an object")
    include_usage = stream and _bool((options or {}).get("include_usage"), "include_usage")
    tokens, finish = response_length(
        max_tokens, eos=eos, min_tokens=min_tokens, ignore_eos=ignore_eos
    )
    return Ask(stream, include_usage, prompt_tokens, tokens, finish)


def _int(value: object, name: str, *, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequestError(f"{name!r} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _bool(value: object, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequestError(f"{name!r} must be true or false, got {value!r}")
    return value


def _prompt_tokens(prompt: object) -> int:
    if isinstance(prompt, str):
        return count_fallback_tokens(prompt)
    if isinstance(prompt, list) and prompt:
        if all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt):
            return len(prompt)
        if all(isinstance(p, str) for p in prompt):
            return sum(count_fallback_tokens(p) for p in prompt)
        if all(isinstance(p, list) and p for p in prompt):
            return sum(_prompt_tokens(p) for p in prompt)
    raise BadRequestError(
        "'prompt' must be a string, a non-empty list of token ids, or a list of either"
    )


def _chat_tokens(messages: object) -> int:
    if not isinstance(messages, list) or not messages:
        raise BadRequestError("'messages' must be a non-empty list")
    total = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequestError(f"messages[{i}] must be an object with a 'role'")
        content = message.get("content")
        if isinstance(content, str):
            total += count_fallback_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    raise BadRequestError(f"messages[{i}].content parts must be objects")
                text = part.get("text")
                if isinstance(text, str):
                    total += count_fallback_tokens(text)
        elif content is not None:
            raise BadRequestError(f"messages[{i}].content must be a string, a list or null")
    return total


class Chunks:
    """Formats the JSON of one response in OpenAI's shapes (completions or chat)."""

    __slots__ = ("_base", "chat")

    def __init__(self, chat: bool, response_id: str, model: str) -> None:
        self.chat = chat
        obj = "chat.completion.chunk" if chat else "text_completion"
        self._base = {"id": response_id, "object": obj, "created": int(time.time()), "model": model}

    def role(self) -> bytes:
        delta = {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return _event({**self._base, "choices": [choice]})

    def token(self, k: int, finish: Finish | None) -> bytes:
        """The event of content token ``k`` (0-based); ``finish`` on the last one."""
        text = _word(k)
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            choice["delta"] = {"content": text}
        else:
            choice["text"] = text
        choice["logprobs"] = None
        choice["finish_reason"] = finish
        return _event({**self._base, "choices": [choice]})

    def usage(self, ask: Ask) -> bytes:
        return _event({**self._base, "choices": [], "usage": _usage(ask)})

    def whole(self, ask: Ask) -> bytes:
        """The non-streamed body: all tokens in one choice, and usage."""
        text = "".join(_word(k) for k in range(ask.tokens))
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choice["logprobs"] = None
        choice["finish_reason"] = ask.finish
        obj = "chat.completion" if self.chat else "text_completion"
        body = {**self._base, "object": obj, "choices": [choice], "usage": _usage(ask)}
        return orjson.dumps(body)


def _word(k: int) -> str:
    return WORDS[k % len(WORDS)] + " "


def _usage(ask: Ask) -> dict[str, int]:
    return {
        "prompt_tokens": ask.prompt_tokens,
        "completion_tokens": ask.tokens,
        "total_tokens": ask.prompt_tokens + ask.tokens,
    }


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


#: The SSE event that ends a stream.
DONE = b"data: [DONE]\n\n"
