"""Fixtures of the real-engine tier: the seeded tiny GGUF and one llama-server for the session.

Tests that need the server are marked ``@pytest.mark.realengine`` (``tests/conftest.py`` skips
them, saying why, when no llama-server is found) and take ``llama_url``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from burstlab.server.llamacpp import TinyLlama, llama_server, write_tiny_gguf

#: The server every test of the tier shares: as in the issue, 4 slots sharing 4,096 tokens of
#: context, one thread.
SLOTS, CTX, THREADS = 4, 4096, 1


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default :class:`TinyLlama` (seed 0), written once per session."""
    pytest.importorskip("gguf", reason="needs gguf: pip install 'burstlab[llamacpp]'")
    return write_tiny_gguf(tmp_path_factory.mktemp("llamacpp") / "tiny.gguf", TinyLlama(seed=0))


@pytest.fixture(scope="session")
def llama_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the shared server writes its output (read it when a test fails)."""
    return tmp_path_factory.mktemp("llamacpp-log") / "server.log"


@pytest.fixture(scope="session")
def llama_url(tiny_gguf: Path, llama_log: Path) -> Iterator[str]:
    """Base URL of one llama-server on ``tiny_gguf`` shared by the session's tests."""
    with llama_server(tiny_gguf, slots=SLOTS, ctx=CTX, threads=THREADS, log=llama_log) as url:
        yield url
