"""``burstlab serve --tokenizer`` and ``--output-lengths`` as a real process: exact counts with a
peer's tokenizer, stated in /v1/models, and bad options as one clear line with exit 2."""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cli import BIN
from support.tiny_tokenizer import write_tiny_tokenizer

tokenizers = pytest.importorskip("tokenizers")

READY = re.compile(r"serving (\S+) at (http://127\.0\.0\.1:\d+) \(.*\)")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), "serve", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def tokenizer_file(tmp_path: Path) -> Path:
    return write_tiny_tokenizer(tmp_path / "tokenizer.json")


@pytest.fixture
def served(tokenizer_file: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [str(BIN), "serve", "--port", "0", "--time-scale", "20", "--model", "tiny",
         "--tokenizer", str(tokenizer_file), "--output-lengths", "lognormal:10,4", "--seed", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        match = READY.fullmatch(line.strip())
        assert match is not None, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield match.group(2)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_serve_counts_with_the_tokenizer(served: str, tokenizer_file: Path) -> None:
    from tokenizers import Tokenizer

    peer = Tokenizer.from_file(str(tokenizer_file))
    prompt = "bursty serving engines stream tokens quickly"
    got = post(served + "/v1/completions", {"model": "tiny", "prompt": prompt, "max_tokens": 2})
    assert got["usage"]["prompt_tokens"] == len(peer.encode(prompt).ids)
    assert post(served + "/tokenize", {"prompt": prompt})["tokens"] == peer.encode(prompt).ids
    with urllib.request.urlopen(served + "/v1/models", timeout=30) as resp:
        card = json.loads(resp.read())["data"][0]
    assert card["token_count"].startswith("tokenizer: tokenizer.json")
    assert card["output_lengths"] == "lognormal:10,4"
    chat = post(served + "/v1/chat/completions",
                {"messages": [{"role": "user", "content": prompt}]})  # fmt: skip
    assert chat["usage"]["prompt_tokens"] == len(peer.encode(prompt, add_special_tokens=False).ids)
    assert chat["choices"][0]["finish_reason"] == "stop"
    assert chat["usage"]["completion_tokens"] >= 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--tokenizer", "/nonexistent/tokenizer.json"], "--tokenizer: no such file"),
        (["--output-lengths", "gamma:1,2"], "--output-lengths: unknown distribution"),
        (["--output-lengths", "eos:2"], "--output-lengths: 'eos:2': P must be in (0, 1]"),
        (["--fixed", "ttft=0.01,itl=0.01,eos=4", "--output-lengths", "8"], "not both"),
    ],
)
def test_bad_options_are_one_line(args: list[str], says: str) -> None:
    out = run("--port", "0", *args)
    assert out.returncode == 2
    assert says in out.stderr
    assert "Traceback" not in out.stderr


def test_a_file_that_is_no_tokenizer(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{}")
    out = run("--port", "0", "--tokenizer", str(bad))
    assert out.returncode == 2
    assert "is not a tokenizer.json" in out.stderr
    assert "Traceback" not in out.stderr
