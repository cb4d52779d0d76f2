"""An opt-in Parquet cache of read traces.

Parsing a 10M-row CSV takes seconds; reading the same table back from Parquet
takes a fraction of one. The cache key covers the source's size, mtime and a
content hash (xxh3-128, fast enough to run on every read), the reader options,
the reader's and the schema's versions, so a changed file or option never returns a stale
table. Entries live under ``<cache>/tables`` and are written atomically.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import xxhash

from burstlab.core.dirs import cache_dir
from burstlab.core.files import atomic_file, atomic_write
from burstlab.core.version import __version__
from burstlab.trace.load_report import LoadReport
from burstlab.trace.schema import SCHEMA_VERSION
from burstlab.trace.source import resolve

_CHUNK = 16 << 20


def content_hash(path: Path) -> str:
    """xxh3-128 of the file's bytes, streamed in 16 MiB chunks."""
    h = xxhash.xxh3_128()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return str(h.hexdigest())


def cache_key(path: Path, options: dict[str, Any], *, reader_version: int) -> str:
    """The cache entry name for ``path`` read with ``options`` by that version of the reader."""
    st = path.stat()
    ident = {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "xxh3": content_hash(path),
        "options": options,
        "schema": SCHEMA_VERSION,
        "reader": reader_version,
        "burstlab": __version__,
    }
    return hashlib.sha256(orjson.dumps(ident, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def cached_read(
    path: str,
    options: dict[str, Any],
    read: Callable[[], tuple[pl.DataFrame, LoadReport]],
    *,
    reader_version: int,
) -> tuple[pl.DataFrame, LoadReport]:
    """Return the cached table for ``path`` and ``options``, or call ``read`` and store it.

    ``reader_version`` is the reader's version (a new one never sees an older one's tables).
    """
    started = time.perf_counter()
    key = cache_key(resolve(path), options, reader_version=reader_version)
    folder = cache_dir() / "tables"
    table_path, report_path = folder / f"{key}.parquet", folder / f"{key}.json"
    if table_path.exists() and report_path.exists():
        try:
            table = pl.read_parquet(table_path)
            report = LoadReport.model_validate_json(report_path.read_bytes())
        except (OSError, ValueError, pl.exceptions.PolarsError):
            pass  # a damaged entry is rebuilt below
        else:
            seconds = round(time.perf_counter() - started, 4)
            return table, report.model_copy(update={"cache": "hit", "seconds": seconds})
    table, report = read()
    report = report.model_copy(update={"cache": "miss"})
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(table_path) as fh:
        table.write_parquet(fh)
    atomic_write(report_path, report.model_dump_json().encode())
    return table, report
