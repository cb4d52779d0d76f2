"""The BurstGPT release files burstlab knows: names, tags, URLs, sizes and digests.

BurstGPT (HPMLL/BurstGPT) publishes its trace as CSV files attached to GitHub
releases, at ``<base>/<tag>/<name>``. This module says which files exist, what
size and SHA-256 digest a download of one must have, where it comes from and
where it goes in burstlab's cache; :mod:`burstlab.trace.download` fetches it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from yarl import URL

from burstlab.core.dirs import cache_dir
from burstlab.core.errors import FetchError

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_BASE_URL",
    "KnownFile",
    "cache_path",
    "expected",
    "known_files",
    "release_url",
]

DEFAULT_BASE_URL = "https://github.com/HPMLL/BurstGPT/releases/download"
ENV_BASE_URL = "BURSTLAB_FETCH_BASE_URL"

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,254}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class KnownFile:
    """One BurstGPT release file that ``burstlab fetch`` knows by name.

    ``size`` is in bytes. ``size`` and ``sha256`` (lower-case hex) are ``None``
    where no figure is known; such a download is checked only against a digest
    the caller gives and against the download's byte limit.
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
    """Where a download of ``name`` is stored: ``<cache>/traces/<name>``."""
    _check_name(name, "file name")
    return (cache if cache is not None else cache_dir()) / "traces" / name


def expected(
    name: str, *, tag: str | None = None, sha256: str | None = None, size: int | None = None
) -> KnownFile:
    """The release file ``name`` at ``tag`` with the size and digest its download must have.

    ``tag`` defaults to the file's release in :func:`known_files` and is
    required for a name not listed there. ``sha256`` (hex) and ``size``
    (bytes) override the known figures, which apply only to the file's own
    release tag; a caller's ``sha256`` alone also drops the known size, since
    it names one exact version of the file.
    """
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
    description = known.description if known is not None else ""
    return KnownFile(name, tag, size=size, sha256=sha256, description=description)


def release_url(file: KnownFile, base_url: str | None = None) -> URL:
    """``<base_url>/<tag>/<name>`` for ``file``.

    ``base_url`` defaults to ``$BURSTLAB_FETCH_BASE_URL``, else
    :data:`DEFAULT_BASE_URL`. Whether the URL is safe to download from is the
    downloader's check, not this one's.
    """
    if base_url is None:
        base_url = os.environ.get(ENV_BASE_URL, "").strip() or DEFAULT_BASE_URL
    return _parse_base(base_url) / file.tag / file.name


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
