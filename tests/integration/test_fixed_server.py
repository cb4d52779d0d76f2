"""The fixed-timing mock server over real HTTP on 127.0.0.1, and the fault server's faults.

The servers run in a daemon thread (``serve_in_thread``); clients run their own
loop in the test's thread with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict

from burstlab.core.errors import InputError
from burstlab.server.app import make_app
from burstlab.server.fixed import FixedTiming, parse_fixed
from burstlab.server.hosting import serve_in_thread
from burstlab.server.openai import WORDS, response_length
from support.faulty_server import FAULTS, SPLIT_TOKENS, FaultyServer

FAST = FixedTiming(ttft=0.0, itl=0.0, eos=64)


@pytest.fixture
def fast_url() -> Iterator[str]:
    with serve_in_thread(make_app(FAST, model="m-fast")) as url:
        yield url


@dataclass
class Stream:
    """What a client saw of one streamed response: each SSE data payload and when it came."""

    status: int
    headers: CIMultiDict[str]
    data: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    sent: float = 0.0

    def chunks(self) -> list[dict[str, Any]]:
        return [orjson.loads(d) for d in self.data if d != b"[DONE]"]

    def content_times(self) -> list[float]:
        return [t for d, t in zip(self.data, self.times, strict=True) if _content(d)]


def _content(data: bytes) -> str:
    if data == b"[DONE]":
        return ""
    choices = orjson.loads(data)["choices"]
    if not choices:
        return ""
    choice = choices[0]
    return str(choice["delta"].get("content", "") if "delta" in choice else choice["text"])


async def _stream(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], **headers: str
) -> Stream:
    sent = time.perf_counter()
    async with session.post(url, json={**body, "stream": True}, headers=headers) as resp:
        out = Stream(resp.status, CIMultiDict(resp.headers), sent=sent)
        async for line in resp.content:
            if line.startswith(b"data: "):
                out.times.append(time.perf_counter())
                out.data.append(line.removeprefix(b"data: ").rstrip(b"\n"))
    return out


def stream(url: str, body: dict[str, Any], **headers: str) -> Stream:
    async def main() -> Stream:
        async with aiohttp.ClientSession() as session:
            return await _stream(session, url, body, **headers)

    return asyncio.run(main())


def post(
    url: str, body: bytes | dict[str, Any], **headers: str
) -> tuple[int, Any, CIMultiDict[str]]:
    async def main() -> tuple[int, Any, CIMultiDict[str]]:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        sent = {"Content-Type": "application/json", **headers}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=data, headers=sent) as resp,
        ):
            return resp.status, orjson.loads(await resp.read()), CIMultiDict(resp.headers)

    return asyncio.run(main())


def get(url: str) -> tuple[int, bytes]:
    async def main() -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return resp.status, await resp.read()

    return asyncio.run(main())


# --- the fixed server -----------------------------------------------------------------------


def test_health_and_models(fast_url: str) -> None:
    assert get(fast_url + "/health") == (200, b"ok")
    status, body = get(fast_url + "/v1/models")
    assert status == 200
    models = orjson.loads(body)
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["m-fast"]
    assert models["data"][0]["object"] == "model"


def test_streaming_completions(fast_url: str) -> None:
    got = stream(fast_url + "/v1/completions", {"prompt": "a b c", "max_tokens": 5})
    assert got.status == 200
    assert got.headers["Content-Type"].startswith("text/event-stream")
    assert got.data[-1] == b"[DONE]"
    chunks = got.chunks()
    assert len(chunks) == 5  # one token per chunk, no usage chunk unless asked
    for c in chunks:
        assert c["object"] == "text_completion"
        assert c["model"] == "m-fast"
        assert c["id"] == chunks[0]["id"]
        assert isinstance(c["created"], int)
        assert len(c["choices"][0]["text"].split()) == 1
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 4 + ["length"]
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert len(text.split()) == 5
    assert text.endswith(" ")


def test_streaming_chat_role_first_and_usage(fast_url: str) -> None:
    body = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "one two three"}]},
            {"role": "assistant", "content": None},
        ],
        "max_completion_tokens": 3,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    got = stream(fast_url + "/v1/chat/completions", body)
    chunks = got.chunks()
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    tokens = chunks[1:-1]
    assert [c["choices"][0]["finish_reason"] for c in tokens] == [None, None, "length"]
    assert all(c["choices"][0]["delta"]["content"].strip() for c in tokens)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert got.data[-1] == b"[DONE]"


def test_non_streaming(fast_url: str) -> None:
    status, body, _ = post(fast_url + "/v1/completions", {"prompt": "x y", "max_tokens": 4})
    assert status == 200
    assert body["object"] == "text_completion"
    assert len(body["choices"][0]["text"].split()) == 4
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}

    msgs = [{"role": "user", "content": "hi"}]
    status, body, _ = post(fast_url + "/v1/chat/completions", {"messages": msgs})
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert len(body["choices"][0]["message"]["content"].split()) == 64  # eos
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 64


@pytest.mark.parametrize(
    ("prompt", "tokens"),
    [
        ("one two  three\nfour", 4),
        ([5, 17, 3, 0, 99], 5),
        (["a b", "c d e"], 5),
        ([[1, 2], [3]], 3),
        ([["a b"], ["c"], [7]], 4),
        (["x", ""], 1),
    ],
)
def test_prompt_token_counting(fast_url: str, prompt: Any, tokens: int) -> None:
    status, body, _ = post(fast_url + "/v1/completions", {"prompt": prompt, "max_tokens": 1})
    assert status == 200
    assert body["usage"]["prompt_tokens"] == tokens


@pytest.mark.parametrize(
    ("fields", "tokens", "finish"),
    [
        ({}, 16, "length"),  # completions default max_tokens
        ({"max_tokens": 100}, 64, "stop"),  # natural eos
        ({"max_tokens": 10}, 10, "length"),
        ({"max_tokens": 64}, 64, "length"),
        ({"max_tokens": 100, "ignore_eos": True}, 100, "length"),
        ({"max_tokens": 100, "min_tokens": 100}, 100, "length"),
        ({"max_tokens": 100, "min_tokens": 80}, 80, "stop"),
        ({"max_tokens": 100, "min_tokens": 10}, 64, "stop"),
        ({"max_tokens": 100, "min_tokens": 0, "ignore_eos": False}, 64, "stop"),
    ],
)
def test_output_length(fast_url: str, fields: dict[str, Any], tokens: int, finish: str) -> None:
    got = stream(fast_url + "/v1/completions", {"prompt": "p", **fields})
    chunks = got.chunks()
    assert len(chunks) == tokens
    assert chunks[-1]["choices"][0]["finish_reason"] == finish
    assert response_length(fields.get("max_tokens", 16), eos=64, **_forcing(fields)) == (
        tokens,
        finish,
    )


def _forcing(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k in ("min_tokens", "ignore_eos")}


def test_chat_length_fields(fast_url: str) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    url = fast_url + "/v1/chat/completions"
    _, body, _ = post(url, {"messages": msgs, "max_tokens": 7})
    assert body["usage"]["completion_tokens"] == 7
    _, body, _ = post(url, {"messages": msgs, "max_completion_tokens": 5, "max_tokens": 7})
    assert body["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/v1/completions", b"{not json", "Invalid JSON"),
        ("/v1/completions", b"[1, 2]", "object"),
        ("/v1/completions", b'{"max_tokens": 3}', "prompt: Field required"),
        ("/v1/completions", b'{"prompt": []}', "prompt: must be"),
        ("/v1/completions", b'{"prompt": [1, "a"]}', "prompt: must be"),
        ("/v1/completions", b'{"prompt": [-1]}', "prompt: must be"),
        ("/v1/completions", b'{"prompt": [true]}', "prompt: must be"),
        ("/v1/completions", b'{"prompt": {"a": 1}}', "prompt: must be"),
        ("/v1/completions", b'{"prompt": [[]]}', "prompt: must be"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": 0}', "max_tokens: "),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": "5"}', "max_tokens: "),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": 2.5}', "max_tokens: "),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": true}', "max_tokens: "),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": 99999999999}', "max_tokens: "),
        ("/v1/completions", b'{"prompt": "x", "min_tokens": -1}', "min_tokens: "),
        ("/v1/completions", b'{"prompt": "x", "ignore_eos": "yes"}', "ignore_eos: "),
        ("/v1/completions", b'{"prompt": "x", "stream": 1}', "stream: "),
        (
            "/v1/completions",
            b'{"prompt": "x", "stream": true, "stream_options": 3}',
            "stream_options: ",
        ),
        (
            "/v1/completions",
            b'{"prompt": "x", "stream": true, "stream_options": {"include_usage": "y"}}',
            "stream_options.include_usage: ",
        ),
        ("/v1/chat/completions", b'{"messages": []}', "messages: "),
        ("/v1/chat/completions", b'{"messages": "hi"}', "messages: "),
        ("/v1/chat/completions", b'{"messages": [{"content": "hi"}]}', "messages.0.role: "),
        (
            "/v1/chat/completions",
            b'{"messages": [{"role": "user", "content": 5}]}',
            "messages.0.content: must be",
        ),
        (
            "/v1/chat/completions",
            b'{"messages": [{"role": "user", "content": ["x"]}]}',
            "messages.0.content: must be",
        ),
        (
            "/v1/chat/completions",
            b'{"messages": [{"role": "user"}], "max_completion_tokens": 0}',
            "max_completion_tokens: ",
        ),
        ("/v1/chat/completions", b"\xff\xfe", "Invalid JSON"),
    ],
)
def test_bad_bodies_get_400(fast_url: str, path: str, body: bytes, says: str) -> None:
    status, error, headers = post(fast_url + path, body, **{"X-Request-Id": "bad-1"})
    assert status == 400
    assert says in error["error"]["message"]
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["code"] == 400
    assert headers["X-Request-Id"] == "bad-1"


def test_unknown_fields_are_accepted(fast_url: str) -> None:
    extras = {
        "model": "m-fast",
        "temperature": 0.7,
        "top_p": 1,
        "n": 1,
        "stop": ["\n"],
        "seed": 3,
        "user": "u",
        "logit_bias": {"50256": -100},
        "vendor_extension": {"nested": [1, None]},
    }
    status, body, _ = post(fast_url + "/v1/completions", {"prompt": "a", "max_tokens": 2, **extras})
    assert (status, body["usage"]["completion_tokens"]) == (200, 2)
    msgs = [{"role": "user", "content": "a", "name": "n"}]
    status, body, _ = post(
        fast_url + "/v1/chat/completions", {"messages": msgs, "max_tokens": 2, **extras}
    )
    assert (status, body["usage"]["completion_tokens"]) == (200, 2)


def test_requests_of_the_openai_client(fast_url: str) -> None:
    """What the ``openai`` package sends, streamed and not, is accepted and parsed by it."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=fast_url + "/v1", api_key="unused", max_retries=0)
    stream = client.completions.create(
        model="m-fast",
        prompt=[1, 2, 3, 4],
        max_tokens=5,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True, "min_tokens": 5},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices).split() == list(WORDS[:5])
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 5)

    chat_stream = client.chat.completions.create(
        model="m-fast",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "one two three"}]},
        ],
        max_completion_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
        top_p=1.0,
        user="u-1",
    )
    chat_chunks = list(chat_stream)
    text = "".join(c.choices[0].delta.content or "" for c in chat_chunks if c.choices)
    assert len(text.split()) == 3
    assert chat_chunks[-1].usage is not None
    assert chat_chunks[-1].usage.prompt_tokens == 5

    chat = client.chat.completions.create(
        model="m-fast", messages=[{"role": "user", "content": "hi"}], max_tokens=4, n=1
    )
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].finish_reason == "length"
    assert chat.usage is not None
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (1, 4)

    completion = client.completions.create(model="m-fast", prompt=["a b", "c"], max_tokens=2)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 3
    assert completion.choices[0].finish_reason == "length"


def test_request_id_echo_and_log(tmp_path: Path) -> None:
    log = tmp_path / "served.jsonl"
    before = time.time()
    with serve_in_thread(make_app(FAST, log_path=log)) as url:
        got = stream(
            url + "/v1/completions", {"prompt": "p", "max_tokens": 3}, **{"X-Request-Id": "run-7"}
        )
        _, _, headers = post(url + "/v1/completions", {"prompt": "p", "max_tokens": 2})
        status, _, _ = post(url + "/v1/completions", b"{", **{"X-Request-Id": "run-8"})
    assert got.headers["X-Request-Id"] == "run-7"
    assert "X-Request-Id" not in headers
    assert status == 400
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    assert [(r["request_id"], r["tokens"]) for r in lines] == [("run-7", 3), (None, 2)]
    assert all(before <= r["t_end"] <= time.time() for r in lines)
    assert set(lines[0]) == {"request_id", "t_end", "tokens"}


def test_log_appends_across_runs(tmp_path: Path) -> None:
    log = tmp_path / "served.jsonl"
    for i in range(2):
        with serve_in_thread(make_app(FAST, log_path=log)) as url:
            post(
                url + "/v1/completions",
                {"prompt": "p", "max_tokens": 1},
                **{"X-Request-Id": f"r-{i}"},
            )
    assert [orjson.loads(x)["request_id"] for x in log.read_bytes().splitlines()] == ["r-0", "r-1"]


@pytest.mark.slow
def test_timing_follows_an_absolute_schedule() -> None:
    """TTFT and gaps match the configuration; the last token does not drift late."""
    ttft, itl, n = 0.05, 0.01, 20
    with serve_in_thread(make_app(FixedTiming(ttft=ttft, itl=itl))) as url:

        async def main() -> list[Stream]:
            async with aiohttp.ClientSession() as session:
                body = {"prompt": "p", "max_tokens": n, "ignore_eos": True}
                await _stream(session, url + "/v1/completions", body)  # warm the connection
                return [await _stream(session, url + "/v1/completions", body) for _ in range(9)]

        runs = asyncio.run(main())
    ttfts = [r.content_times()[0] - r.sent for r in runs]
    gaps = [b - a for r in runs for a, b in itertools.pairwise(r.content_times())]
    lasts = [r.content_times()[-1] - r.sent for r in runs]
    assert all(len(r.content_times()) == n for r in runs)
    # never early, whatever the machine is doing: the client sent before the server started.
    # How close to the schedule it stays is timing (benchmarks/), and exact in
    # test_fixed_schedule_is_absolute.
    assert min(ttfts) >= ttft - 0.001
    # (not the span from the first token: a first token late by a busy loop shortens it)
    assert min(lasts) >= ttft + (n - 1) * itl - 0.001
    assert statistics.median(gaps) >= itl - 0.001


def test_fixed_schedule_is_absolute() -> None:
    """Token k is due at t_recv + ttft + k * itl exactly: lateness in one step can never
    carry into the next."""
    from burstlab.server.fixed import FixedSource
    from burstlab.server.openai import parse_request

    ask = parse_request(orjson.dumps({"prompt": "p", "max_tokens": 5}), chat=False, eos=64)

    async def due() -> list[float]:
        timed = await FixedSource(FixedTiming(ttft=0.5, itl=0.25)).open(ask, 10.0)
        return [t async for t in timed.times]

    assert asyncio.run(due()) == [10.5, 10.75, 11.0, 11.25, 11.5]


def test_non_streaming_answers_when_the_last_token_would() -> None:
    with serve_in_thread(make_app(FixedTiming(ttft=0.05, itl=0.01))) as url:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            post(url + "/v1/completions", {"prompt": "p", "max_tokens": 11})
            times.append(time.perf_counter() - t)
    assert min(times) >= 0.05 + 10 * 0.01 - 0.001  # not before its last token was due


def test_300_concurrent_streams(tmp_path: Path) -> None:
    log = tmp_path / "served.jsonl"
    timing = FixedTiming(ttft=0.05, itl=0.02)
    with serve_in_thread(make_app(timing, log_path=log)) as url:

        async def main() -> list[Stream]:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                body = {"prompt": "p", "max_tokens": 10, "ignore_eos": True}
                return await asyncio.gather(
                    *(
                        _stream(
                            session, url + "/v1/completions", body, **{"X-Request-Id": f"c-{i}"}
                        )
                        for i in range(300)
                    )
                )

        results = asyncio.run(main())
    assert all(r.status == 200 for r in results)
    assert all(len(r.chunks()) == 10 and r.data[-1] == b"[DONE]" for r in results)
    ids = {orjson.loads(x)["request_id"] for x in log.read_bytes().splitlines()}
    assert ids == {f"c-{i}" for i in range(300)}


def test_client_disconnect_is_quiet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    log = tmp_path / "served.jsonl"
    with serve_in_thread(make_app(FixedTiming(ttft=0.0, itl=0.005), log_path=log)) as url:

        async def main() -> None:
            async with aiohttp.ClientSession() as session:
                body = {"prompt": "p", "max_tokens": 200, "ignore_eos": True, "stream": True}
                headers = {"X-Request-Id": "gone-1"}
                resp = await session.post(url + "/v1/completions", json=body, headers=headers)
                await resp.content.readline()
                resp.close()  # drop the connection mid-stream
                await asyncio.sleep(0.3)

        asyncio.run(main())
        assert get(url + "/health") == (200, b"ok")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert log.read_bytes() == b""  # an unfinished request is not logged


def test_serve_in_thread_reports_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="address"), serve_in_thread(make_app(FAST), port=port):
            pass


# --- parse_fixed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ttft=0.05,itl=0.01", FixedTiming(ttft=0.05, itl=0.01, eos=64)),
        (" ttft = 0.2 , itl=0 , eos=7 ", FixedTiming(ttft=0.2, itl=0.0, eos=7)),
        ("ttft=50ms,itl=5ms", FixedTiming(ttft=0.05, itl=0.005)),
        ("itl=0.02s", FixedTiming(itl=0.02)),
        ("eos=1", FixedTiming(eos=1)),
    ],
)
def test_parse_fixed(spec: str, expected: FixedTiming) -> None:
    assert parse_fixed(spec) == expected


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("ttft=0.05,speed=3", "unknown key 'speed'"),
        ("ttft=fast", "ttft='fast' is not a time"),
        ("ttft=-1", "ttft='-1' is not a time"),
        ("ttft=nan", "ttft='nan'"),
        ("ttft=1e999", "ttft"),
        ("eos=0", "eos: Input should be greater than or equal to 1"),
        ("eos=2.5", "eos='2.5' is not a whole number"),
        ("ttft", "'ttft' is not key=value"),
        ("", "is not key=value"),
        ("ttft=1,ttft=2", "given twice"),
    ],
)
def test_parse_fixed_rejects(spec: str, says: str) -> None:
    with pytest.raises(InputError, match="--fixed") as err:
        parse_fixed(spec)
    assert says in str(err.value)


# --- the fault server -----------------------------------------------------------------------


@dataclass
class Raw:
    """An HTTP/1.1 response read off the socket: status, headers, the body's HTTP chunks
    exactly as written, whether the chunked body ended properly, and how reading stopped."""

    status: int | None
    headers: CIMultiDict[str]
    chunks: list[bytes]
    complete: bool
    ended: str  # "eof", "reset" or "timeout"
    elapsed: float

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def events(self, sep: bytes = b"\n\n") -> list[bytes]:
        return [e.removeprefix(b"data: ") for e in self.body.split(sep) if e]


async def _raw_post(url: str, path: str, request_id: str | None, timeout: float) -> Raw:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    body = b'{"model": "m", "prompt": "hi", "messages": [], "stream": true}'
    head = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    if request_id is not None:
        head += f"X-Request-Id: {request_id}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    data, ended, t0 = bytearray(), "eof", time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            while piece := await reader.read(1 << 20):
                data += piece
    except ConnectionResetError:
        ended = "reset"
    except TimeoutError:
        ended = "timeout"
    elapsed = time.perf_counter() - t0
    writer.close()
    return _parse_http(bytes(data), ended, elapsed)


def _parse_http(data: bytes, ended: str, elapsed: float) -> Raw:
    if b"\r\n\r\n" not in data:
        return Raw(None, CIMultiDict(), [], False, ended, elapsed)
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers.add(name, value)
    status = int(lines[0].split()[1])
    if headers.get("Transfer-Encoding") != "chunked":
        return Raw(status, headers, [rest] if rest else [], ended == "eof", ended, elapsed)
    chunks, complete = [], False
    while b"\r\n" in rest:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            complete = True
            break
        if len(rest) < size + 2:
            break
        chunks.append(rest[:size])
        rest = rest[size + 2 :]
    return Raw(status, headers, chunks, complete, ended, elapsed)


def raw_post(
    server: FaultyServer, request_id: str | None, *, chat: bool = False, timeout: float = 5.0
) -> Raw:
    path = "/v1/chat/completions" if chat else "/v1/completions"
    return asyncio.run(_raw_post(server.url, path, request_id, timeout))


def _texts(events: list[bytes], chat: bool) -> list[str]:
    out = []
    for e in events:
        choice = orjson.loads(e)["choices"][0]
        out.append(choice["delta"]["content"] if chat else choice["text"])
    return out


def _finishes(events: list[bytes]) -> list[str | None]:
    return [orjson.loads(e)["choices"][0]["finish_reason"] for e in events]


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultyServer]:
    with FaultyServer(list(FAULTS), tokens=3, oversize_bytes=4 << 20, trickle_s=0.3) as server:
        yield server


def rid(fault: str, run: str = "t") -> str:
    return f"{run}-{list(FAULTS).index(fault)}"


@pytest.mark.parametrize("chat", [False, True])
def test_fault_ok(faults: FaultyServer, chat: bool) -> None:
    got = raw_post(faults, rid("ok"), chat=chat)
    assert (got.status, got.complete, got.ended) == (200, True, "eof")
    assert got.headers["X-Request-Id"] == rid("ok")
    events = got.events()
    assert events[-1] == b"[DONE]"
    assert _texts(events[:-1], chat) == ["tok "] * 3
    assert _finishes(events[:-1]) == [None, None, "length"]
    assert orjson.loads(events[0])["object"] == (
        "chat.completion.chunk" if chat else "text_completion"
    )


@pytest.mark.parametrize("chat", [False, True])
def test_fault_reset_mid_stream(faults: FaultyServer, chat: bool) -> None:
    got = raw_post(faults, rid("reset_mid_stream"), chat=chat)
    assert got.status == 200
    assert got.ended == "reset"
    assert not got.complete
    assert _texts(got.events(), chat) == ["tok ", "tok "]


def test_fault_reset_before_headers(faults: FaultyServer) -> None:
    got = raw_post(faults, rid("reset_before_headers"))
    assert (got.status, got.ended) == (None, "reset")


@pytest.mark.parametrize("status", [429, 500, 503, 400])
def test_fault_http_status(faults: FaultyServer, status: int) -> None:
    got = raw_post(faults, rid(f"http_{status}"))
    assert got.status == status
    assert orjson.loads(got.body)["error"]["message"] == f"fault http_{status}"
    assert got.headers.get("Retry-After") == ("2" if status == 429 else None)


def test_fault_stall_after_headers(faults: FaultyServer) -> None:
    got = raw_post(faults, rid("stall"), timeout=0.5)
    assert (got.status, got.ended, got.chunks) == (200, "timeout", [])


def test_fault_stall_before_headers(faults: FaultyServer) -> None:
    got = raw_post(faults, rid("stall_before_headers"), timeout=0.5)
    assert (got.status, got.ended) == (None, "timeout")


def test_fault_malformed_sse(faults: FaultyServer) -> None:
    events = raw_post(faults, rid("malformed_sse")).events()
    assert events[1] == b"{not json"
    assert orjson.loads(events[0])["choices"][0]["text"] == "tok "
    assert events[-1] == b"[DONE]"
    assert _finishes(events[2:-1])[-1] == "length"


@pytest.mark.parametrize(("fault", "finish"), [("no_done", None), ("finish_no_done", "length")])
def test_fault_missing_done(faults: FaultyServer, fault: str, finish: str | None) -> None:
    got = raw_post(faults, rid(fault))
    assert (got.complete, got.ended) == (True, "eof")
    events = got.events()
    assert b"[DONE]" not in events
    assert _finishes(events) == [None, None, finish]


def test_fault_oversized_chunk(faults: FaultyServer) -> None:
    got = raw_post(faults, rid("oversized_chunk"))
    events = got.events()
    assert len(events[0]) == 4 << 20
    assert set(orjson.loads(events[0])["choices"][0]["text"]) == {"x"}
    assert events[-1] == b"[DONE]"


@pytest.mark.parametrize("chat", [False, True])
def test_fault_empty(faults: FaultyServer, chat: bool) -> None:
    events = raw_post(faults, rid("empty"), chat=chat).events()
    assert events[-1] == b"[DONE]"
    assert _texts(events[:-1], chat) == [""]
    assert _finishes(events[:-1]) == ["stop"]


def test_fault_trickle(faults: FaultyServer) -> None:
    got = raw_post(faults, rid("trickle"))
    assert got.elapsed >= 2 * 0.3 - 0.01
    assert _texts(got.events()[:-1], chat=False) == ["tok "] * 3


def test_fault_error_event(faults: FaultyServer) -> None:
    got = raw_post(faults, rid("error_event"))
    events = got.events()
    assert got.complete
    assert orjson.loads(events[1]) == {"error": {"message": "boom"}}
    assert len(events) == 2


@pytest.mark.parametrize("chat", [False, True])
def test_fault_split_utf8(faults: FaultyServer, chat: bool) -> None:
    got = raw_post(faults, rid("split_utf8"), chat=chat)
    undecodable = 0
    for chunk in got.chunks:
        try:
            chunk.decode()
        except UnicodeDecodeError:
            undecodable += 1
    assert undecodable >= len(SPLIT_TOKENS)  # every event was cut inside a character
    events = got.events()
    assert "".join(_texts(events[:-1], chat)) == "".join(SPLIT_TOKENS)
    assert events[-1] == b"[DONE]"


def test_fault_crlf(faults: FaultyServer) -> None:
    got = raw_post(faults, rid("crlf"))
    assert b"\n\n" not in got.body
    events = got.events(b"\r\n\r\n")
    assert events[-1] == b"[DONE]"
    assert _texts(events[:-1], chat=False) == ["tok "] * 3


def test_fault_choice_and_seen() -> None:
    with FaultyServer(["ok", "http_500"]) as server:
        assert raw_post(server, "run-a-0").status == 200
        assert raw_post(server, "x-3").status == 500
        assert raw_post(server, None).status == 200  # no id: arrival count 0
        assert raw_post(server, "bad").status == 500  # unparsable: arrival count 1
    assert server.seen == [
        ("run-a-0", "ok"),
        ("x-3", "http_500"),
        (None, "ok"),
        ("bad", "http_500"),
    ]


def test_fault_server_rejects_unknown_faults() -> None:
    with pytest.raises(ValueError, match="nope"):
        FaultyServer(["ok", "nope"])
