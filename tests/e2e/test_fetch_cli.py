"""``burstlab fetch`` through the installed console script, against a 127.0.0.1 server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from support.cli import command

NAME = "BurstGPT_2.csv"
BODY = b"Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n" + (
    b"5,ChatGPT,472,18,490,Conversation log\n" * 5000
)


def _run(*args: str, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BURSTLAB_")}
    full_env.update(BURSTLAB_CACHE=str(cache), COLUMNS="200", **env)
    return subprocess.run(
        [*command(), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """Serve ``/v1.1/BurstGPT_2.csv`` on 127.0.0.1; yield the base URL and the paths asked for."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path)
        if request.path != f"/v1.1/{NAME}":
            raise web.HTTPNotFound
        return web.Response(body=BODY, content_type="text/csv")

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port: int = runner.addresses[0][1]
        return port

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_list_shows_known_files(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "BurstGPT_1.csv").write_bytes(b"x" * 1234)
    result = _run("fetch", "--list", cache=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("BurstGPT_1.csv", "BurstGPT_without_fails_2.csv", "BurstGPT_3.csv"):
        assert name in result.stdout
    assert "v2.0" in result.stdout
    assert "231,682,327" in result.stdout
    assert "yes, 1,234 bytes" in result.stdout


@pytest.mark.slow
def test_fetch_prints_the_path(server: tuple[str, list[str]], tmp_path: Path) -> None:
    base, seen = server
    digest = hashlib.sha256(BODY).hexdigest()
    result = _run("fetch", NAME, "--base-url", base, "--sha256", digest, cache=tmp_path)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path == tmp_path / "traces" / NAME
    assert path.read_bytes() == BODY
    assert seen == [f"/v1.1/{NAME}"]

    again = _run("fetch", NAME, "--base-url", base, "-q", cache=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(path)
    assert len(seen) == 1


def test_progress_bar_on_a_terminal_keeps_stdout_to_the_path(
    server: tuple[str, list[str]], tmp_path: Path
) -> None:
    base, _seen = server
    result = _run("fetch", NAME, "--base-url", base, cache=tmp_path, TTY_COMPATIBLE="1")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).read_bytes() == BODY
    assert "Traceback" not in result.stderr


def test_env_base_url(server: tuple[str, list[str]], tmp_path: Path) -> None:
    base, _seen = server
    result = _run("fetch", NAME, cache=tmp_path, BURSTLAB_FETCH_BASE_URL=base)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).read_bytes() == BODY


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("fetch", "nope.csv"), "unknown BurstGPT file 'nope.csv'"),
        (("fetch", NAME, "--base-url", "http://example.invalid/dl"), "only https"),
        (("fetch", "BurstGPT_1.csv", "--base-url", "{base}"), "no such release file"),
        (("fetch", NAME, "--base-url", "{base}", "--sha256", "0" * 64), "SHA-256 mismatch"),
    ],
)
@pytest.mark.slow
def test_errors_exit_2_without_traceback(
    server: tuple[str, list[str]], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    base, _seen = server
    result = _run(*(a.replace("{base}", base) for a in args), cache=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "traces" / NAME).exists()


def test_offline_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = _run("fetch", NAME, "--base-url", f"http://127.0.0.1:{port}", cache=tmp_path)
    assert result.returncode == 2
    assert "error: cannot reach 127.0.0.1" in result.stderr
    assert "are you offline?" in result.stderr
    assert "Traceback" not in result.stderr
