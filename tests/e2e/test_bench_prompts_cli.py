"""``burstlab bench --prompts POOL [--pool-size N]`` from the command line: real prompts
sent, lengths agreeing with the server's count, what it prints, and bad pools or
options as one error line with no run directory left behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from burstlab.results.records import load_records
from burstlab.server.app import make_app
from burstlab.server.fixed import FixedTiming
from burstlab.server.hosting import serve_in_thread
from burstlab.server.llamacpp import hf_tokenizer_json
from burstlab.server.tokens import FileTokenizer
from burstlab.trace.io import write_table
from burstlab.workload.pools import read_pool
from support.frames import workload
from support.inproc import invoke

pytest.importorskip("tokenizers")

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    path.write_text(json.dumps(hf_tokenizer_json()))
    return path


@pytest.fixture(scope="module")
def url(tokenizer_file: Path) -> Iterator[str]:
    app = make_app(FixedTiming(ttft=0.001, itl=0.0005), counter=FileTokenizer(tokenizer_file))
    with serve_in_thread(app) as served:
        yield served


@pytest.fixture
def workload_file(tmp_path: Path) -> Path:
    table = workload([0.01 * i for i in range(8)]).with_columns(
        pl.Series("input_tokens", [2, 10, 50, 100, 300, 1000, 3000, 9000], dtype=pl.Int32)
    )
    path = tmp_path / "w.parquet"
    write_table(table, path)
    return path


@pytest.mark.parametrize("pool", ["sharegpt_small.json", "sharegpt_small.jsonl"])
def test_bench_sends_pool_prompts(
    capsys: pytest.CaptureFixture[str],
    url: str,
    tokenizer_file: Path,
    workload_file: Path,
    tmp_path: Path,
    pool: str,
) -> None:
    out = tmp_path / "run"
    result = invoke(
        capsys, "bench", workload_file, "--url", url, "-o", out, "--api", "chat",
        "--prompts", DATA / pool, "--pool-size", "30", "--seed", "2",
        "--tokenizer", tokenizer_file, "-q", "--no-report",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "prompts: 30 of " in result.stdout
    assert f"from {pool}" in result.stdout
    assert "counted by tokenizer.json" in result.stdout
    assert "input tokens: " in result.stdout
    table = load_records(out)
    assert table.height == 8
    assert (table["input_tokens_achieved"] == table["input_tokens"]).all()
    assert sorted(table["input_tokens_workload"].to_list()) == [
        2,
        10,
        50,
        100,
        300,
        1000,
        3000,
        9000,
    ]
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["prompts"] == str(DATA / pool)
    assert run["config"]["pool_size"] == 30


def test_sent_prompts_are_the_pools_texts(url: str, tokenizer_file: Path, tmp_path: Path) -> None:
    """What the server received is pool text, verbatim (its log of request bodies is not
    kept, so ask /tokenize for the count of each pool text and compare lengths)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    counts = {
        len(tok.encode(t, add_special_tokens=False).ids)
        for t in read_pool(DATA / "sharegpt_small.jsonl").texts
    }
    from burstlab.bench.run import BenchConfig, bench

    config = BenchConfig(
        url=url, prompts=str(DATA / "sharegpt_small.jsonl"), tokenizer=str(tokenizer_file)
    )
    bench(workload([0.0, 0.01, 0.02], input_tokens=77), config, tmp_path / "run")
    table = load_records(tmp_path / "run")
    assert {n - 1 for n in table["input_tokens"].to_list()} <= counts  # minus the BOS


BAD = {
    "not JSON": ('[{"id": 1, "conversations": [}]', "bad.json", "bad.json:1:"),
    "a bad JSONL line": (
        '{"prompt": "fine"}\n{"prompt": "also fine"}\n{"prompt": oops}\n',
        "bad.jsonl",
        "bad.jsonl:3:",
    ),
    "a record without prompts": (
        '[{"id": "a", "turns": []}]',
        "bad.json",
        "record 0: no 'conversations'",
    ),
    "a value that is no string": (
        '[{"conversations": [{"from": "human", "value": 3}]}]',
        "bad.json",
        "record 0: conversations[0].value must be a string",
    ),
    "no prompt at all": (
        '[{"conversations": [{"from": "gpt", "value": "hi"}]}]',
        "bad.json",
        "no prompt in 1 records",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_pool_is_one_error_line(
    capsys: pytest.CaptureFixture[str], url: str, workload_file: Path, tmp_path: Path, case: str
) -> None:
    text, name, says = BAD[case]
    pool = tmp_path / name
    pool.write_text(text)
    out = tmp_path / "run"
    result = invoke(
        capsys, "bench", workload_file, "--url", url, "-o", out, "--prompts", pool, "-q"
    )
    assert result.is_clean_error(says), result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--pool-size", "5"], "--pool-size: needs --prompts"),
        (["--prompts", str(DATA / "sharegpt_small.json"), "--pool-size", "0"], "--pool-size"),
        (["--prompts", str(DATA / "sharegpt_small.json"), "--prompt", "ids"], "--prompts"),
        (["--prompts", "/no/such/pool.json"], "/no/such/pool.json: no such file"),
    ],
)
def test_bad_pool_options(
    capsys: pytest.CaptureFixture[str],
    url: str,
    workload_file: Path,
    tmp_path: Path,
    options: list[str],
    says: str,
) -> None:
    out = tmp_path / "run"
    result = invoke(capsys, "bench", workload_file, "--url", url, "-o", out, "-q", *options)
    assert result.is_clean_error(says), result.stderr
    assert not out.exists()
