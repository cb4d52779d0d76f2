"""``burstlab bench`` on bad input (issue 14, items 2, 9 and 10): one ``error:`` line,
exit 2, no traceback, and no run directory left behind (an existing one as it was)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from burstlab.trace.io import write_table
from support.frames import constant_rate
from support.inproc import invoke


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: name: (options replacing or added to the base command, environment, what the error names)
CASES: dict[str, tuple[list[str], dict[str, str], str]] = {
    "timeout -1": (["--timeout", "-1"], {}, "--timeout"),
    "timeout 0": (["--timeout", "0"], {}, "--timeout"),
    "timeout inf": (["--timeout", "inf"], {}, "--timeout"),
    "idle-timeout nan": (["--idle-timeout", "nan"], {}, "--idle-timeout"),
    "max-concurrency 0": (["--max-concurrency", "0"], {}, "--max-concurrency"),
    "max-concurrency -3": (["--max-concurrency", "-3"], {}, "--max-concurrency"),
    "workers 0": (["--workers", "0"], {}, "--workers"),
    "max-lag -1": (["--max-lag", "-1"], {}, "--max-lag"),
    "grace -1": (["--grace", "-1"], {}, "--grace"),
    "grace nan": (["--grace", "nan"], {}, "--grace"),
    "seed -1": (["--seed", "-1"], {}, "--seed"),
    "port 99999": (["--url", "http://127.0.0.1:99999"], {}, "--url"),
    "unclosed IPv6 bracket": (["--url", "http://[::1"], {}, "--url"),
    "port 0": (["--url", "http://127.0.0.1:0"], {}, "--url"),
    "not http": (["--url", "ftp://127.0.0.1"], {}, "--url"),
    "no host": (["--url", "http://"], {}, "--url"),
    "CR LF in a header": (["--header", "X-A: a\r\nX-B: c"], {}, "--header"),
    "LF in a header": (["--header", "X-A: a\nb"], {}, "--header"),
    "bad header name": (["--header", "X A: v"], {}, "--header"),
    "header without a colon": (["--header", "X-A v"], {}, "--header"),
    "URL credentials and the API key": (
        ["--url", "http://user:pw@127.0.0.1:1"],
        {"OPENAI_API_KEY": "sk-canary-a1"},
        "$OPENAI_API_KEY",
    ),
    "an Authorization header and the API key": (
        ["--header", "Authorization: Bearer tok-canary-b2"],
        {"OPENAI_API_KEY": "sk-canary-a1"},
        "--header Authorization",
    ),
    "an Authorization header and another key variable": (
        ["--header", "Authorization: Bearer tok-canary-b2", "--api-key-env", "MY_KEY"],
        {"MY_KEY": "sk-canary-a1"},
        "$MY_KEY",
    ),
    "a tokenizer that does not load": (
        ["--tokenizer", "/no/such/tokenizer.json", "--prompt", "text"],
        {},
        "--tokenizer",
    ),
    "token ids on chat": (["--api", "chat", "--prompt", "ids"], {}, "--prompt"),
}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_table(constant_rate(2, 10.0, 2), tmp_path / "w.parquet")


def base(tiny: Path, run: Path) -> list[str]:
    # --model: nothing asks the server, so a check that is missing shows as a run
    return ["bench", str(tiny), "--url", "http://127.0.0.1:1", "-o", str(run), "-q", "--model", "m"]


def with_options(args: list[str], extra: list[str]) -> list[str]:
    """``args`` with ``extra``'s options, replacing the same option given in ``args``."""
    out = list(args)
    for i in range(0, len(extra), 2):
        if extra[i] in out and extra[i] != "--header":
            out[out.index(extra[i]) + 1] = extra[i + 1]
        else:
            out += extra[i : i + 2]
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clean_error_and_leaves_no_run_directory(
    name: str,
    tiny: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options, env, names = CASES[name]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    run = tmp_path / "run"
    result = invoke(capsys, *with_options(base(tiny, run), options))
    assert result.is_clean_error(names), result
    assert not run.exists()
    for secret in ("sk-canary-a1", "tok-canary-b2", "pw@"):
        assert secret not in result.stderr


def test_an_existing_file_as_the_run_directory(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "taken"
    target.write_text("mine")
    result = invoke(capsys, *base(tiny, target))
    assert result.is_clean_error("is a file"), result
    assert target.read_text() == "mine"


@pytest.mark.parametrize("existing", [False, True])
def test_an_unreachable_server_leaves_nothing_behind(
    existing: bool, tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    if existing:
        run.mkdir()
    url = f"http://127.0.0.1:{closed_port()}"
    result = invoke(capsys, "bench", tiny, "--url", url, "-o", run, "-q")  # asks for /v1/models
    assert result.is_clean_error("cannot reach"), result
    assert run.exists() == existing
    if existing:
        assert list(run.iterdir()) == []
