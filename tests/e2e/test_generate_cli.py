"""``burstlab generate`` end to end: workload file, fidelity report, exports, bad options."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from burstlab import read_trace
from burstlab.workload.prompts import count_fallback_tokens
from support.cli import BIN

pytestmark = pytest.mark.slow


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
    # judged in trace time: the replay's own rate is 20, the source's rate is kept
    assert report["mean_rps"]["workload"] == pytest.approx(report["mean_rps"]["source"], rel=0.005)
    assert report["verdict"].startswith("faithful")


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


@pytest.mark.extra("tokenizers")  # vllm-custom with a --tokenizer folder
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
        (
            ["--to", "mooncake", "--tokenizer", "x", "-o", str(custom), "--force"],
            "--tokenizer applies only",
        ),
        (
            ["--to", "vllm-custom", "--tokenizer", str(tmp_path), "-o", str(custom), "--force"],
            "no tokenizer",
        ),
    ]:
        out = run("generate", source, *args)
        assert out.returncode == 2, args
        assert message in out.stderr
        assert "Traceback" not in out.stderr


def test_exports_say_failed_rows_ask_for_one_token(tmp_path: Path, data_dir: Path) -> None:
    source = str(data_dir / "burstgpt_v3.csv")  # one failed request (0 response tokens)
    said = "1 failed requests (0 output tokens) are written as requests for 1 token"
    for to, name in (("guidellm", "g.jsonl"), ("mooncake", "m.jsonl"), ("burstgpt", "b.csv")):
        out = run("generate", source, "--to", to, "-o", str(tmp_path / name))
        assert out.returncode == 0, out.stderr
        assert said in out.stdout
    rows = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert [r["failed"] for r in rows].count(True) == 1
    assert min(r["output_tokens_count"] for r in rows) == 1
    native = run("generate", source, "-o", str(tmp_path / "w.parquet"))
    assert native.returncode == 0, native.stderr
    assert said not in native.stdout  # burstlab's own table keeps the 0 and the flag


def test_bad_generate_options(tmp_path: Path) -> None:
    for args, message in [
        (["--rps", "0"], "--rps: Input should be greater than 0"),
        (["--rps", "2", "--speedup", "3"], "give --rps or --speedup"),
        (["--day", "1", "--busiest", "5m"], "give one of"),
        (["--start", "9d"], "select 0 requests"),
        (["--to", "excel"], "--to: 'excel' is not one of 'burstgpt'"),
    ]:
        out = run("generate", "sample", "-o", str(tmp_path / "x.csv"), *args)
        assert out.returncode == 2, args
        assert message in out.stderr
        assert "Traceback" not in out.stderr


def test_fit_then_generate_from_the_model(tmp_path: Path) -> None:
    model = tmp_path / "model.json"
    out = run("fit", "sample", "-o", str(model), "--window", "10m")
    assert out.returncode == 0, out.stderr
    assert "multiscale arrivals" in out.stdout
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
    broken.write_text('{"kind": "workload-model", "version": 2, "source": "x"}')
    out = run("generate", str(broken), "-o", str(tmp_path / "x.csv"))
    assert out.returncode == 2
    assert "field duration_s: Field required" in out.stderr


def test_fit_holdout_compares_both_arrival_models(tmp_path: Path) -> None:
    model = tmp_path / "model.json"
    out = run("fit", "sample", "-o", str(model), "--holdout", "0.5", "--paths", "2")
    assert out.returncode == 0, out.stderr
    assert "held out: the last 50%" in out.stdout
    assert "multiscale" in out.stdout
    assert "window-gamma" in out.stdout
    page = (tmp_path / "model.json.holdout.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 2
    assert "<script" not in page
    assert "Out-of-sample fidelity" in page
    report = json.loads((tmp_path / "model.json.holdout.json").read_text())
    assert set(report["curves"]) == {"held out", "fitted part", "multiscale", "window-gamma"}
    assert len(report["curves"]["held out"]) == len(report["curve_widths_s"])
    assert set(report["models"]) == {"multiscale", "window-gamma"}
    assert report["held_out_requests"] + report["fit_requests"] == 19_366
    for side in report["models"].values():
        assert set(side["idc"]) == {"1s", "10s", "60s", "600s"}
        assert side["idc"]["600s"]["workload"] is None  # 3 bins of 600 s in half an hour
        assert "complete bins" in side["idc"]["600s"]["note"]
        assert side["ks_gaps"]["workload"] is not None
        assert side["verdict"].split(":")[0] in {"faithful", "not faithful"}
    work = tmp_path / "w.parquet"
    for arrivals in ("window-gamma", "multiscale"):
        out = run(
            "generate", str(model), "--arrivals", arrivals, "--duration", "10m", "-o", str(work)
        )
        assert out.returncode == 0, out.stderr
        assert f"arrivals: {arrivals}" in out.stdout
        work.unlink()
    for value in ("0", "1", "nan", "-0.5"):
        out = run("fit", "sample", "-o", str(model), "--holdout", value)
        assert out.returncode == 2, value
        assert "--holdout must lie between 0 and 1" in out.stderr


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


def test_parametric_gamma_zipf(tmp_path: Path) -> None:
    """BurstGPT-Perf's modelled mode: Gamma gaps and Zipf lengths from parameters alone."""
    target = tmp_path / "w.parquet"
    args = ("generate", "--gamma", "0.5,2", "--zipf", "1.1", "--duration", "1h", "--seed", "3")
    out = run(*args, "-o", str(target))
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("wrote ")
    assert "requests over 3600 s" in line
    assert "Gamma shape 0.5, scale 2 s; Zipf 1.1 lengths 1-1023; seed 3" in line
    assert line.endswith(f"to {target}")
    table, report = read_trace(target)
    assert report.format == "burstlab"
    assert f"wrote {table.height:,} requests" in line
    assert table.height == pytest.approx(3600, rel=0.1)
    assert table["arrival_s"].max() < 3600
    assert table["input_tokens"].min() >= 1
    assert table["input_tokens"].max() <= 1023
    again = tmp_path / "again.parquet"
    assert run(*args, "-o", str(again)).returncode == 0
    assert read_trace(again)[0].equals(table)


def test_parametric_defaults_rps_and_cap(tmp_path: Path) -> None:
    target = tmp_path / "w.csv"
    out = run(
        "generate", "--zipf", "1.3", "--duration", "10m", "--rps", "8", "--length-cap", "64",
        "-o", str(target),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Gamma shape 0.5, scale 0.25 s" in out.stdout  # default shape, scale for 8 req/s
    assert "Zipf 1.3 lengths 1-64" in out.stdout
    table, _ = read_trace(target)
    assert table.height / 600 == pytest.approx(8, rel=0.15)
    assert table["output_tokens"].max() <= 64
    only_gamma = run(
        "generate", "--gamma", "2,0.5", "--duration", "1m", "-o", str(target), "--force"
    )
    assert only_gamma.returncode == 0, only_gamma.stderr
    assert "Gamma shape 2, scale 0.5 s; Zipf 1.1 lengths" in only_gamma.stdout
    export = run(
        "generate", "--gamma", "1,1", "--duration", "2m", "--to", "burstgpt",
        "-o", str(tmp_path / "b.csv"),
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    assert read_trace(tmp_path / "b.csv")[1].format == "burstgpt"


def test_parametric_windows_from_a_fitted_model(tmp_path: Path, data_dir: Path) -> None:
    model = tmp_path / "model.json"
    fitted = run("fit", str(data_dir / "mooncake_head.jsonl"), "--window", "20", "-o", str(model))
    assert fitted.returncode == 0, fitted.stderr
    target = tmp_path / "w.parquet"
    real = run("generate", "--windows", str(model), "-o", str(target))
    assert real.returncode == 0, real.stderr
    found = re.search(
        rf"over (\d+) s \(.*; (\d+) windows of 20 s from {re.escape(str(model))};", real.stdout
    )
    assert found, real.stdout
    windows = range(int(found.group(2)))
    assert int(found.group(1)) == 20 * len(windows) > 0  # the table once, at its real length
    paced = run(
        "generate", "--windows", str(model), "--pace", "5", "--duration", "60", "--rps", "4",
        "--zipf", "1.2", "-o", str(target), "--force",
    )  # fmt: skip
    assert paced.returncode == 0, paced.stderr
    assert f"{len(windows)} windows of 20 s from {model} at 5 s each, repeated" in paced.stdout
    assert "over 60 s" in paced.stdout
    table, _ = read_trace(target)
    assert table["arrival_s"].max() < 60
    assert table.height == pytest.approx(240, rel=0.4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--gamma", "0.5", "--duration", "1h"), "--gamma '0.5' is not SHAPE,SCALE"),
        (("--gamma", "0.5,x", "--duration", "1h"), "is not SHAPE,SCALE"),
        (("--gamma", "0,2", "--duration", "1h"), "--gamma shape must be a positive"),
        (("--gamma", "0.5,-2", "--duration", "1h"), "--gamma scale must be a positive"),
        (("--gamma", "nan,2", "--duration", "1h"), "--gamma shape must be a positive"),
        (("--zipf", "0", "--duration", "1h"), "--zipf must be a positive"),
        (("--zipf", "nan", "--duration", "1h"), "--zipf must be a positive"),
        (
            (
                "--zipf",
                "1.1",
            ),
            "--duration is needed",
        ),
        (("--zipf", "1.1", "--duration", "0"), "--duration must be a positive"),
        (("--zipf", "1.1", "--duration", "soon"), "--duration 'soon' is not a duration"),
        (("--zipf", "1.1", "--duration", "1h", "--rps", "0"), "--rps must be a positive"),
        (("--zipf", "1.1", "--duration", "1h", "--rps", "nan"), "--rps must be a positive"),
        (("--zipf", "1.1", "--duration", "1h", "--length-cap", "0"), "--length-cap"),
        (("--zipf", "1.1", "--duration", "100d", "--rps", "1000"), "at most 50,000,000"),
        (("--gamma", "1,1", "--duration", "1h", "--pace", "60"), "--pace steps through"),
        (("sample", "--gamma", "1,1", "--duration", "1h"), "TRACE: not with --gamma"),
        (("--zipf", "1.1", "--duration", "1h", "--busiest", "10m"), "--busiest: not with"),
        (("--zipf", "1.1", "--duration", "1h", "--speedup", "2"), "--speedup: not with"),
        (("--zipf", "1.1", "--duration", "1h", "--synthetic"), "--synthetic: not with"),
        (("--windows", "nope.json"), "not a model.json written by 'burstlab fit'"),
    ],
)
def test_parametric_bad_options(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    out = run("generate", *args, "-o", str(tmp_path / "w.parquet"))
    assert out.returncode == 2, out.stdout
    assert out.stderr.startswith("error: ")
    assert message in out.stderr.splitlines()[0]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "w.parquet").exists()


def test_parametric_bad_window_options(tmp_path: Path) -> None:
    model = tmp_path / "model.json"
    assert run("fit", "sample", "-o", str(model)).returncode == 0
    for args, message in (
        (("--pace", "0"), "--pace must be a positive"),
        (("--pace", "-5"), "--pace '-5' is not a duration"),
        (("--gamma", "1,1"), "--gamma and --windows cannot be combined"),
        (("--duration", "0"), "--duration must be a positive"),
    ):
        out = run("generate", "--windows", str(model), *args, "-o", str(tmp_path / "w.parquet"))
        assert out.returncode == 2, (args, out.stdout)
        assert message in out.stderr, (args, out.stderr)
    trace = run("generate", "--windows", str(tmp_path / "w.csv"), "-o", str(tmp_path / "x.parquet"))
    assert trace.returncode == 2


def test_degenerate_traces_give_a_model_or_one_error_line(tmp_path: Path) -> None:
    head = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    same = tmp_path / "same.csv"
    same.write_text(head + "100,ChatGPT,10,10,20,API log\n" * 5)
    out = run("fit", str(same), "-o", str(tmp_path / "m.json"))
    assert out.returncode == 2
    assert "spread over time" in out.stderr
    assert "Traceback" not in out.stderr
    few = tmp_path / "few.csv"
    rows = "".join(f"{t},ChatGPT,10,10,20,API log\n" for t in (0, 0, 1, 1, 1, 2, 3, 3, 5, 5, 6, 9))
    few.write_text(head + rows)
    out = run("fit", str(few), "-o", str(tmp_path / "few.json"), "--holdout", "0.5", "--paths", "2")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "few.json.holdout.html").exists()
