"""Durable file writes: a file is either its old content or its new one, never torn;
and output that exists is not replaced unless asked (:func:`refuse_overwrite`)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from burstlab.core.errors import InputError


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` when the block ends without error.

    Written to a temporary file in the same folder, fsynced, renamed over
    ``path``, and the folder fsynced: a crash at any point leaves either the old
    file or the whole new one. On error the temporary file is removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # some file systems cannot fsync a folder
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as fh:
        fh.write(data)
    return Path(path)


def write_json(path: str | Path, obj: object) -> Path:
    """``obj`` as indented JSON (orjson: dataclasses, numpy scalars), written atomically."""
    opts = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    return atomic_write(path, orjson.dumps(obj, option=opts) + b"\n")


def read_json_object(path: str | Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when there is no such file; an
    :class:`InputError` naming the file when it is not valid JSON or not an object."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        data = orjson.loads(p.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}", path=str(p)) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path=str(p))
    return data


def refuse_overwrite(
    *files: str | Path,
    force: bool,
    option: str | None = "--out",
    folder: str | Path | None = None,
) -> None:
    """Stop before any work when a command's output exists: an :class:`InputError`
    naming ``option`` and the first of ``files`` that exists, unless ``force``.

    ``files`` are the files the command writes; ``folder``, where given, is the
    directory that holds them, which must be a directory if it exists. A file
    that is a directory is refused even with ``force``: it cannot be replaced by
    a file. Every command that writes output calls this, so a rerun never
    replaces earlier results silently (``bench`` and ``simulate`` refuse a run
    directory that holds a run through :class:`~burstlab.results.rundir.RunDir`).
    """
    if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
        raise InputError(f"{folder} is a file, not a directory", field=option)
    for file in map(Path, files):
        if file.is_dir():
            raise InputError(f"{file} is a directory, not a file", field=option)
        if file.exists() and not force:
            raise InputError(
                f"{file} exists; not overwriting it",
                field=option,
                hint="pass --force to replace it, or choose another output",
            )
