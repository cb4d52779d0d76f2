"""Where burstlab keeps files between runs."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ENV_CACHE = "BURSTLAB_CACHE"


def cache_dir() -> Path:
    """burstlab's cache directory: ``$BURSTLAB_CACHE`` if set, else the user cache dir.

    The user cache dir is platformdirs' (``~/.cache/burstlab`` on Linux, or
    under ``$XDG_CACHE_HOME``). Downloads go to ``traces/`` below it and
    cached tables to ``tables/``. The directory is not created here.
    """
    env = os.environ.get(ENV_CACHE, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("burstlab", appauthor=False))
