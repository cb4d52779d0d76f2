"""Download a release file into burstlab's cache: resumable, bounded, verified, atomic.

:func:`fetch` streams a file named in :mod:`burstlab.trace.releases` to
``<cache>/traces/<name>.part``, resumes a partial file with an HTTP ``Range``
request, checks the size and the SHA-256 digest where they are known, and only
then moves the file to its final name with :func:`os.replace`, so a reader
never sees a half-written trace. Progress goes to a caller's callback.

Only ``https`` is used, except plain ``http`` to a loopback host (for tests and
local mirrors); a redirect to ``http`` is refused before it is followed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp
from yarl import URL

from burstlab.core.errors import FetchError
from burstlab.core.loop import run as run_loop
from burstlab.trace.releases import cache_path, expected, release_url

if sys.platform != "win32":
    import fcntl

__all__ = ["DEFAULT_MAX_BYTES", "Progress", "fetch"]

DEFAULT_MAX_BYTES = 2 * 1024**3
"""Largest body accepted, in bytes, when the file's size is not known (2 GiB).

The largest BurstGPT file is about 230 MB; the cap stops a misbehaving server
or mirror from filling the disk."""

Progress = Callable[[int, int | None], None]
"""Told ``(done, total)`` as a download goes: bytes in the file so far, and the
bytes expected in all (``None`` while unknown). ``done`` drops back when a
download has to start over."""

_CHUNK = 1 << 20
_MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def fetch(
    name: str,
    *,
    base_url: str | None = None,
    tag: str | None = None,
    cache: Path | None = None,
    sha256: str | None = None,
    size: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
    connect_timeout: float = 30.0,
    read_timeout: float = 30.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Path:
    """Download the BurstGPT release file ``name`` into the cache and return its path.

    The URL is ``<base_url>/<tag>/<name>`` (see
    :func:`~burstlab.trace.releases.release_url`); ``tag``, ``sha256`` and
    ``size`` pick the file and the figures it is checked against (see
    :func:`~burstlab.trace.releases.expected`). A file already in the cache
    (with the expected size, and the given ``sha256`` if any) is returned
    without any network access unless ``force`` is set.

    A body larger than the expected size, or than ``max_bytes`` when the size
    is unknown, is refused. A mismatch deletes the download; a dropped
    connection keeps the ``.part`` file so the next call resumes it.
    ``connect_timeout`` bounds connecting and ``read_timeout`` bounds each
    wait for data, both in seconds, so a stalled server fails instead of
    hanging. ``progress``, if given, is called as bytes arrive (see
    :data:`Progress`).

    Raises :class:`~burstlab.core.errors.FetchError` for every network,
    server or integrity problem.
    """
    plan = _plan(
        name,
        base_url=base_url,
        tag=tag,
        cache=cache,
        sha256=sha256,
        size=size,
        max_bytes=max_bytes,
    )
    if not force and _is_cached(plan):
        return plan.path
    timeout = aiohttp.ClientTimeout(
        total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
    )
    return run_loop(_fetch(plan, timeout, progress=progress or _silent, force=force))


def _silent(_done: int, _total: int | None) -> None:
    """The progress callback when none is given."""


async def _fetch(
    plan: _Plan, timeout: aiohttp.ClientTimeout, *, progress: Progress, force: bool
) -> Path:
    """Download ``plan`` (the coroutine behind :func:`fetch`)."""
    plan.path.parent.mkdir(parents=True, exist_ok=True)
    with _locked_part(plan.part) as fh:
        try:
            async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
                await _download(session, plan, fh, progress, force=force)
        except _BadDownloadError as exc:
            _remove(plan.part, fh)
            raise FetchError(exc.message, hint=exc.hint) from None
        except BaseException:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                _remove(plan.part, fh)
            raise
        # Rename while still holding the lock, so no other download can append meanwhile;
        # Windows cannot rename an open file.
        if sys.platform == "win32":
            fh.close()
        plan.part.replace(plan.path)  # os.replace: atomic on one filesystem
    _fsync_dir(plan.path.parent)
    return plan.path


@dataclass(frozen=True, slots=True)
class _Plan:
    name: str
    tag: str
    url: URL
    path: Path
    part: Path
    size: int | None
    sha256: str | None
    limit: int


class _BadDownloadError(FetchError):
    """The bytes are wrong (size or digest): the partial file must be deleted."""


def _plan(
    name: str,
    *,
    base_url: str | None,
    tag: str | None,
    cache: Path | None,
    sha256: str | None,
    size: int | None,
    max_bytes: int,
) -> _Plan:
    file = expected(name, tag=tag, sha256=sha256, size=size)
    url = release_url(file, base_url)
    _check_url(url)
    path = cache_path(name, cache)
    return _Plan(
        name=name,
        tag=file.tag,
        url=url,
        path=path,
        part=path.with_name(name + ".part"),
        size=file.size,
        sha256=file.sha256,
        limit=file.size if file.size is not None else max_bytes,
    )


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_url(url: URL, *, redirected_from: URL | None = None) -> None:
    """Allow https anywhere and http only to loopback hosts, before any connection."""
    if url.scheme == "https" or (url.scheme == "http" and _is_loopback(url.host)):
        return
    shown = _show(url)
    if redirected_from is not None:
        raise FetchError(
            f"refusing redirect from {_show(redirected_from)} to insecure {shown}",
            hint="burstlab downloads over https only; use a mirror that stays on https",
        )
    raise FetchError(
        f"refusing to download from {shown}: only https is allowed "
        "(plain http only to 127.0.0.1, ::1 or localhost)",
        hint="use an https:// base URL",
    )


def _show(url: URL) -> str:
    """A URL for messages: no credentials, no signed query string."""
    return str(url.with_user(None).with_password(None).with_query(None).with_fragment(None))


def _is_cached(plan: _Plan) -> bool:
    if not plan.path.is_file():
        return False
    if plan.size is not None and plan.path.stat().st_size != plan.size:
        return False
    if plan.sha256 is None:
        return True
    digest = hashlib.sha256()
    with plan.path.open("rb") as fh:
        _hash_file(fh, digest)
    return digest.hexdigest() == plan.sha256


def _hash_file(fh: BinaryIO, digest: hashlib._Hash) -> None:
    fh.seek(0)
    while chunk := fh.read(_CHUNK):
        digest.update(chunk)


@contextmanager
def _locked_part(part: Path) -> Iterator[BinaryIO]:
    """Open ``part`` for appending, locked so two downloads cannot interleave their bytes."""
    part.parent.mkdir(parents=True, exist_ok=True)
    fh = part.open("a+b")
    try:
        if sys.platform != "win32":
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FetchError(
                    f"another burstlab process is downloading {part.name}",
                    hint="wait for it to finish, then run the command again",
                ) from None
        yield fh
    finally:
        fh.close()


def _remove(part: Path, fh: BinaryIO) -> None:
    """Delete the partial file, while still locked where the platform allows it."""
    if sys.platform == "win32":
        fh.close()
    part.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; directories cannot be opened this way on Windows."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _restart(fh: BinaryIO) -> hashlib._Hash:
    fh.truncate(0)
    fh.seek(0)
    return hashlib.sha256()


async def _download(
    session: aiohttp.ClientSession, plan: _Plan, fh: BinaryIO, progress: Progress, *, force: bool
) -> None:
    fh.seek(0, os.SEEK_END)
    offset = fh.tell()
    digest = hashlib.sha256()
    if force or offset > plan.limit:
        digest = _restart(fh)
        offset = 0
    elif offset:
        _hash_file(fh, digest)
    progress(offset, plan.size)
    for _attempt in range(3):
        headers = {"Accept-Encoding": "identity", "User-Agent": "burstlab-fetch"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        resp = await _open(session, plan, headers)
        async with resp:
            if resp.status == 416 and offset:
                total = _content_range(resp.headers.get("Content-Range", ""))[2]
                if total == offset:
                    break  # the partial file was already complete
                digest, offset = _restart(fh), 0
                continue
            _raise_for_status(resp, plan)
            if resp.status == 206:
                start, _end, total = _content_range(resp.headers.get("Content-Range", ""))
                if start != offset:
                    digest, offset = _restart(fh), 0
                    continue
                if total is not None:
                    _check_length(plan, total)
            elif offset:
                # A 200 answer to a Range request carries the whole file: start over.
                digest, offset = _restart(fh), 0
            encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise FetchError(
                    f"{_show(resp.url)} sent the file {encoding}-encoded, "
                    "though burstlab asked for identity",
                    hint="use a mirror that serves the raw file",
                )
            if resp.content_length is not None:
                _check_length(plan, offset + resp.content_length)
            size = plan.size if plan.size is not None else _total(offset, resp.content_length)
            progress(offset, size)
            offset = await _stream(
                resp, fh, digest, offset=offset, plan=plan, progress=progress, size=size
            )
            break
    else:
        raise FetchError(f"{plan.url.host} kept answering with the wrong byte range")
    _verify(plan, offset, digest.hexdigest())
    fh.flush()
    os.fsync(fh.fileno())


def _total(offset: int, content_length: int | None) -> int | None:
    return None if content_length is None else offset + content_length


def _content_range(value: str) -> tuple[int | None, int | None, int | None]:
    """Parse ``bytes START-END/TOTAL`` or ``bytes */TOTAL``; unknown parts are None."""
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match:
        total = None if match[3] == "*" else int(match[3])
        return int(match[1]), int(match[2]), total
    star = re.fullmatch(r"bytes\s+\*/(\d+)", value.strip())
    return None, None, int(star[1]) if star else None


def _check_length(plan: _Plan, total: int) -> None:
    """Refuse before reading when the server announces the wrong length, in bytes."""
    if plan.size is not None and total != plan.size:
        raise _BadDownloadError(
            f"{plan.name} from {_show(plan.url)} is {total} bytes, expected {plan.size}",
            hint="the release file may have changed; check it and pass --sha256 to accept it",
        )
    if total > plan.limit:
        raise _BadDownloadError(
            f"{plan.name} from {_show(plan.url)} is {total} bytes, "
            f"over the {plan.limit}-byte limit",
            hint="a BurstGPT file is a few hundred MB; check the base URL",
        )


async def _open(
    session: aiohttp.ClientSession, plan: _Plan, headers: dict[str, str]
) -> aiohttp.ClientResponse:
    """GET ``plan.url``, following redirects by hand so each hop is checked first."""
    url = plan.url
    for _hop in range(_MAX_REDIRECTS + 1):
        try:
            resp = await session.get(url, headers=headers, allow_redirects=False)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise FetchError(
                f"TLS certificate check failed for {url.host}: {exc.certificate_error}",
                hint="check the system clock and CA certificates, or the base URL",
            ) from None
        except aiohttp.ClientConnectorError as exc:
            reason = _os_reason(exc.os_error)
            raise FetchError(
                f"cannot reach {url.host}: {reason}; are you offline?",
                hint="check the network connection (or the --base-url host and port)",
            ) from None
        except TimeoutError:
            raise FetchError(
                f"no answer from {url.host} in time; are you offline?",
                hint="check the network connection, then run the command again",
            ) from None
        except aiohttp.ClientError as exc:
            raise FetchError(
                f"request to {_show(url)} failed: {exc or type(exc).__name__}",
                hint="run the command again; a partial download is resumed",
            ) from None
        if resp.status not in _REDIRECTS:
            return resp
        location = resp.headers.get("Location")
        resp.release()
        if not location:
            raise FetchError(f"{_show(url)} redirected without a Location header")
        try:
            target = url.join(URL(location))
        except ValueError:
            raise FetchError(f"{_show(url)} redirected to an invalid URL") from None
        _check_url(target, redirected_from=url)
        url = target
    raise FetchError(f"too many redirects fetching {_show(plan.url)}")


def _os_reason(error: OSError) -> str:
    """A short reason: 'Connection refused' rather than asyncio's 'Connect call failed'."""
    if isinstance(error, socket.gaierror):
        return error.strerror or str(error)
    if error.errno is not None and error.errno > 0:
        return os.strerror(error.errno)
    return str(error) or type(error).__name__


def _raise_for_status(resp: aiohttp.ClientResponse, plan: _Plan) -> None:
    if resp.status == 404:
        raise FetchError(
            f"no such release file: {plan.name} at tag {plan.tag} "
            f"(HTTP 404 from {_show(plan.url)})",
            hint="see `burstlab fetch --list`, or check --tag and --base-url",
        )
    if resp.status not in (200, 206):
        reason = f" {resp.reason}" if resp.reason else ""
        raise FetchError(
            f"HTTP {resp.status}{reason} fetching {plan.name} from {_show(resp.url)}",
            hint="run the command again later; a partial download is resumed",
        )


async def _stream(
    resp: aiohttp.ClientResponse,
    fh: BinaryIO,
    digest: hashlib._Hash,
    *,
    offset: int,
    plan: _Plan,
    progress: Progress,
    size: int | None,
) -> int:
    """Append the body to ``fh``, hashing as it goes; return the file's size in bytes.

    ``size`` is the whole file's expected size in bytes, for ``progress``.
    """
    received = offset
    try:
        async for chunk in resp.content.iter_chunked(_CHUNK):
            received += len(chunk)
            if received > plan.limit:
                raise _BadDownloadError(
                    f"{plan.name} from {_show(plan.url)} is over the {plan.limit}-byte limit",
                    hint="the release file may have changed, or the base URL is wrong",
                )
            fh.write(chunk)
            digest.update(chunk)
            progress(received, size)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
        fh.flush()
        if isinstance(exc, TimeoutError):
            why = "no data arrived in time"
        elif isinstance(exc, aiohttp.ClientPayloadError):
            why = "the connection closed early"
        else:
            why = str(exc) or type(exc).__name__
        raise FetchError(
            f"download of {plan.name} was cut off after {received} bytes: {why}",
            hint=f"the partial file {plan.part} is kept; run the same command again to resume",
        ) from None
    if resp.content_length is not None and received != offset + resp.content_length:
        fh.flush()
        raise FetchError(
            f"download of {plan.name} was cut off after {received} bytes",
            hint=f"the partial file {plan.part} is kept; run the same command again to resume",
        )
    return received


def _verify(plan: _Plan, size: int, sha256: str) -> None:
    if plan.size is not None and size != plan.size:
        raise _BadDownloadError(
            f"{plan.name} is {size} bytes, expected {plan.size}; the download was deleted",
            hint="the release file may have changed; check it and pass --sha256 to accept it",
        )
    if plan.sha256 is not None and sha256 != plan.sha256:
        raise _BadDownloadError(
            f"SHA-256 mismatch for {plan.name}: got {sha256}, expected {plan.sha256}; "
            "the download was deleted",
            hint="run the command again; if it persists, the release file has changed",
        )
