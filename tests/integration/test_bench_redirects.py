"""Redirects are never followed (RELIABILITY.md F34): a 3xx is ``http_3xx`` with its
``Location`` recorded without credentials, and the redirect's target receives nothing
(no body, no header, no ``Authorization`` built from credentials in the ``Location``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from aiohttp import web

from burstlab.bench.run import BenchConfig, bench
from burstlab.core.errors import BurstlabError
from burstlab.results.records import load_records
from burstlab.server.hosting import serve_in_thread
from support.frames import constant_rate

STATUSES = (301, 302, 303, 307, 308)
PASSWORD = "pw-canary-7f3a"
HEADER_SECRET = "hdr-canary-91bd"


class Sink:
    """The redirect's target: records every request it receives, on any path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, str]]] = []
        self.url = ""

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            await request.read()
            self.received.append((request.method, request.path, dict(request.headers)))
            return web.json_response({"data": [{"id": "sink-model"}]})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


def redirector(target: str) -> web.Application:
    """Answers every request with a 3xx picked by the request id's number, pointing at
    ``target`` with credentials in the URL; the body echoes the Location."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        tail = request.headers.get("X-Request-Id", "x-3").rpartition("-")[2]
        status = STATUSES[int(tail) % len(STATUSES)] if tail.isdigit() else 307
        location = target.replace("http://", f"http://user:{PASSWORD}@") + request.path
        return web.Response(
            status=status,
            headers={"Location": location},
            text=f"moved to {location}",
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
def servers() -> Iterator[tuple[str, Sink]]:
    sink = Sink()
    with ExitStack() as stack:
        sink.url = stack.enter_context(serve_in_thread(sink.app(), shutdown_timeout=0.2))
        url = stack.enter_context(serve_in_thread(redirector(sink.url), shutdown_timeout=0.2))
        yield url, sink


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_a_redirect_is_recorded_and_never_followed(
    tmp_path: Path, servers: tuple[str, Sink], api: str
) -> None:
    url, sink = servers
    config = BenchConfig(
        url=url,
        api=api,
        model="m",
        timeout_s=5.0,
        idle_timeout_s=2.0,
        connect_timeout_s=2.0,
        headers={"X-Secret": HEADER_SECRET},
    )
    result = bench(constant_rate(len(STATUSES), 50.0), config, tmp_path / "run")

    assert sink.received == []
    table = load_records(tmp_path / "run").sort("request_id")
    assert table.height == len(STATUSES)
    for row in table.iter_rows(named=True):
        status = STATUSES[row["request_id"] % len(STATUSES)]
        assert (row["outcome"], row["error_kind"], row["error_subkind"]) == (
            "failed",
            "http_3xx",
            str(status),
        )
        assert row["http_status"] == status
        path = "/v1/chat/completions" if api == "chat" else "/v1/completions"
        assert row["location"] == sink.url + path
        assert PASSWORD not in (row["error_text"] or "")
    assert result.summary.failures_by_kind == {"http_3xx": len(STATUSES)}
    for written in (tmp_path / "run").iterdir():
        if written.is_file():
            data = written.read_bytes()
            assert PASSWORD.encode() not in data, written.name
            assert HEADER_SECRET.encode() not in data, written.name


def test_the_model_lookup_does_not_follow_a_redirect(
    tmp_path: Path, servers: tuple[str, Sink]
) -> None:
    """Without ``--model``, bench asks ``/v1/models`` first: a redirect there is an error,
    and the target never sees the request (nor the headers it carries)."""
    url, sink = servers
    config = BenchConfig(url=url, connect_timeout_s=2.0, headers={"X-Secret": HEADER_SECRET})
    with pytest.raises(BurstlabError, match="HTTP 30"):
        bench(constant_rate(1, 10.0), config, tmp_path / "run")
    assert sink.received == []
