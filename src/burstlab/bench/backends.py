"""Request bodies for OpenAI-compatible servers, with output-length forcing per backend.

A workload says how many tokens each response should have; servers only
produce that many if told to ignore their end-of-sequence token. Each backend
gets the fields it understands (unknown fields make some servers reject the
request), and every field can be switched on or off.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict

from burstlab.core.errors import InputError

#: ``chat`` and ``completions`` are OpenAI's ``/v1`` APIs; ``generate`` is the
#: backend's own native API (see :mod:`burstlab.bench.native`).
Api = Literal["chat", "completions", "generate"]
APIS: tuple[str, ...] = ("completions", "chat", "generate")
BACKENDS = ("vllm", "sglang", "llamacpp", "tgi", "lightllm", "openai", "generic")
PATHS: dict[str, str] = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


class Builder(Protocol):
    """Builds one request's JSON body (:class:`BodyBuilder` for ``/v1``,
    :class:`~burstlab.bench.native.NativeBodyBuilder` for ``--api generate``)."""

    def body(self, prompt: Any, max_tokens: int) -> bytes:
        """The body asking for ``max_tokens`` tokens after ``prompt``."""
        ...


class Forcing(BaseModel):
    """How a request asks for exactly ``output_tokens`` tokens.

    ``max_field`` is the field carrying the length (``max_tokens``, or OpenAI's
    ``max_completion_tokens`` for chat); ``ignore_eos`` and ``min_tokens`` are
    vLLM/SGLang extensions that keep a model from stopping early.
    """

    model_config = ConfigDict(extra="forbid")

    max_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    ignore_eos: bool = False
    min_tokens: bool = False


def default_forcing(backend: str, api: Api) -> Forcing:
    """The forcing a backend understands: vLLM takes all three; SGLang and
    llama.cpp's ``llama-server`` take ``ignore_eos`` (llama-server reads
    ``max_tokens`` as its ``n_predict``, and ``ignore_eos`` keeps its sampler from
    ending early, so the length is exact unless the slot's context fills); OpenAI
    wants ``max_completion_tokens`` on chat; TGI and generic servers get
    ``max_tokens`` only. LightLLM takes ``ignore_eos`` on its native API
    (``--api generate``) and gets ``max_tokens`` only on ``/v1``."""
    if backend == "vllm":
        return Forcing(ignore_eos=True, min_tokens=True)
    if backend in ("sglang", "llamacpp"):
        return Forcing(ignore_eos=True)
    if backend == "lightllm":
        return Forcing(ignore_eos=api == "generate")
    if backend == "openai":
        return Forcing(max_field="max_completion_tokens" if api == "chat" else "max_tokens")
    if backend in ("tgi", "generic"):
        return Forcing()
    raise InputError(
        f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}", field="--backend"
    )


def backend_extra(backend: str) -> dict[str, Any]:
    """Fields a backend gets beyond the length forcing: llama.cpp streams its own
    ``timings`` with every chunk (``timings_per_token``), so bench keeps the server's
    account of each request beside its own (the final chunk carries them anyway;
    the first token's chunk tells when the server streamed it)."""
    return {"timings_per_token": True} if backend == "llamacpp" else {}


def backend_keepalive_s(backend: str) -> float:
    """Seconds bench keeps an idle connection for reuse. llama-server's HTTP library
    (cpp-httplib) closes a connection idle for 5 s (``Keep-Alive: timeout=5``) without
    a word; a client that keeps it longer (aiohttp's default is 15 s) now and then
    sends a request as the close arrives and loses it (``reset.before_headers``: 2 of
    300 requests of a bursty replay). 4 s stays clear of that; others keep 15 s."""
    return 4.0 if backend == "llamacpp" else 15.0


class BodyBuilder:
    """Builds the JSON body of one ``/v1`` request; one instance per run.
    ``temperature`` (0: greedy) goes in every body."""

    __slots__ = ("_api", "_base", "_forcing")

    def __init__(
        self,
        api: Api,
        model: str,
        forcing: Forcing,
        *,
        stream: bool = True,
        extra: dict[str, Any] | None = None,
        temperature: float = 0.0,
    ) -> None:
        self._api = api
        self._forcing = forcing
        base: dict[str, Any] = {"model": model, "stream": stream, "temperature": temperature}
        if stream:
            base["stream_options"] = {"include_usage": True}
        if forcing.ignore_eos:
            base["ignore_eos"] = True
        base.update(extra or {})
        self._base = base

    def body(self, prompt: str | list[int] | list[dict[str, str]], max_tokens: int) -> bytes:
        """The request body: ``prompt`` is completion text or token ids, or chat messages."""
        body = dict(self._base)
        if self._api == "chat":
            body["messages"] = prompt
        else:
            body["prompt"] = prompt
        body[self._forcing.max_field] = max_tokens
        if self._forcing.min_tokens:
            body["min_tokens"] = max_tokens
        return orjson.dumps(body)
