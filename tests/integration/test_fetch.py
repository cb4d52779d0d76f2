"""burstlab.trace.download against real HTTP servers on 127.0.0.1 (no internet)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from burstlab.core.dirs import cache_dir
from burstlab.core.errors import FetchError
from burstlab.trace.download import fetch
from burstlab.trace.releases import cache_path, known_files

NAME = "BurstGPT_1.csv"
TAG = "v1.1"
PATH = f"/{TAG}/{NAME}"
BODY = b"Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n" + b"".join(
    f"{i},ChatGPT,{i % 997},{i % 331},{i % 997 + i % 331},Conversation log\n".encode()
    for i in range(20_000)
)
DIGEST = hashlib.sha256(BODY).hexdigest()


class FileServer:
    """An aiohttp.web server on 127.0.0.1 in a background thread, with scripted faults.

    ``modes[path]`` is a list of behaviours used one per request (the last one
    repeats): ``ok`` honours Range, ``ignore-range`` always sends the whole
    file with 200, ``drop`` sends half of what it announced and closes the
    socket, ``stall`` sends half and then goes quiet, ``gzip`` claims a
    Content-Encoding. ``requests`` records (path, Range header) per request.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, list[str]] = {}
        self.redirects: dict[str, str] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        assert self._release is not None
        assert self._runner is not None
        self._release.set()
        await self._runner.cleanup()

    def _mode(self, path: str) -> str:
        modes = self.modes.get(path, ["ok"])
        return modes.pop(0) if len(modes) > 1 else modes[0]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, request.headers.get("Range")))
        if request.path in self.redirects:
            raise web.HTTPFound(self.redirects[request.path])
        body = self.files.get(request.path)
        if body is None:
            raise web.HTTPNotFound
        mode = self._mode(request.path)
        start = 0
        rng = request.headers.get("Range")
        status = 200
        headers = {"Content-Type": "text/csv"}
        if rng and mode != "ignore-range":
            start = int(rng.removeprefix("bytes=").removesuffix("-"))
            if start >= len(body):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(body)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        if mode == "gzip":
            headers["Content-Encoding"] = "gzip"
        rest = body[start:]
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(rest)
        await resp.prepare(request)
        if mode in ("drop", "stall"):
            await resp.write(rest[: len(rest) // 2])
            if mode == "stall":
                assert self._release is not None
                await self._release.wait()
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write(rest)
        await resp.write_eof()
        return resp


@pytest.fixture
def server() -> Iterator[FileServer]:
    srv = FileServer()
    srv.files[PATH] = BODY
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BURSTLAB_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.delenv("BURSTLAB_FETCH_BASE_URL", raising=False)


def _parts(cache: Path) -> list[Path]:
    return list((cache / "traces").glob("*.part")) if (cache / "traces").exists() else []


def test_full_download_verifies_and_leaves_no_part(server: FileServer, tmp_path: Path) -> None:
    path = fetch(NAME, base_url=server.base, cache=tmp_path, sha256=DIGEST)
    assert path == tmp_path / "traces" / NAME
    assert path.read_bytes() == BODY
    assert hashlib.sha256(path.read_bytes()).hexdigest() == DIGEST
    assert _parts(tmp_path) == []
    assert server.requests == [(PATH, None)]


def test_cached_file_is_not_downloaded_again_unless_forced(
    server: FileServer, tmp_path: Path
) -> None:
    fetch(NAME, base_url=server.base, cache=tmp_path)
    fetch(NAME, base_url=server.base, cache=tmp_path)
    assert len(server.requests) == 1
    fetch(NAME, base_url=server.base, cache=tmp_path, force=True)
    assert len(server.requests) == 2
    assert (tmp_path / "traces" / NAME).read_bytes() == BODY


def test_dropped_connection_keeps_part_and_resumes_with_range(
    server: FileServer, tmp_path: Path
) -> None:
    server.modes[PATH] = ["drop", "ok"]
    with pytest.raises(FetchError, match="cut off") as info:
        fetch(NAME, base_url=server.base, cache=tmp_path, sha256=DIGEST)
    assert info.value.hint is not None
    assert "resume" in info.value.hint
    part = tmp_path / "traces" / f"{NAME}.part"
    assert not (tmp_path / "traces" / NAME).exists()
    kept = part.stat().st_size
    assert 0 < kept < len(BODY)
    assert part.read_bytes() == BODY[:kept]

    path = fetch(NAME, base_url=server.base, cache=tmp_path, sha256=DIGEST)
    assert server.requests[-1] == (PATH, f"bytes={kept}-")
    assert path.read_bytes() == BODY
    assert not part.exists()


def test_progress_is_told_bytes_done_and_expected(server: FileServer, tmp_path: Path) -> None:
    server.modes[PATH] = ["drop", "ok"]
    with pytest.raises(FetchError):
        fetch(NAME, base_url=server.base, cache=tmp_path)
    kept = (tmp_path / "traces" / f"{NAME}.part").stat().st_size
    seen: list[tuple[int, int | None]] = []
    fetch(NAME, base_url=server.base, cache=tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (kept, None)  # the size is not known before the server answers
    assert seen[1:2] == [(kept, len(BODY))]
    assert seen[-1] == (len(BODY), len(BODY))
    done = [d for d, _ in seen]
    assert done == sorted(done)
    seen.clear()
    fetch(NAME, base_url=server.base, cache=tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert seen == []  # cached: no download, no progress


def test_resume_against_server_ignoring_range_restarts(server: FileServer, tmp_path: Path) -> None:
    server.modes[PATH] = ["drop", "ignore-range"]
    with pytest.raises(FetchError):
        fetch(NAME, base_url=server.base, cache=tmp_path)
    kept = (tmp_path / "traces" / f"{NAME}.part").stat().st_size
    path = fetch(NAME, base_url=server.base, cache=tmp_path, sha256=DIGEST)
    assert server.requests[-1] == (PATH, f"bytes={kept}-")
    assert path.read_bytes() == BODY


def test_complete_part_is_finished_on_416(server: FileServer, tmp_path: Path) -> None:
    part = tmp_path / "traces" / f"{NAME}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(BODY)
    path = fetch(NAME, base_url=server.base, cache=tmp_path, sha256=DIGEST)
    assert path.read_bytes() == BODY
    assert not part.exists()


def test_stalled_server_times_out_and_keeps_part(server: FileServer, tmp_path: Path) -> None:
    server.modes[PATH] = ["stall"]
    with pytest.raises(FetchError, match="no data arrived in time"):
        fetch(NAME, base_url=server.base, cache=tmp_path, read_timeout=0.3)
    assert (tmp_path / "traces" / f"{NAME}.part").stat().st_size > 0


def test_sha256_mismatch_deletes_everything(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="SHA-256 mismatch"):
        fetch(NAME, base_url=server.base, cache=tmp_path, sha256="0" * 64)
    assert not (tmp_path / "traces" / NAME).exists()
    assert _parts(tmp_path) == []


def test_wrong_size_is_refused(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=f"expected {len(BODY) - 1}"):
        fetch(NAME, base_url=server.base, cache=tmp_path, size=len(BODY) - 1)
    assert _parts(tmp_path) == []
    assert not (tmp_path / "traces" / NAME).exists()


def test_body_over_cap_is_refused(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="limit"):
        fetch(NAME, base_url=server.base, cache=tmp_path, max_bytes=1000)
    assert _parts(tmp_path) == []


def test_encoded_body_is_refused(server: FileServer, tmp_path: Path) -> None:
    server.modes[PATH] = ["gzip"]
    with pytest.raises(FetchError, match="gzip"):
        fetch(NAME, base_url=server.base, cache=tmp_path)
    assert not (tmp_path / "traces" / NAME).exists()


def test_404_names_the_file(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"no such release file: BurstGPT_2\.csv at tag v1\.1"):
        fetch("BurstGPT_2.csv", base_url=server.base, cache=tmp_path)
    assert _parts(tmp_path) == []


def test_unknown_name_lists_known_files(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"BurstGPT_without_fails_3\.csv") as info:
        fetch("nope.csv", cache=tmp_path)
    assert info.value.hint is not None
    assert "--tag" in info.value.hint


def test_unknown_name_with_tag_is_fetched(server: FileServer, tmp_path: Path) -> None:
    server.files["/v9/extra.csv"] = b"a,b\n1,2\n"
    path = fetch("extra.csv", tag="v9", base_url=server.base, cache=tmp_path)
    assert path.read_bytes() == b"a,b\n1,2\n"


@pytest.mark.parametrize("name", ["../etc/passwd", ".hidden", "a/b.csv", ""])
def test_unsafe_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="invalid"):
        fetch(name, tag="v1", cache=tmp_path)


def test_connection_refused_says_offline(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError, match=r"cannot reach 127\.0\.0\.1: .*are you offline\?"):
        fetch(NAME, base_url=f"http://127.0.0.1:{port}", cache=tmp_path)
    assert _parts(tmp_path) == []


def test_plain_http_to_other_hosts_is_refused_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to open a session")

    monkeypatch.setattr(aiohttp, "ClientSession", no_network)
    for base in ("http://example.invalid/releases", "ftp://127.0.0.1/x", "file:///tmp"):
        with pytest.raises(FetchError, match="only https"):
            fetch(NAME, base_url=base, cache=tmp_path)
    assert not (tmp_path / "traces").exists()


def test_redirect_to_loopback_is_followed(server: FileServer, tmp_path: Path) -> None:
    server.redirects[PATH] = f"{server.base}/mirror/{NAME}"
    server.files[f"/mirror/{NAME}"] = BODY
    path = fetch(NAME, base_url=server.base, cache=tmp_path, sha256=DIGEST)
    assert path.read_bytes() == BODY
    assert [p for p, _ in server.requests] == [PATH, f"/mirror/{NAME}"]


def test_redirect_to_insecure_host_is_refused(server: FileServer, tmp_path: Path) -> None:
    server.redirects[PATH] = f"http://example.invalid/{NAME}"
    with pytest.raises(FetchError, match=r"refusing redirect .* to insecure http://example"):
        fetch(NAME, base_url=server.base, cache=tmp_path)
    assert _parts(tmp_path) == []


def test_env_cache_and_base_url_are_used(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BURSTLAB_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("BURSTLAB_FETCH_BASE_URL", server.base + "/")
    assert cache_dir() == tmp_path / "mine"
    assert cache_path(NAME) == tmp_path / "mine" / "traces" / NAME
    path = fetch(NAME)
    assert path == tmp_path / "mine" / "traces" / NAME
    assert path.read_bytes() == BODY


def test_default_cache_dir_without_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BURSTLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir().name == "burstlab"


def test_known_files_registry() -> None:
    files = {f.name: f for f in known_files()}
    assert set(files) == {
        "BurstGPT_1.csv",
        "BurstGPT_without_fails_1.csv",
        "BurstGPT_2.csv",
        "BurstGPT_without_fails_2.csv",
        "BurstGPT_3.csv",
        "BurstGPT_without_fails_3.csv",
    }
    assert files["BurstGPT_3.csv"].tag == "v2.0"
    assert files["BurstGPT_3.csv"].size == 231_682_327
    assert files["BurstGPT_1.csv"].tag == "v1.1"
    assert files["BurstGPT_1.csv"].sha256 is None


def test_bad_sha256_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="64 hexadecimal"):
        fetch(NAME, cache=tmp_path, sha256="abc")


@pytest.mark.skipif(sys.platform == "win32", reason="the part-file lock uses fcntl")
def test_concurrent_download_of_same_file_is_refused(server: FileServer, tmp_path: Path) -> None:
    import fcntl

    part = tmp_path / "traces" / f"{NAME}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(BODY[:100])
    with part.open("ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(FetchError, match="another burstlab process"):
            fetch(NAME, base_url=server.base, cache=tmp_path)
    assert part.read_bytes() == BODY[:100]
    assert server.requests == []


def test_given_sha256_replaces_known_size_and_digest(server: FileServer, tmp_path: Path) -> None:
    server.files["/v2.0/BurstGPT_3.csv"] = BODY
    with pytest.raises(FetchError, match="expected 231682327"):
        fetch("BurstGPT_3.csv", base_url=server.base, cache=tmp_path)
    path = fetch("BurstGPT_3.csv", base_url=server.base, cache=tmp_path, sha256=DIGEST)
    assert path.read_bytes() == BODY
