"""The OpenAI wire format of the mock server: request models (pydantic), response JSON.

Prompts are counted with the fallback tokenizer (one token per
whitespace-separated word) or as the length of a token-id list; response length
follows ``max_tokens``, ``ignore_eos`` and ``min_tokens`` as
:func:`response_length` describes. Responses are made of :data:`WORDS`.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from burstlab.core.errors import invalid
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


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request asked for, once validated."""

    stream: bool
    include_usage: bool
    prompt_tokens: int
    tokens: int
    finish: Finish


#: A response length in tokens.
Length = Annotated[int, Field(ge=1, le=MAX_RESPONSE_TOKENS)]
#: ``min_tokens``: 0 is allowed.
MinLength = Annotated[int, Field(ge=0, le=MAX_RESPONSE_TOKENS)]
#: A prompt as token ids.
TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
#: A prompt as texts.
Texts = Annotated[list[str], Field(min_length=1)]
#: A completions prompt: a text, token ids, texts, or a list of token-id lists or text lists.
Prompt = Annotated[
    str | TokenIds | Texts | Annotated[list[TokenIds | Texts], Field(min_length=1)],
    Field(union_mode="left_to_right"),
]

#: Strict JSON types (``"5"`` is not 5, ``1`` is not true); fields the mock has no
#: use for (``model``, ``temperature``, ``top_p``, ``n``, ``user``, ...) are accepted
#: and ignored, since real clients send them.
_WIRE = ConfigDict(strict=True, extra="ignore")


class StreamOptions(BaseModel):
    """``stream_options``: whether a stream ends with a usage chunk."""

    model_config = _WIRE

    include_usage: bool | None = None


class _Request(BaseModel):
    """The fields completions and chat share; ``None`` stands for an absent or null field."""

    model_config = _WIRE

    max_tokens: Length | None = None
    min_tokens: MinLength | None = None
    ignore_eos: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None

    @abstractmethod
    def prompt_tokens(self) -> int:
        """Tokens of the prompt, by the fallback tokenizer or as token ids."""

    @abstractmethod
    def limit(self) -> int | None:
        """The response length the request allows, ``None`` for no limit."""

    def ask(self, eos: int) -> Ask:
        """What the request asks for; ``eos`` is the natural response length."""
        tokens, finish = response_length(
            self.limit(), eos=eos, min_tokens=self.min_tokens, ignore_eos=bool(self.ignore_eos)
        )
        stream = bool(self.stream)
        usage = (
            stream and self.stream_options is not None and bool(self.stream_options.include_usage)
        )
        return Ask(stream, usage, self.prompt_tokens(), tokens, finish)


class CompletionRequest(_Request):
    """The body of ``POST /v1/completions``.

    ``prompt`` is text, a list of token ids, a list of texts or a list of
    token-id (or text) lists; a list of prompts counts the sum of their tokens
    and is answered with one choice (a mock has no use for ``n`` choices).
    ``max_tokens`` defaults to 16, as OpenAI's does.
    """

    prompt: Prompt

    @field_validator("prompt", mode="wrap")
    @classmethod
    def _prompt_shape(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        try:
            return handler(value)
        except ValidationError:  # one reason instead of one per member of the union
            raise ValueError(
                "must be a string, a non-empty list of token ids or of strings, "
                "or a list of such lists"
            ) from None

    def prompt_tokens(self) -> int:
        return _count(self.prompt)

    def limit(self) -> int:
        return COMPLETIONS_DEFAULT_MAX_TOKENS if self.max_tokens is None else self.max_tokens


class ContentPart(BaseModel):
    """One part of a chat message's content; only text parts count as prompt tokens."""

    model_config = _WIRE

    text: str | None = None


class Message(BaseModel):
    """One chat message: a role, and content as text, parts or null."""

    model_config = _WIRE

    role: str
    content: str | list[ContentPart] | None = None

    @field_validator("content", mode="wrap")
    @classmethod
    def _content_shape(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        try:
            return handler(value)
        except ValidationError:  # one reason instead of one per member of the union
            raise ValueError("must be a string, a list of content-part objects, or null") from None

    def tokens(self) -> int:
        """Tokens of the content's text, by the fallback tokenizer."""
        if isinstance(self.content, str):
            return count_fallback_tokens(self.content)
        parts = self.content or []
        return sum(count_fallback_tokens(p.text) for p in parts if p.text is not None)


class ChatRequest(_Request):
    """The body of ``POST /v1/chat/completions``.

    The length limit is ``max_completion_tokens``, else ``max_tokens`` (the
    older name), else none.
    """

    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: Length | None = None

    def prompt_tokens(self) -> int:
        return sum(m.tokens() for m in self.messages)

    def limit(self) -> int | None:
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens


def parse_request(body: bytes | bytearray, *, chat: bool, eos: int) -> Ask:
    """What the JSON ``body`` of ``/v1/completions`` (``chat=False``) or
    ``/v1/chat/completions`` asks for; ``eos`` is the natural response length.

    Raises pydantic's ``ValidationError`` (bad JSON included);
    :func:`request_error` turns it into the message of a 400.
    """
    model = ChatRequest if chat else CompletionRequest
    return model.model_validate_json(body).ask(eos)


def request_error(exc: ValidationError) -> str:
    """The message of a 400 for a bad body: the first problem, naming its field
    (``messages.0.role: Field required``), or ``body`` for bad JSON or a non-object."""
    message = invalid(exc).message
    return message if exc.errors()[0]["loc"] else f"body: {message}"


def _count(prompt: str | list[Any]) -> int:
    if isinstance(prompt, str):
        return count_fallback_tokens(prompt)
    if isinstance(prompt[0], int):  # token ids: validated, so all of them are
        return len(prompt)
    return sum(_count(p) for p in prompt)


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
