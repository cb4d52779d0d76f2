"""Shared fixtures: small trace files in the repo, and a writer for ad-hoc bad files;
the ``extra`` marker. Shared code that is not a fixture lives in ``support/``."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

#: The module that tells each optional extra is installed (``pyproject.toml``'s extras).
EXTRAS = {
    "forecast": "xgboost",
    "tokenizers": "tokenizers",
    "ray": "ray",
    "llamacpp": "gguf",
}


@cache
def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@cache
def _no_llama_server() -> str | None:
    """Why the real-engine tier cannot run here (None: it can)."""
    from burstlab.core.errors import BurstlabError
    from burstlab.server.llamacpp import find_llama_server

    try:
        find_llama_server()
    except BurstlabError as exc:
        return f"{exc.message}; {exc.hint}" if exc.hint else exc.message
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``@pytest.mark.extra("forecast")``: skip the test when ``burstlab[forecast]`` is not
    installed, saying what to install (the rest of the suite runs without the extras).
    ``@pytest.mark.realengine``: skip it when no llama-server binary is found."""
    for item in items:
        if item.get_closest_marker("realengine") is not None and (why := _no_llama_server()):
            item.add_marker(pytest.mark.skip(reason=why))
            continue
        for mark in item.iter_markers("extra"):
            (name,) = mark.args
            if name not in EXTRAS:
                raise pytest.UsageError(f"{item.nodeid}: unknown extra {name!r}")
            if not _installed(EXTRAS[name]):
                reason = f"needs {EXTRAS[name]}: pip install 'burstlab[{name}]'"
                item.add_marker(pytest.mark.skip(reason=reason))
                break


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """Write text (UTF-8, newlines as given) or bytes to a file under tmp_path."""

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return write


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test touches the user's real cache directory."""
    monkeypatch.setenv("BURSTLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
