"""TLS: certificates are verified unless --insecure; a failed verification is a connect error."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import polars as pl
import pytest
from aiohttp import web

from burstlab.bench.run import BenchConfig, bench
from burstlab.results.records import load_records
from burstlab.server.app import make_app
from burstlab.server.fixed import FixedTiming
from support.frames import constant_rate

pytestmark = pytest.mark.slow


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_url(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("ssl")
    try:
        cert, key = self_signed(tmp_path)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("openssl is not available")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    started: Future[str] = Future()
    stop = threading.Event()

    async def main() -> None:
        runner = web.AppRunner(make_app(FixedTiming(ttft=0.01, itl=0.001)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        started.set_result(f"https://127.0.0.1:{runner.addresses[0][1]}")
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    yield started.result(timeout=30)
    stop.set()
    thread.join(timeout=10)


def workload(n: int, gap: float = 0.01) -> pl.DataFrame:
    return constant_rate(n, 1 / gap)


def test_self_signed_certificate_is_refused_by_default(tls_url: str, tmp_path: Path) -> None:
    bench(workload(3), BenchConfig(url=tls_url, model="m"), tmp_path / "run")
    table = load_records(tmp_path / "run")
    assert table["error_kind"].to_list() == ["connect"] * 3
    assert set(table["error_subkind"].to_list()) == {"tls_verify"}


def test_insecure_accepts_it(tls_url: str, tmp_path: Path) -> None:
    result = bench(workload(3), BenchConfig(url=tls_url, insecure=True), tmp_path / "run")
    assert result.summary.counts.ok == 3
