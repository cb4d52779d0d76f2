"""``burstlab generate`` end to end: workload file, fidelity report, exports, bad options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from burstlab import read_trace
from burstlab.workload.prompts import count_fallback_tokens

BIN = Path(sys.executable).parent / "burstlab"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_busiest_window_at_exact_rate(tmp_path: Path) -> None:
    target = tmp_path / "w.parquet"
    out = run("generate", "sample", "--busiest", "10m", "--rps", "20", "-o", str(target))
    assert out.returncode == 0, out.stderr
    assert "fidelity" in out.stdout
    table, _ = read_trace(target)
    arrival = table["arrival_s"].to_numpy()
    assert arrival.size / (arrival[-1] - arrival[0]) == pytest.approx(20, rel=0.005)
    report = json.loads((tmp_path / "w.parquet.fidelity.json").read_text())
    assert report["cv"]["workload"] == pytest.approx(report["cv"]["source"], rel=0.01)
    assert report["mean_rps"]["workload"] == pytest.approx(20, rel=0.005)


@pytest.mark.parametrize(("to", "fmt"), [("burstgpt", "burstgpt"), ("mooncake", "mooncake")])
def test_foreign_exports(tmp_path: Path, to: str, fmt: str) -> None:
    target = tmp_path / f"w.{to}"
    out = run(
        "generate",
        "sample",
        "--start",
        "5m",
        "--end",
        "10m",
        "--speedup",
        "2",
        "--to",
        to,
        "-o",
        str(target),
    )
    assert out.returncode == 0, out.stderr
    table, report = read_trace(target)
    assert report.format == fmt
    assert table["arrival_s"].max() == pytest.approx(150, abs=1)  # type: ignore[arg-type]


def test_vllm_exports(tmp_path: Path, data_dir: Path) -> None:
    timed = tmp_path / "timed.jsonl"
    source = str(data_dir / "mooncake_head.jsonl")
    out = run("generate", source, "--to", "vllm-timed", "-o", str(timed))
    assert out.returncode == 0, out.stderr
    back, _ = read_trace(timed, format="mooncake")
    trace, _ = read_trace(source)
    assert back["hash_ids"].equals(trace["hash_ids"])  # Mooncake's own prefix blocks survive
    assert back["input_tokens"].equals(trace["input_tokens"])

    custom = tmp_path / "custom.jsonl"
    source = str(data_dir / "burstgpt_v3.csv")
    out = run("generate", source, "--to", "vllm-custom", "-o", str(custom))
    assert out.returncode == 0, out.stderr
    trace, _ = read_trace(source)
    rows = [json.loads(line) for line in custom.read_text().splitlines()]
    assert [count_fallback_tokens(r["prompt"]) for r in rows] == trace["input_tokens"].to_list()
    assert [r["output_tokens"] for r in rows] == trace["output_tokens"].clip(1).to_list()

    for args, message in [
        (["--to", "vllm-custom", "-o", str(tmp_path / "c.json")], "only files named *.jsonl"),
        (["--to", "mooncake", "--tokenizer", "x", "-o", str(custom)], "--tokenizer applies only"),
        (["--to", "vllm-custom", "--tokenizer", str(tmp_path), "-o", str(custom)], "no tokenizer"),
    ]:
        out = run("generate", source, *args)
        assert out.returncode == 2, args
        assert message in out.stderr
        assert "Traceback" not in out.stderr


def test_bad_generate_options(tmp_path: Path) -> None:
    for args, message in [
        (["--rps", "0"], "--rps: Input should be greater than 0"),
        (["--rps", "2", "--speedup", "3"], "give --rps or --speedup"),
        (["--day", "1", "--busiest", "5m"], "give one of"),
        (["--start", "9d"], "select 0 requests"),
        (["--to", "excel"], "not a known format"),
    ]:
        out = run("generate", "sample", "-o", str(tmp_path / "x.csv"), *args)
        assert out.returncode == 2, args
        assert message in out.stderr
        assert "Traceback" not in out.stderr


def test_fit_then_generate_from_the_model(tmp_path: Path) -> None:
    model = tmp_path / "model.json"
    out = run("fit", "sample", "-o", str(model), "--window", "10m")
    assert out.returncode == 0, out.stderr
    assert "fitted 6 windows" in out.stdout
    work = tmp_path / "w.jsonl"
    out = run(
        "generate", str(model), "--duration", "30m", "--rps", "12", "--seed", "3", "-o", str(work)
    )
    assert out.returncode == 0, out.stderr
    table, _ = read_trace(work)
    assert table.height / 1800 == pytest.approx(12, rel=0.1)
    report = json.loads((tmp_path / "w.jsonl.fidelity.json").read_text())
    assert report["ks_input_tokens"] < 0.05
    again = tmp_path / "again.jsonl"
    out = run(
        "generate", "--model", str(model), "--duration", "30m", "--rps", "12", "--seed", "3",
        "-o", str(again),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert again.read_bytes() == work.read_bytes()  # seeded: same output, either spelling
    out = run("generate", "--model", "GPT-4", "-o", str(again))
    assert out.returncode == 2
    assert "give a TRACE" in out.stderr


def test_model_options_are_checked(tmp_path: Path) -> None:
    model = tmp_path / "model.json"
    run("fit", "sample", "-o", str(model))
    out = run("generate", str(model), "--busiest", "5m", "-o", str(tmp_path / "x.csv"))
    assert out.returncode == 2
    assert "--busiest: only for a trace" in out.stderr
    out = run("generate", "sample", "--duration", "1h", "-o", str(tmp_path / "x.csv"))
    assert out.returncode == 2
    assert "apply to a fitted model" in out.stderr
    for args, message in [
        (["--burstiness", "0"], "--burstiness must be positive"),
        (["--duration", "0"], "--duration must be positive"),
        (["--length-cap", "-3"], "--length-cap must be positive"),
    ]:
        out = run("generate", str(model), *args, "-o", str(tmp_path / "x.csv"))
        assert out.returncode == 2, args
        assert message in out.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"kind": "workload-model", "version": 1, "source": "x"}')
    out = run("generate", str(broken), "-o", str(tmp_path / "x.csv"))
    assert out.returncode == 2
    assert "field window_s: Field required" in out.stderr


def test_history_grows_session_inputs(tmp_path: Path, data_dir: Path) -> None:
    plain, grown = tmp_path / "plain.parquet", tmp_path / "grown.parquet"
    trace = str(data_dir / "burstgpt_v3.csv")
    assert run("generate", trace, "-o", str(plain)).returncode == 0
    out = run("generate", trace, "--history", "-o", str(grown))
    assert out.returncode == 0, out.stderr
    assert "in 2 sessions" in out.stdout
    a, _ = read_trace(plain)
    b, _ = read_trace(grown)
    # session 1722ac82: turns of 906, 1400, 1600 request tokens with 446 and 120 response
    assert b.filter(a["session_id"].str.starts_with("1722").fill_null(False))[
        "input_tokens"
    ].to_list() == [906, 1400 + 906 + 446, 1600 + 906 + 446 + 1400 + 120]
    assert b.filter(a["session_id"].is_null())["input_tokens"].equals(
        a.filter(a["session_id"].is_null())["input_tokens"]
    )
