"""What ``bench`` checks before a run directory exists, and what it keeps out of files:
the URL, headers, API-key conflicts, the tokenizer, redaction of the command line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from burstlab.bench.config import (
    BenchConfig,
    check_header,
    check_url,
    prepare,
    redact_argv,
    redact_text,
)
from burstlab.bench.run import bench
from burstlab.core.errors import BurstlabError, InputError
from support.frames import constant_rate


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:99999", "port"),
        ("http://127.0.0.1:0", "port"),
        ("http://127.0.0.1:x", "port"),
        ("ftp://127.0.0.1", "http"),
        ("127.0.0.1:8000", "http"),
        ("http://", "host"),
        ("http://127.0.0.1:8000/v1?x=1", "query"),
        ("http://127.0.0.1 :8000", "space"),
        ("http://u:hunter22@127.0.0.1:99999", "port"),
    ],
)
def test_odd_urls_are_refused_without_repeating_credentials(url: str, says: str) -> None:
    with pytest.raises(InputError, match=says) as info:
        check_url(url)
    assert "--url" in str(info.value)
    assert "hunter22" not in str(info.value)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "https://h.example/base/", "http://[::1]:8000", "http://h"]
)
def test_plain_urls_pass(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-A", "a\r\nB: c"), ("X-A", "a\nb"), ("X-A", "a\x00"), ("X A", "v"), ("", "v")],
)
def test_header_injection_is_refused(name: str, value: str) -> None:
    with pytest.raises(InputError, match="--header"):
        check_header(name, value)
    with pytest.raises(InputError, match="--header"):
        BenchConfig.from_options(url="http://h", headers={name: value})


def test_the_api_key_and_an_authorization_header_name_both_sources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_KEY", "sk-canary-1")
    config = BenchConfig(
        url="http://h", model="m", api_key_env="MY_KEY", headers={"authorization": "Bearer x"}
    )
    with pytest.raises(InputError, match=r"\$MY_KEY and --header authorization"):
        prepare(config)


def test_the_api_key_and_url_credentials_name_both_sources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-2")
    with pytest.raises(InputError, match=r"\$OPENAI_API_KEY and the credentials in --url"):
        prepare(BenchConfig(url="http://u:p@h", model="m"))


def test_url_credentials_and_an_authorization_header_conflict() -> None:
    config = BenchConfig(url="http://u:p@h", model="m", headers={"Authorization": "Basic x"})
    with pytest.raises(InputError, match="--header Authorization and the credentials"):
        prepare(config)


def test_the_api_key_is_sent_as_a_bearer_token_and_kept_as_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-3")
    ready = prepare(BenchConfig(url="http://h", model="m", headers={"X-T": "tok-canary"}))
    assert ready.headers["Authorization"] == "Bearer sk-canary-3"
    assert set(ready.secrets) == {"sk-canary-3", "tok-canary"}


def test_the_command_line_is_saved_with_every_header_value_and_key_hidden() -> None:
    argv = [
        "burstlab",
        "bench",
        "w.parquet",
        "--header",
        "Authorization: Bearer SECRET-1",
        "--header=X-Other: v2",
        "--url",
        "http://user:pw-secret@127.0.0.1:8000",
        "--model",
        "sk-canary-4x",
    ]
    saved = redact_argv(argv, ("sk-canary-4x",))
    text = " ".join(saved)
    for secret in ("SECRET-1", "v2", "pw-secret", "user:", "sk-canary-4x"):
        assert secret not in text
    assert "Authorization: <redacted>" in saved
    assert "--header=X-Other: <redacted>" in saved
    assert "http://<redacted>@127.0.0.1:8000" in saved
    assert redact_text("a sk-canary-4x b", ["sk-canary-4x"]) == "a <redacted> b"


@pytest.mark.parametrize(
    "config",
    [
        BenchConfig(url="http://127.0.0.1:99999", model="m"),
        BenchConfig(url="http://127.0.0.1:1", tokenizer="/no/such/tokenizer.json"),
        BenchConfig(url="ftp://x", model="m"),
        BenchConfig(url="http://h", model="m", prompt="ids", api="chat"),
    ],
    ids=["port", "tokenizer", "scheme", "ids-on-chat"],
)
def test_bad_input_leaves_no_run_directory(config: BenchConfig, tmp_path: Path) -> None:
    with pytest.raises(InputError):
        bench(constant_rate(3, 10.0), config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_unreachable_server_leaves_an_empty_directory_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    config = BenchConfig(url=f"http://127.0.0.1:{closed_port()}", connect_timeout_s=2.0)
    with pytest.raises(BurstlabError, match="cannot reach"):
        bench(constant_rate(3, 10.0), config, tmp_path / "run")
    assert list((tmp_path / "run").iterdir()) == []
