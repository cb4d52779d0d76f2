"""A run's configuration, the checks made before a run, and the redaction of secrets."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from burstlab.bench.backends import Api, Forcing, default_forcing
from burstlab.bench.native import Dialect, check_forcing, dialect_for
from burstlab.bench.pool_tokens import pool_synth
from burstlab.bench.ready import wait_ready
from burstlab.bench.server_tokens import SERVER_TOKENIZER, ServerTokenSynth
from burstlab.core.errors import BurstlabError, InputError, invalid
from burstlab.core.loop import run as run_loop
from burstlab.results.slo import SLO
from burstlab.workload.prompts import PromptSynth, make_synth


class BenchConfig(BaseModel):
    """Everything that shapes a run; saved (secrets redacted) in ``run.json``."""

    model_config = ConfigDict(extra="forbid")

    url: str
    api: Api = "completions"
    backend: str = "generic"
    model: str | None = None
    stream: bool = True
    forcing: Forcing | None = None
    prompt: Literal["ids", "text"] | None = None
    tokenizer: str | None = None
    #: A ShareGPT-format prompt pool (JSON or JSONL): each request gets the real
    #: prompt nearest its input length (:mod:`burstlab.workload.pools`); None:
    #: synthetic prompts of the exact length.
    prompts: str | None = None
    #: Prompts of the pool to draw (seeded by ``seed``); None: all of them.
    pool_size: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0)
    max_concurrency: int | None = Field(default=None, ge=1)
    max_lag_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    #: Client processes (``executor="process"``) or Ray actors (``"ray"``; when not
    #: given there: one per CPU the Ray cluster reports).
    workers: int = Field(default=1, ge=1)
    #: Where the client runs: ``process`` (this machine, one process or ``workers``)
    #: or ``ray`` (actors spread over a Ray cluster: :mod:`burstlab.bench.ray_executor`).
    executor: Literal["process", "ray"] = "process"
    #: The Ray cluster to join (``auto``, ``HOST:PORT``, ``ray://HOST:10001``); None:
    #: ``RAY_ADDRESS`` if set, else a local Ray started for the run.
    address: str | None = None
    timeout_s: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    idle_timeout_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    connect_timeout_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    #: Seconds requests in flight may finish after a first Ctrl-C or SIGTERM.
    grace_s: float = Field(default=5.0, ge=0, allow_inf_nan=False)
    api_key_env: str = "OPENAI_API_KEY"
    headers: dict[str, str] = Field(default_factory=dict)
    insecure: bool = False
    slo: SLO | None = None
    #: Seconds between scrapes of the server's ``/metrics`` during the run (None: none).
    scrape_metrics_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    #: Sampling temperature sent with every request (0: greedy).
    temperature: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    #: The most output tokens asked of the server: a request for more is sent with
    #: this many, and its record keeps both (``output_tokens``, ``output_tokens_cap``).
    max_output_tokens: int | None = Field(default=None, ge=1)
    #: Requests sent before ``t0`` to warm the server, awaited and kept out of the run's
    #: records and metrics (``warmup.jsonl``; :mod:`burstlab.bench.warmup`).
    warmup: int = Field(default=0, ge=0)
    #: Seconds to wait for the server to answer 200 at ``/health`` or ``/v1/models``
    #: before the run (None: no wait; :mod:`burstlab.bench.ready`).
    wait_ready_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @field_validator("address")
    @classmethod
    def _address_needs_ray(cls, address: str | None, info: ValidationInfo) -> str | None:
        if address is not None and info.data.get("executor") != "ray":
            raise ValueError("needs --executor ray")
        return address

    @field_validator("headers")
    @classmethod
    def _headers_are_safe(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            check_header(name, value)
        return headers

    @classmethod
    def from_options(cls, **options: Any) -> BenchConfig:
        """The config from command-line values; a bad one is an :class:`InputError`
        naming its option (``--timeout: ...``)."""
        try:
            return cls(**options)
        except ValidationError as exc:
            raise invalid(exc, as_options=True) from None

    def resolved_forcing(self) -> Forcing:
        return self.forcing or default_forcing(self.backend, self.api)

    def dialect(self) -> Dialect:
        """The native dialect of ``--api generate`` (an :class:`InputError` when the
        backend has none, or when the forcing asks for what it cannot take)."""
        dialect = dialect_for(self.backend)
        check_forcing(dialect, self.resolved_forcing())
        return dialect

    def prompt_mode(self) -> Literal["ids", "text"]:
        """Token-id prompts are exact and cheap, but only completions servers of
        vLLM, SGLang and llama.cpp take them; everything else gets text.
        ``--tokenizer server`` always sends ids (of the server's own vocabulary),
        except with a prompt pool, whose prompts are text (counted by the server)."""
        if self.pool_size is not None and self.prompts is None:
            raise InputError("needs --prompts", field="--pool-size")
        if self.prompts is not None:
            if self.prompt == "ids":
                raise InputError("a pool sends text prompts: not --prompt ids", field="--prompts")
            return "text"
        if self.tokenizer == SERVER_TOKENIZER:
            if self.api != "completions" or self.prompt == "text":
                raise InputError(
                    "'server' sends token-id prompts: it needs --api completions "
                    "and no --prompt text",
                    field="--tokenizer",
                )
            return "ids"
        if self.prompt is not None:
            if self.prompt == "ids" and self.api == "chat":
                raise InputError("token-id prompts need --api completions", field="--prompt")
            if self.prompt == "ids" and self.api == "generate" and not self.dialect().ids:
                raise InputError(
                    f"{self.backend}'s native API takes text prompts only", field="--prompt"
                )
            return self.prompt
        if self.api == "generate":  # SGLang's native API takes ids; the others text only
            return "ids" if self.dialect().ids else "text"
        ids_backends = ("vllm", "sglang", "llamacpp")
        return "ids" if self.api == "completions" and self.backend in ids_backends else "text"

    def synth(self, headers: dict[str, str] | None = None) -> PromptSynth:
        """The prompt builder of a run. llama.cpp's token ids (``--backend llamacpp``
        with id prompts and no tokenizer) and ``--tokenizer server`` come from the
        target's own ``/tokenize``: exact whatever its vocabulary. A prompt pool
        (``prompts``) gives real prompts instead (:func:`.pool_tokens.pool_synth`)."""
        mode = self.prompt_mode()
        if self.prompts is not None:
            return pool_synth(self, headers)
        if self.tokenizer == SERVER_TOKENIZER or (
            mode == "ids" and self.tokenizer is None and self.backend == "llamacpp"
        ):
            return ServerTokenSynth.from_server(
                self.url,
                headers,
                seed=self.seed,
                insecure=self.insecure,
                timeout_s=self.connect_timeout_s + 50,
            )
        return make_synth(mode, tokenizer=self.tokenizer, seed=self.seed)

    def redacted(self) -> dict[str, Any]:
        """The config as saved: header values hidden, credentials stripped from the URL."""
        data = self.model_dump(mode="json")
        data["headers"] = dict.fromkeys(self.headers, "<redacted>")
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if ":" in netloc:  # an IPv6 address
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        data["url"] = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        return data


#: What stands in for a secret in every file and message.
REDACTED = "<redacted>"
#: A header name: an RFC 9110 token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Credentials in a URL (``scheme://user:password@``).
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


def check_header(name: str, value: str) -> None:
    """Refuse a header that could not be sent as given: a name that is not a token,
    or a value holding CR, LF or another control character (header injection)."""
    if not _TOKEN.fullmatch(name):
        raise InputError(f"{name!r} is not a valid header name", field="--header")
    if any(ch != "\t" and (ord(ch) < 32 or ord(ch) == 127) for ch in value):
        raise InputError(
            f"the value of {name} holds a control character (CR, LF or another)",
            field="--header",
        )


def check_url(url: str) -> None:
    """Refuse a ``--url`` that is not ``http(s)://host[:port][/path]``, naming what is
    wrong (the message never repeats credentials)."""
    shown = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", url)
    hint = "e.g. --url http://127.0.0.1:8000"
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise InputError(f"{shown!r} holds a space or a control character", field="--url")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed [IPv6] bracket
        raise InputError(f"{shown!r} is not a URL: {exc}", field="--url", hint=hint) from None
    if parts.scheme not in ("http", "https"):
        raise InputError(f"{shown!r} is not an http:// or https:// URL", field="--url", hint=hint)
    if not parts.hostname:
        raise InputError(f"{shown!r} names no host", field="--url", hint=hint)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise InputError(f"{shown!r}: the port is not a number from 1 to 65535", field="--url")
    if parts.query or parts.fragment:
        raise InputError(f"{shown!r} has a query or fragment; give the base URL", field="--url")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A config checked and ready to run: the model resolved, the headers to send
    (``Authorization`` from the API key included) and every secret to keep out of
    files."""

    config: BenchConfig
    headers: dict[str, str]
    secrets: tuple[str, ...]


def prepare(config: BenchConfig, notify: Callable[[str], None] | None = None) -> Prepared:
    """Check everything that can be checked before a run directory exists: the URL,
    the headers, that the API key, an ``Authorization`` header and URL credentials do
    not compete, (with ``wait_ready_s``) that the server comes up in time, the prompt
    mode and tokenizer, and (without ``model``) that the server answers with its model
    list. Each problem raises a :class:`BurstlabError` (an
    :class:`InputError` for bad input; a server that cannot be reached is not one).
    ``notify`` is told, in a sentence, when the wait for the server begins and ends."""
    check_url(config.url)
    for name, value in config.headers.items():
        check_header(name, value)
    env = config.api_key_env
    api_key = os.environ.get(env) or None
    parts = urlsplit(config.url)
    in_url = parts.username is not None or parts.password is not None
    given = next((k for k in config.headers if k.lower() == "authorization"), None)
    both = "both set the Authorization header; give only one"
    if api_key is not None and given is not None:
        raise InputError(
            f"the API key in ${env} and --header {given} {both}",
            hint=f"unset {env} (or name another variable with --api-key-env), or drop the header",
        )
    if api_key is not None and in_url:
        raise InputError(
            f"the API key in ${env} and the credentials in --url {both}",
            hint=f"unset {env} (or name another variable with --api-key-env), "
            "or take the credentials out of the URL",
        )
    if given is not None and in_url:
        raise InputError(f"--header {given} and the credentials in --url {both}")
    headers = dict(config.headers)
    if api_key is not None:
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in api_key):
            raise InputError(f"the API key in ${env} holds a control character")
        headers["Authorization"] = f"Bearer {api_key}"
    secrets = [*config.headers.values(), api_key or "", parts.username or "", parts.password or ""]
    if config.wait_ready_s is not None:
        wait_ready(
            config.url,
            headers,
            within_s=config.wait_ready_s,
            insecure=config.insecure,
            shown=str(config.redacted()["url"]),
            notify=notify,
        )
    if config.api == "generate":
        config.dialect()
    config.synth(headers)
    if config.model is None and config.api != "generate":
        config = config.model_copy(update={"model": _first_model(config, headers)})
    return Prepared(config, headers, tuple(s for s in secrets if s))


def redact_text(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    """``text`` with every secret and URL credentials replaced by ``<redacted>``.
    Secrets shorter than 4 characters are left: they cannot be told from other text
    (``--header`` values are redacted by position in :func:`redact_argv`)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text)


def redact_argv(argv: list[str], secrets: tuple[str, ...] | list[str]) -> list[str]:
    """The command line as saved in ``run.json``: every ``--header`` value hidden
    (the name kept), and secrets and URL credentials hidden in every word."""

    def header(word: str) -> str:
        name, sep, _ = word.partition(":")
        return f"{name.strip()}: {REDACTED}" if sep else REDACTED

    out: list[str] = []
    after_header = False
    for word in argv:
        if after_header:
            out.append(header(word))
            after_header = False
        elif word == "--header":
            out.append(word)
            after_header = True
        elif word.startswith("--header="):
            out.append("--header=" + header(word.removeprefix("--header=")))
        else:
            out.append(redact_text(word, secrets))
    return out


def _first_model(config: BenchConfig, headers: dict[str, str]) -> str:
    """The first model the server lists at ``/v1/models``."""
    shown = str(config.redacted()["url"]).rstrip("/") + "/v1/models"

    async def ask() -> str:
        url = config.url.rstrip("/") + "/v1/models"
        ssl_arg = not config.insecure
        timeout = aiohttp.ClientTimeout(total=config.connect_timeout_s + 10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers, ssl=ssl_arg, allow_redirects=False) as resp,
        ):
            if resp.status != 200:
                raise BurstlabError(
                    f"{shown} answered HTTP {resp.status}", hint="pass --model NAME"
                )
            raw = await resp.content.read(1 << 20)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BurstlabError(f"{shown} did not answer JSON", hint="pass --model NAME") from None
        models = data.get("data") if isinstance(data, dict) else None
        if not models or not isinstance(models[0], dict) or "id" not in models[0]:
            raise BurstlabError(f"{shown} lists no models", hint="pass --model NAME")
        return str(models[0]["id"])

    try:
        return run_loop(ask())
    except (TimeoutError, OSError, ValueError, aiohttp.ClientError) as exc:
        reason = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", str(exc) or type(exc).__name__)
        raise BurstlabError(
            f"cannot reach {config.redacted()['url']}: {reason}",
            hint="check --url, or start a server with `burstlab serve --fixed ...`",
        ) from None
