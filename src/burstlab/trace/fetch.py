"""Download BurstGPT release files into burstlab's cache, checked and atomic.

BurstGPT (HPMLL/BurstGPT) publishes its trace as CSV files attached to GitHub
releases. :func:`fetch` streams one of them to ``<cache>/traces/<name>.part``,
resumes a partial file with an HTTP ``Range`` request, checks the size and the
SHA-256 digest where they are known, and only then moves the file to its final
name with :func:`os.replace`, so a reader never sees a half-written trace.

Only ``https`` is used, except plain ``http`` to a loopback host (for tests and
local mirrors); a redirect to ``http`` is refused before it is followed.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import re
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from yarl import URL

from burstlab.core.dirs import ENV_CACHE, cache_dir
from burstlab.core.errors import FetchError

if sys.platform != "win32":
    import fcntl

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_BYTES",
    "ENV_BASE_URL",
    "ENV_CACHE",
    "KnownFile",
    "cache_dir",
    "cache_path",
    "fetch",
    "known_files",
]

DEFAULT_BASE_URL = "https://github.com/HPMLL/BurstGPT/releases/download"
ENV_BASE_URL = "BURSTLAB_FETCH_BASE_URL"
DEFAULT_MAX_BYTES = 2 * 1024**3
"""Largest body accepted, in bytes, when the file's size is not known (2 GiB).

The largest BurstGPT file is about 230 MB; the cap stops a misbehaving server
or mirror from filling the disk."""

_CHUNK = 1 << 20
_MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,254}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True, slots=True)
class KnownFile:
    """One BurstGPT release file that ``burstlab fetch`` knows by name.

    ``size`` is in bytes. ``size`` and ``sha256`` (lower-case hex) are ``None``
    where no figure is known; such a download is checked only against a digest
    the caller gives and against :data:`DEFAULT_MAX_BYTES`.
    """

    name: str
    tag: str
    size: int | None = None
    sha256: str | None = None
    description: str = ""


# The size and digest of BurstGPT_3.csv were reported by a third party who
# downloaded it, not published by the BurstGPT authors; the others are unknown.
# A mismatch may therefore mean the release was re-uploaded: pass --sha256.
_REGISTRY: dict[str, KnownFile] = {
    f.name: f
    for f in (
        KnownFile("BurstGPT_1.csv", "v1.1", description="BurstGPT v1.1 part 1, all requests"),
        KnownFile(
            "BurstGPT_without_fails_1.csv",
            "v1.1",
            description="BurstGPT v1.1 part 1, failed requests removed",
        ),
        KnownFile("BurstGPT_2.csv", "v1.1", description="BurstGPT v1.1 part 2, all requests"),
        KnownFile(
            "BurstGPT_without_fails_2.csv",
            "v1.1",
            description="BurstGPT v1.1 part 2, failed requests removed",
        ),
        KnownFile(
            "BurstGPT_3.csv",
            "v2.0",
            size=231_682_327,
            sha256="2299986a07388aa303ec2c41d1131e756db650a39ed6ef9dfe7cc3d7f9a43b8f",
            description="BurstGPT v2.0, all requests",
        ),
        KnownFile(
            "BurstGPT_without_fails_3.csv",
            "v2.0",
            description="BurstGPT v2.0, failed requests removed",
        ),
    )
}


def known_files() -> list[KnownFile]:
    """The BurstGPT release files burstlab knows, in release order."""
    return list(_REGISTRY.values())


def cache_path(name: str, cache: Path | None = None) -> Path:
    """Where :func:`fetch` stores ``name``: ``<cache>/traces/<name>``."""
    _check_name(name, "file name")
    return (cache if cache is not None else cache_dir()) / "traces" / name


def fetch(
    name: str,
    *,
    base_url: str | None = None,
    tag: str | None = None,
    cache: Path | None = None,
    sha256: str | None = None,
    size: int | None = None,
    force: bool = False,
    progress: bool = True,
    connect_timeout: float = 30.0,
    read_timeout: float = 30.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Path:
    """Download the BurstGPT release file ``name`` into the cache and return its path.

    The URL is ``<base_url>/<tag>/<name>``. ``base_url`` defaults to
    ``$BURSTLAB_FETCH_BASE_URL``, else :data:`DEFAULT_BASE_URL`; ``tag``
    defaults to the file's release in :func:`known_files`, and is required for
    a name not listed there. A file already in the cache (with the known size,
    and the given ``sha256`` if any) is returned without any network access
    unless ``force`` is set.

    ``sha256`` (hex) and ``size`` (bytes) override the known figures, which
    apply only to the file's own release tag; a caller's ``sha256`` alone also
    drops the known size, since it names one exact version of the file. A
    body larger than the expected size, or than ``max_bytes`` when the size is
    unknown, is refused. A mismatch deletes the download; a dropped
    connection keeps the ``.part`` file so the next call resumes it.
    ``connect_timeout`` bounds connecting and ``read_timeout`` bounds each
    wait for data, both in seconds, so a stalled server fails instead of
    hanging. ``progress`` draws a bar on stderr when it is a terminal.

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
    return asyncio.run(_fetch(plan, timeout, progress=progress, force=force))


async def _fetch(
    plan: _Plan, timeout: aiohttp.ClientTimeout, *, progress: bool, force: bool
) -> Path:
    """Download ``plan`` (the coroutine behind :func:`fetch`)."""
    plan.path.parent.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not progress or not console.is_terminal,
        transient=True,
    )
    with _locked_part(plan.part) as fh:
        try:
            with bar:
                async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
                    await _download(session, plan, fh, bar, force=force)
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
    _check_name(name, "file name")
    known = _REGISTRY.get(name)
    if tag is None:
        if known is None:
            names = ", ".join(_REGISTRY)
            raise FetchError(
                f"unknown BurstGPT file {name!r}; known files: {names}",
                hint="pass --tag TAG to fetch another file attached to a BurstGPT release",
            )
        tag = known.tag
    _check_name(tag, "release tag")
    if known is not None and known.tag != tag:
        known = None
    if size is None and known is not None and sha256 is None:
        size = known.size
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not _SHA256.fullmatch(sha256):
            raise FetchError(
                "the SHA-256 digest must be 64 hexadecimal characters",
                hint="copy it from `sha256sum FILE`",
            )
    elif known is not None:
        sha256 = known.sha256
    if size is not None and size < 0:
        raise FetchError(f"the expected size must be at least 0 bytes, not {size}")
    if base_url is None:
        base_url = os.environ.get(ENV_BASE_URL, "").strip() or DEFAULT_BASE_URL
    url = _parse_base(base_url) / tag / name
    _check_url(url)
    path = cache_path(name, cache)
    return _Plan(
        name=name,
        tag=tag,
        url=url,
        path=path,
        part=path.with_name(name + ".part"),
        size=size,
        sha256=sha256,
        limit=size if size is not None else max_bytes,
    )


def _check_name(value: str, what: str) -> None:
    """Names become both a URL segment and a file name: allow no separators or dots first."""
    if not _SAFE_NAME.fullmatch(value):
        raise FetchError(
            f"invalid {what} {value!r}",
            hint="use letters, digits, '.', '_', '+' and '-' only, not starting with '.'",
        )


def _parse_base(base: str) -> URL:
    try:
        url = URL(base.rstrip("/"))
    except ValueError as exc:
        raise FetchError(f"invalid base URL {base!r}: {exc}") from None
    if url.scheme and url.scheme not in ("http", "https"):
        raise FetchError(
            f"refusing to download from {base!r}: only https is allowed",
            hint="use an https:// base URL",
        )
    if not url.host:
        raise FetchError(
            f"invalid base URL {base!r}: it needs a scheme and a host",
            hint=f"for example {DEFAULT_BASE_URL}",
        )
    return url.with_query(None).with_fragment(None)


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
    session: aiohttp.ClientSession, plan: _Plan, fh: BinaryIO, bar: Progress, *, force: bool
) -> None:
    fh.seek(0, os.SEEK_END)
    offset = fh.tell()
    digest = hashlib.sha256()
    if force or offset > plan.limit:
        digest = _restart(fh)
        offset = 0
    elif offset:
        _hash_file(fh, digest)
    task = bar.add_task(plan.name, total=plan.size, completed=offset)
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
            expected = plan.size if plan.size is not None else _total(offset, resp.content_length)
            bar.reset(task, total=expected, completed=offset)
            offset = await _stream(resp, fh, digest, offset=offset, plan=plan, bar=bar, task=task)
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
    bar: Progress,
    task: TaskID,
) -> int:
    """Append the body to ``fh``, hashing as it goes; return the file's size in bytes."""
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
            bar.advance(task, len(chunk))
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
