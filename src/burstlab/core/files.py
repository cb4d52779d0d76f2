"""Durable file writes: a file is either its old content or its new one, never torn."""

from __future__ import annotations

import os
from pathlib import Path

import orjson


def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file: write, fsync, rename, and
    fsync the directory, so a crash at any point leaves a whole file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def write_json(path: Path, obj: object) -> Path:
    """``obj`` as indented JSON (orjson: dataclasses, numpy scalars), written atomically."""
    opts = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    return atomic_write(path, orjson.dumps(obj, option=opts) + b"\n")
