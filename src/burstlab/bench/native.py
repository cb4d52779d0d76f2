"""Native ``/generate`` streaming APIs: one dialect per engine (``--api generate``).

BurstGPT-Perf, the benchmark burstlab follows, talks to engines through their own
generate endpoints rather than OpenAI's ``/v1``. ``--api generate`` does the same;
``--backend`` chooses the dialect from :data:`DIALECTS`, the one registry:

- ``tgi``: ``/generate_stream`` (``/generate`` unstreamed); ``max_new_tokens`` only
  (TGI has no ``ignore_eos``); the server counts in ``details.generated_tokens``.
- ``sglang``: ``/generate``; ``max_new_tokens``, ``ignore_eos``, ``min_new_tokens``;
  counts in ``meta_info``; text or token-id prompts.
- ``lightllm``: ``/generate_stream`` (``/generate`` unstreamed); ``max_new_tokens``,
  ``ignore_eos``, ``min_new_tokens``; counts in ``token.count_output_tokens``.
- ``vllm`` (the legacy ``vllm.entrypoints.api_server``): ``/generate``;
  ``max_tokens``, ``ignore_eos``, ``min_tokens``; no counts (events counted).

A dialect is three things: the path, the JSON body (``Dialect.build``), and a
per-request :class:`Reader` that turns one decoded event (or a whole non-streamed
body) into a :class:`Delta`: tokens carried, new text, finish reason, whether the
protocol's terminal event arrived, and the server's own token counts where the
protocol gives them. :class:`~burstlab.bench.client.HttpTarget` stays the one
target: it frames the bytes (server-sent events, or vLLM's delimited JSON),
decodes each event, and applies the delta to the record. Where the server counts
the generated tokens the record's ``tokens_source`` is ``usage``; where it does
not (vLLM's legacy server) every event counts as one token and ``tokens_source``
says ``events``.

The protocols were matched against each project's source:

- TGI: ``router/src/server.rs`` (``generate_stream``) and ``router/src/lib.rs``
  (``StreamResponse``, ``StreamDetails``), v1.x to v3.x: SSE ``data:`` events
  ``{"token": {"id", "text", "logprob", "special"}, "generated_text": null,
  "details": null}``; the last has ``generated_text`` and, with
  ``parameters.details``, ``details: {"finish_reason", "generated_tokens",
  "seed"}``; no ``[DONE]``. An error is an event ``{"error", "error_type"}``.
  ``router/src/validation.rs`` refuses ``temperature <= 0`` whatever
  ``do_sample`` says, so temperature 0 is sent as greedy decoding (``do_sample:
  false``, no temperature field). TGI has no ``ignore_eos`` or minimum length: a
  model that emits its end-of-sequence token stops early (``finish_reason:
  eos_token``), and the record says so.
- SGLang: ``python/sglang/srt/entrypoints/http_server.py`` (``generate_request``),
  v0.3 to v0.5: ``{"text" | "input_ids", "sampling_params": {...}, "stream":
  true}``; SSE ``data: {"text": <all text so far>, "meta_info": {"prompt_tokens",
  "completion_tokens", "finish_reason": null | {"type", ...}}}``, then ``data:
  [DONE]``; an error is ``data: {"error": {"message"}}``. Token-id prompts go as
  ``input_ids`` (exact lengths).
- LightLLM: ``lightllm/server/api_lightllm.py`` (``lightllm_generate_stream``,
  ``lightllm_generate``), v2.x to v4.x: ``{"inputs", "parameters": {...}}``; SSE
  ``data:{"token": {"id", "text", "count_output_tokens", "prompt_tokens", ...},
  "generated_text": null, "finished": bool, "finish_reason", "details": null}``;
  no ``[DONE]``: the event with ``finished: true`` ends the stream (some releases
  also fill ``generated_text`` and ``details.generated_tokens`` there; the oldest
  carry no counts, and each event then counts as one token). With
  ``do_sample`` false (its default) LightLLM decodes greedily whatever the
  temperature, so ``do_sample`` is sent as ``temperature > 0``.
- vLLM's legacy API server: ``vllm/entrypoints/api_server.py``, v0.2 to v0.11:
  ``{"prompt", "stream": true, <SamplingParams fields>}``; the stream is one JSON
  object per step, ``{"text": [<prompt + output so far>]}``, each ended by
  ``\\n`` (``\\0`` in older releases; both are read); no counts, no finish
  reason, no terminal event: the end of the body ends it. Unknown fields make
  ``SamplingParams`` raise (HTTP 500), so only its own fields are sent, and no
  ``model``. Text prompts only (a token-id prompt has no text to echo).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from burstlab.bench.backends import Forcing
from burstlab.bench.sse import MAX_EVENT_BYTES, SSEOversizeError, SSEParser
from burstlab.core.errors import InputError

Framing = Literal["sse", "json_lines"]
Prompt = str | list[int]


class NativeFormatError(Exception):
    """An event that does not have the protocol's shape (``stream_error.bad_json``)."""


@dataclass(slots=True)
class Delta:
    """What one event (or one whole body) added to a request.

    ``tokens`` is how many generated tokens it carried (0: none, e.g. SGLang's
    final event); ``completion_tokens`` and ``prompt_tokens`` are the server's own
    counts so far, where the protocol gives them; ``done`` marks the protocol's
    terminal event.
    """

    tokens: int = 0
    text: str = ""
    finish_reason: str | None = None
    done: bool = False
    completion_tokens: int | None = None
    prompt_tokens: int | None = None


class Reader:
    """Reads one request's events; a fresh one per request (cumulative fields)."""

    __slots__ = ("last_count", "last_text")

    def __init__(self) -> None:
        self.last_text = ""
        self.last_count = 0

    def event(self, obj: dict[str, Any]) -> Delta:  # pragma: no cover - abstract
        """One decoded streamed event."""
        raise NotImplementedError

    def whole(self, obj: Any) -> Delta:  # pragma: no cover - abstract
        """A whole non-streamed response body."""
        raise NotImplementedError

    def _grown(self, text: str) -> str:
        """The part of cumulative ``text`` not seen before (all of it if it does not
        extend what came before)."""
        new = text[len(self.last_text) :] if text.startswith(self.last_text) else text
        self.last_text = text
        return new

    def _counted(self, count: int | None) -> int | None:
        """Tokens added since the last cumulative ``count`` (None: no count)."""
        if count is None:
            return None
        added = max(count - self.last_count, 0)
        self.last_count = max(count, self.last_count)
        return added


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NativeFormatError(f"{what} is not an object")
    return value


class _TgiReader(Reader):
    """TGI's ``/generate_stream``: one event per token; the last carries
    ``generated_text`` and ``details``."""

    __slots__ = ()

    def event(self, obj: dict[str, Any]) -> Delta:
        token = _dict(obj.get("token"), "'token'")
        special = bool(token.get("special"))
        text = str(token.get("text") or "")
        delta = Delta(tokens=1, text="" if special else text)
        if obj.get("generated_text") is not None or obj.get("details") is not None:
            delta.done = True
            delta.finish_reason = "stop"
            self._details(obj.get("details"), delta)
        return delta

    def whole(self, obj: Any) -> Delta:
        # /generate answers one object; TGI's compat route "/" answers a list of one.
        if isinstance(obj, list) and obj:
            obj = obj[0]
        body = _dict(obj, "the response")
        if not isinstance(body.get("generated_text"), str):
            raise NativeFormatError("response has no 'generated_text'")
        delta = Delta(text=body["generated_text"], done=True, finish_reason="stop")
        self._details(body.get("details"), delta)
        return delta

    @staticmethod
    def _details(details: Any, delta: Delta) -> None:
        if not isinstance(details, dict):
            return
        if details.get("finish_reason") is not None:
            delta.finish_reason = str(details["finish_reason"])
        delta.completion_tokens = _int(details.get("generated_tokens"))
        # TGI itself sends no prompt count in a stream's details; some builds do.
        delta.prompt_tokens = _int(details.get("input_length", details.get("prompt_tokens")))


class _SglangReader(Reader):
    """SGLang's ``/generate``: cumulative ``text`` and ``meta_info`` counts per
    event, ``[DONE]`` after the last (handled by the target)."""

    __slots__ = ()

    def event(self, obj: dict[str, Any]) -> Delta:
        text = obj.get("text")
        if not isinstance(text, str):
            raise NativeFormatError("event has no 'text'")
        new = self._grown(text)
        meta = obj.get("meta_info")
        delta = Delta(text=new)
        if isinstance(meta, dict):
            count = _int(meta.get("completion_tokens"))
            delta.completion_tokens = count
            delta.prompt_tokens = _int(meta.get("prompt_tokens"))
            delta.finish_reason = _sglang_finish(meta.get("finish_reason"))
            added = self._counted(count)
            delta.tokens = added if added is not None else int(bool(new))
        else:
            delta.tokens = int(bool(new))
        return delta

    def whole(self, obj: Any) -> Delta:
        if isinstance(obj, list) and obj:
            obj = obj[0]
        delta = self.event(_dict(obj, "the response"))
        delta.done = True
        delta.finish_reason = delta.finish_reason or "stop"
        return delta


def _sglang_finish(value: Any) -> str | None:
    """SGLang's ``finish_reason``: ``{"type": "length", "length": 16}`` (or a bare
    string in older builds), None while the request runs."""
    if value is None:
        return None
    if isinstance(value, dict):
        return str(value.get("type") or "stop")
    return str(value)


class _LightllmReader(Reader):
    """LightLLM's ``/generate_stream``: one event per token with running counts;
    ``finished: true`` on the last."""

    __slots__ = ()

    def event(self, obj: dict[str, Any]) -> Delta:
        token = _dict(obj.get("token"), "'token'")
        count = _int(token.get("count_output_tokens"))
        added = self._counted(count)
        special = bool(token.get("special"))
        delta = Delta(
            tokens=1 if added is None else added,
            text="" if special else str(token.get("text") or ""),
            completion_tokens=count or None,
            prompt_tokens=_int(token.get("prompt_tokens")) or None,
        )
        if obj.get("finished") or obj.get("generated_text") is not None:
            delta.done = True
            delta.finish_reason = str(obj.get("finish_reason") or "stop")
            details = obj.get("details")  # some releases, with return_details
            if isinstance(details, dict) and _int(details.get("generated_tokens")) is not None:
                delta.completion_tokens = details["generated_tokens"]
        return delta

    def whole(self, obj: Any) -> Delta:
        body = _dict(obj, "the response")
        text = body.get("generated_text")
        if isinstance(text, list):
            text = text[0] if text else ""
        if not isinstance(text, str):
            raise NativeFormatError("response has no 'generated_text'")
        reason = body.get("finish_reason")
        if isinstance(reason, list):
            reason = reason[0] if reason else None
        return Delta(
            text=text,
            done=True,
            finish_reason=str(reason or "stop"),
            completion_tokens=_int(body.get("count_output_tokens")),
            prompt_tokens=_int(body.get("prompt_tokens")),
        )


class _VllmReader(Reader):
    """vLLM's legacy ``/generate``: ``{"text": [prompt + output so far]}`` per engine
    step, one token each (the server counts nothing; the record says ``events``)."""

    __slots__ = ()

    def event(self, obj: dict[str, Any]) -> Delta:
        return Delta(tokens=1, text=self._grown(self._text(obj)))

    def whole(self, obj: Any) -> Delta:
        # The prompt and the output in one string, with no count: one token is recorded.
        return Delta(text=self._text(_dict(obj, "the response")), done=True, finish_reason="stop")

    @staticmethod
    def _text(obj: dict[str, Any]) -> str:
        texts = obj.get("text")
        if not isinstance(texts, list) or not texts or not isinstance(texts[0], str):
            raise NativeFormatError("event has no 'text' list")
        return texts[0]


class JsonLines:
    """Frames vLLM's legacy stream: JSON objects each ended by ``\\n`` or ``\\0``.
    Same interface as :class:`~burstlab.bench.sse.SSEParser` (``feed``,
    ``pending``), bounded the same way: a line past ``max_event_bytes`` raises
    :class:`~burstlab.bench.sse.SSEOversizeError`."""

    __slots__ = ("_max", "_rest")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._rest = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The complete, non-blank lines ``chunk`` finished."""
        data = self._rest + chunk if self._rest else chunk
        if b"\0" in data:
            data = data.replace(b"\0", b"\n")
        lines = data.split(b"\n")
        self._rest = lines.pop()
        if len(self._rest) > self._max:
            raise SSEOversizeError(f"a JSON line exceeded {self._max} bytes")
        out = [line for line in lines if line.strip()]
        if any(len(line) > self._max for line in out):
            raise SSEOversizeError(f"a JSON line exceeded {self._max} bytes")
        return out

    @property
    def pending(self) -> bool:
        """Whether a line was started and not ended (the body stopped mid-object)."""
        return bool(self._rest.strip())


@dataclass(frozen=True, slots=True)
class Params:
    """What a native body carries beside the prompt: forcing and temperature."""

    forcing: Forcing
    temperature: float = 0.0


def _tgi_body(p: Params, prompt: Prompt, max_tokens: int, _stream: bool) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "max_new_tokens": max_tokens,
        "details": True,
        "do_sample": p.temperature > 0,
    }
    if p.temperature > 0:
        parameters["temperature"] = p.temperature
    return {"inputs": prompt, "parameters": parameters}


def _sglang_body(p: Params, prompt: Prompt, max_tokens: int, stream: bool) -> dict[str, Any]:
    sampling: dict[str, Any] = {"max_new_tokens": max_tokens, "temperature": p.temperature}
    if p.forcing.ignore_eos:
        sampling["ignore_eos"] = True
    if p.forcing.min_tokens:
        sampling["min_new_tokens"] = max_tokens
    key = "text" if isinstance(prompt, str) else "input_ids"
    return {key: prompt, "sampling_params": sampling, "stream": stream}


def _lightllm_body(p: Params, prompt: Prompt, max_tokens: int, _stream: bool) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "max_new_tokens": max_tokens,
        "do_sample": p.temperature > 0,
        "temperature": p.temperature,
    }
    if p.forcing.ignore_eos:
        parameters["ignore_eos"] = True
    if p.forcing.min_tokens:
        parameters["min_new_tokens"] = max_tokens
    return {"inputs": prompt, "parameters": parameters}


def _vllm_body(p: Params, prompt: Prompt, max_tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": prompt,
        "stream": stream,
        "max_tokens": max_tokens,
        "temperature": p.temperature,
    }
    if p.forcing.ignore_eos:
        body["ignore_eos"] = True
    if p.forcing.min_tokens:
        body["min_tokens"] = max_tokens
    return body


@dataclass(frozen=True, slots=True)
class Dialect:
    """One engine's native generate API.

    ``stream_path``/``whole_path``: where streamed and non-streamed requests go;
    ``framing``: how the streamed body splits into events; ``ids``: whether it
    takes token-id prompts; ``ignore_eos``/``min_tokens``: the forcing it
    understands; ``reader``: a fresh per-request :class:`Reader`.
    """

    name: str
    stream_path: str
    whole_path: str
    framing: Framing
    build: Callable[[Params, Prompt, int, bool], dict[str, Any]]
    reader: Callable[[], Reader]
    ids: bool = False
    ignore_eos: bool = True
    min_tokens: bool = True
    #: The end of the body is the end of the response (no terminal event).
    ends_at_eof: bool = False

    def path(self, stream: bool) -> str:
        return self.stream_path if stream else self.whole_path

    def framer(self) -> SSEParser | JsonLines:
        """A fresh splitter of a streamed body into event payloads."""
        return SSEParser() if self.framing == "sse" else JsonLines()


#: Every native dialect, by ``--backend`` name: the one registry.
DIALECTS: dict[str, Dialect] = {
    "tgi": Dialect(
        "tgi",
        "/generate_stream",
        "/generate",
        "sse",
        _tgi_body,
        _TgiReader,
        ignore_eos=False,
        min_tokens=False,
    ),
    "sglang": Dialect(
        "sglang", "/generate", "/generate", "sse", _sglang_body, _SglangReader, ids=True
    ),
    "lightllm": Dialect(
        "lightllm", "/generate_stream", "/generate", "sse", _lightllm_body, _LightllmReader
    ),
    "vllm": Dialect(
        "vllm", "/generate", "/generate", "json_lines", _vllm_body, _VllmReader, ends_at_eof=True
    ),
}


def dialect_for(backend: str) -> Dialect:
    """The native dialect of ``--backend``; an :class:`InputError` for one that has none."""
    try:
        return DIALECTS[backend]
    except KeyError:
        raise InputError(
            f"--api generate speaks the native API of {', '.join(DIALECTS)}; {backend!r} has none",
            field="--backend",
            hint="use --api completions or chat for an OpenAI-compatible server",
        ) from None


def check_forcing(dialect: Dialect, forcing: Forcing) -> None:
    """Refuse forcing the engine cannot take (TGI has no ``ignore_eos`` and no
    minimum length: its router rejects neither, it has no such field)."""
    if forcing.ignore_eos and not dialect.ignore_eos:
        raise InputError(f"{dialect.name}'s native API has no ignore_eos", field="--ignore-eos")
    if forcing.min_tokens and not dialect.min_tokens:
        raise InputError(
            f"{dialect.name}'s native API has no minimum output length", field="--min-tokens"
        )


class NativeBodyBuilder:
    """Builds the JSON body of one native request; one instance per run. Same
    ``body(prompt, max_tokens)`` as :class:`~burstlab.bench.backends.BodyBuilder`."""

    __slots__ = ("_dialect", "_params", "_stream")

    def __init__(self, dialect: Dialect, params: Params, *, stream: bool = True) -> None:
        self._dialect = dialect
        self._params = params
        self._stream = stream

    def body(self, prompt: Any, max_tokens: int) -> bytes:
        """The request body: ``prompt`` is text, or token ids for a dialect that takes them."""
        if not isinstance(prompt, str) and not self._dialect.ids:
            raise TypeError(f"{self._dialect.name}'s native API takes text prompts only")
        return orjson.dumps(self._dialect.build(self._params, prompt, max_tokens, self._stream))
