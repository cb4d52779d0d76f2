"""The OpenAI wire format of the mock server: request models (pydantic), response JSON.

Prompts are counted by the server's :class:`~burstlab.server.tokens.PromptCounter`
(a ``tokenizer.json``, or one token per whitespace-separated word) or as the
length of a token-id list; response length follows ``max_tokens``,
``ignore_eos``, ``min_tokens`` and ``stop`` as :func:`response_length` and
:func:`apply_stop` describe. Responses are made of :data:`WORDS`.

What the mock cannot honestly do is refused with a 400 naming the parameter
(:class:`RequestError`): ``n`` other than 1, ``logprobs``/``top_logprobs``,
``echo``; ``stream_options`` without ``stream`` is refused as vLLM does.
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
from burstlab.server.tokens import PromptCounter, WordCounter

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


class RequestError(Exception):
    """A request refused before any work: HTTP ``status``, a message, the request
    parameter at fault (``param``, ``None`` when none is) and the error ``kind``
    (the ``type`` of OpenAI's error body)."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request asked for, once validated.

    ``tokens`` is the response length once ``stop`` strings are applied;
    ``text_end`` the length in characters of the response text when a stop
    string cut it (the stop string itself is not sent), else ``None``.
    """

    stream: bool
    include_usage: bool
    prompt_tokens: int
    tokens: int
    finish: Finish
    text_end: int | None = None


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

#: Strict JSON types (``"5"`` is not 5, ``1`` is not true); fields that do not change
#: what the mock sends (``temperature``, ``top_p``, ``seed``, ``user``, ...) are
#: accepted and ignored, since real clients send them.
_WIRE = ConfigDict(strict=True, extra="ignore")


class StreamOptions(BaseModel):
    """``stream_options``: whether a stream ends with a usage chunk."""

    model_config = _WIRE

    include_usage: bool | None = None


class _Request(BaseModel):
    """The fields completions and chat share; ``None`` stands for an absent or null field."""

    model_config = _WIRE

    model: str | None = None
    max_tokens: Length | None = None
    min_tokens: MinLength | None = None
    ignore_eos: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | Annotated[list[str], Field(max_length=16)] | None = None
    n: int | None = None
    echo: bool | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError("only 1 is supported: the mock generates one sequence per request")
        return value

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("echo is not supported by the mock server")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None and any(
            s == "" for s in ([value] if isinstance(value, str) else value)
        ):
            raise ValueError("stop strings must not be empty")
        return value

    @abstractmethod
    def prompt_tokens(self, counter: PromptCounter) -> int:
        """Tokens of the prompt, by ``counter`` or as token ids."""

    @abstractmethod
    def limit(self) -> int | None:
        """The response length the request allows, ``None`` for no limit."""

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def ask(self, eos: int, counter: PromptCounter) -> Ask:
        """What the request asks for; ``eos`` is the natural response length."""
        if self.stream_options is not None and not self.stream:
            raise RequestError(
                400, "stream_options: only allowed when stream is true", "stream_options"
            )
        tokens, finish = response_length(
            self.limit(), eos=eos, min_tokens=self.min_tokens, ignore_eos=bool(self.ignore_eos)
        )
        text_end = None
        if self.stop is not None:
            tokens, finish, text_end = apply_stop(tokens, finish, self.stops(), self.min_tokens)
        stream = bool(self.stream)
        usage = (
            stream and self.stream_options is not None and bool(self.stream_options.include_usage)
        )
        return Ask(stream, usage, self.prompt_tokens(counter), tokens, finish, text_end)


class CompletionRequest(_Request):
    """The body of ``POST /v1/completions``.

    ``prompt`` is text, a list of token ids, a list of texts or a list of
    token-id (or text) lists; a list of prompts counts the sum of their tokens
    and is answered with one choice. Text is encoded with the tokenizer's
    special tokens (a BOS where it adds one), as vLLM encodes a completions
    prompt. ``max_tokens`` defaults to 16, as OpenAI's does. ``logprobs`` is
    refused (the mock has no probabilities to report).
    """

    prompt: Prompt
    logprobs: int | None = None

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("logprobs are not supported by the mock server")
        return value

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

    def prompt_tokens(self, counter: PromptCounter) -> int:
        return _count(self.prompt, counter)

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

    def texts(self) -> list[str]:
        """The content's text parts (a string content is one)."""
        if isinstance(self.content, str):
            return [self.content]
        return [p.text for p in self.content or [] if p.text is not None]

    def token_ids(self, counter: PromptCounter) -> list[int]:
        """Token ids of the content's text, without special tokens (no chat template)."""
        return [t for text in self.texts() for t in counter.encode(text, special=False)]


class ChatRequest(_Request):
    """The body of ``POST /v1/chat/completions``.

    The length limit is ``max_completion_tokens``, else ``max_tokens`` (the
    older name), else none. The prompt counts each message's text content,
    without special tokens or a chat template. ``logprobs: true`` and
    ``top_logprobs`` are refused.
    """

    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: Length | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | int | None) -> bool | int | None:
        if value is not None and value is not False:
            raise ValueError("logprobs are not supported by the mock server")
        return value

    def prompt_tokens(self, counter: PromptCounter) -> int:
        return sum(len(m.token_ids(counter)) for m in self.messages)

    def limit(self) -> int | None:
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens


class TokenizeRequest(BaseModel):
    """The body of vLLM's ``POST /tokenize``: a ``prompt`` (text or token ids) or
    chat ``messages``, and whether to add special tokens."""

    model_config = _WIRE

    model: str | None = None
    prompt: str | TokenIds | None = None
    messages: Annotated[list[Message], Field(min_length=1)] | None = None
    add_special_tokens: bool | None = None


def parse_request(
    body: bytes | bytearray,
    *,
    chat: bool,
    eos: int,
    model: str | None = None,
    counter: PromptCounter | None = None,
) -> Ask:
    """What the JSON ``body`` of ``/v1/completions`` (``chat=False``) or
    ``/v1/chat/completions`` asks for; ``eos`` is the natural response length,
    ``model`` the served model's id (a request may omit it; ``None``: any model),
    ``counter`` counts text prompts (default: one token per word).

    Raises :class:`RequestError`: a 400 for a bad body (bad JSON included), a
    404 for a model other than the one served (vLLM's ``NotFoundError``).
    """
    kind = ChatRequest if chat else CompletionRequest
    try:
        request = kind.model_validate_json(body)
    except ValidationError as exc:
        raise request_error(exc) from None
    if model is not None and request.model is not None and request.model != model:
        raise RequestError(
            404, f"The model `{request.model}` does not exist.", "model", "NotFoundError"
        )
    return request.ask(eos, counter or WordCounter())


def request_error(exc: ValidationError) -> RequestError:
    """The 400 for a bad body: the first problem, naming its field
    (``messages.0.role: Field required``, param ``messages.0.role``), or
    ``body`` for bad JSON or a non-object (param ``None``)."""
    message = invalid(exc).message
    loc = exc.errors()[0]["loc"]
    if not loc:
        return RequestError(400, f"body: {message}")
    return RequestError(400, message, ".".join(str(p) for p in loc))


def _count(prompt: str | list[Any], counter: PromptCounter) -> int:
    if isinstance(prompt, str):
        return len(counter.encode(prompt, special=True))
    if isinstance(prompt[0], int):  # token ids: validated, so all of them are
        return len(prompt)
    return sum(_count(p, counter) for p in prompt)


def prompt_ids(prompt: str | list[int], counter: PromptCounter, *, special: bool) -> list[int]:
    """Token ids of a ``/tokenize`` prompt: text encoded by ``counter``, ids as given."""
    return counter.encode(prompt, special=special) if isinstance(prompt, str) else list(prompt)


def apply_stop(
    tokens: int, finish: Finish, stops: tuple[str, ...], min_tokens: int | None = None
) -> tuple[int, Finish, int | None]:
    """A response of ``tokens`` tokens cut at the first ``stops`` string in its text.

    The response ends with the token that completes the stop string (that token
    counts in usage) and its text ends just before the string, as OpenAI's and
    vLLM's do; a match that completes before ``min_tokens`` tokens is skipped,
    as vLLM's stop checker skips it. Returns the tokens, the finish reason and
    the text's length in characters (``None`` when no stop string occurs).
    """
    if not stops or tokens == 0:
        return tokens, finish, None
    text = "".join(_word(k) for k in range(tokens))
    floor = max(1, min_tokens or 0)
    best: tuple[int, int] | None = None  # (tokens through the match, match start)
    for stop in stops:
        start = max(0, _offset(floor - 1) - len(stop) + 1)
        idx = text.find(stop, start)
        if idx < 0:
            continue
        through = _token_at(idx + len(stop) - 1) + 1
        if best is None or (through, idx) < best:
            best = (through, idx)
    if best is None:
        return tokens, finish, None
    return best[0], "stop", best[1]


_CYCLE = [len(w) + 1 for w in WORDS]
_CYCLE_CHARS = sum(_CYCLE)
_STARTS = [sum(_CYCLE[:i]) for i in range(len(WORDS))]


def _offset(k: int) -> int:
    """Characters of the response text before token ``k``."""
    whole, rest = divmod(k, len(WORDS))
    return whole * _CYCLE_CHARS + _STARTS[rest]


def _token_at(char: int) -> int:
    """The token whose text holds character ``char`` of the response."""
    whole, rest = divmod(char, _CYCLE_CHARS)
    k = max(i for i, s in enumerate(_STARTS) if s <= rest)
    return whole * len(WORDS) + k


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

    def token(self, k: int, finish: Finish | None, text_end: int | None = None) -> bytes:
        """The event of content token ``k`` (0-based); ``finish`` on the last one;
        ``text_end``: the response text stops at that character (a stop string)."""
        text = _word(k)
        if text_end is not None:
            text = text[: max(0, text_end - _offset(k))]
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
        if ask.text_end is not None:
            text = text[: ask.text_end]
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
