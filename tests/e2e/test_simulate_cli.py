"""``burstlab simulate`` end to end: default preset, an engine file, bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from support.cli import BIN

pytestmark = pytest.mark.slow


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_simulate_sample_with_the_default_engine(tmp_path: Path) -> None:
    work = tmp_path / "w.parquet"
    assert run("generate", "sample", "--busiest", "2m", "-o", str(work)).returncode == 0
    out = run("simulate", str(work), "-o", str(tmp_path / "run"), "--slo", "ttft=2,e2e=60")
    assert out.returncode == 0, out.stderr
    assert "simulated" in out.stdout
    assert "token times: not kept" in out.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["counts"]["ok"] == summary["counts"]["scheduled"]
    assert "goodput" in summary
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["engine"]["engine"]["num_blocks"] == 7449
    assert (tmp_path / "run" / "report.html").exists()


def test_token_times_then_report_and_analyze_read_the_run(tmp_path: Path) -> None:
    work = tmp_path / "w.parquet"
    assert run("generate", "sample", "--busiest", "1m", "-o", str(work)).returncode == 0
    out = run("simulate", str(work), "-o", str(tmp_path / "run"), "--token-times", "--no-report")
    assert out.returncode == 0, out.stderr
    assert "token times: kept" in out.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["token_times"] is True
    assert summary["metrics"]["itl_s"]["count"] > 0
    assert not (tmp_path / "run" / "records.jsonl").exists()
    assert (tmp_path / "run" / "requests.parquet").exists()
    done = run("report", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    assert "burstlab simulate report" in (tmp_path / "run" / "report.html").read_text()
    done = run("analyze", str(tmp_path / "run"), "-o", str(tmp_path / "a"), "--no-plots")
    assert done.returncode == 0, done.stderr
    analysed = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert analysed["rows"] == summary["counts"]["scheduled"]
    done = run("analyze", str(tmp_path), "-o", str(tmp_path / "b"), "--no-plots")
    assert done.returncode == 2
    assert "without a run's results" in done.stderr


def test_engine_file_and_errors(tmp_path: Path) -> None:
    work = tmp_path / "w.parquet"
    run("generate", "sample", "--busiest", "1m", "--speedup", "4", "-o", str(work))
    engine = tmp_path / "engine.yaml"
    engine.write_text(
        "gpu: H100-80G\nmodel: Llama-3-8B\nengine:\n  num_blocks: 300\n  queue_cap: 20\n"
    )
    out = run("simulate", str(work), "--engine", str(engine), "-o", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["counts"]["failed"] > 0
    assert "http_429" in summary["failures_by_kind"]
    engine.write_text("gpu: B200\n")
    out = run("simulate", str(work), "--engine", str(engine), "-o", str(tmp_path / "bad"))
    assert out.returncode == 2
    assert "B200" in out.stderr
    engine.write_text("engine:\n  scheduler: random\n")
    out = run("simulate", str(work), "--engine", str(engine), "-o", str(tmp_path / "bad2"))
    assert out.returncode == 2
    assert "scheduler" in out.stderr
    engine.write_text("gpu: [unclosed\n")
    out = run("simulate", str(work), "--engine", str(engine), "-o", str(tmp_path / "bad3"))
    assert out.returncode == 2
    assert "not valid YAML" in out.stderr


def test_experiment_scheduling(tmp_path: Path) -> None:
    work = tmp_path / "w.parquet"
    run("generate", "sample", "--busiest", "2m", "-o", str(work))
    out = run("experiment", "scheduling", str(work), "-o", str(tmp_path / "exp"))
    assert out.returncode == 0, out.stderr
    for name in ("experiment.csv", "experiment.json", "experiment.png"):
        assert (tmp_path / "exp" / name).exists()
    rows = json.loads((tmp_path / "exp" / "experiment.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["fcfs", "srf", "lrf"]
    out = run("experiment", "pd", str(work), "-o", str(tmp_path / "pd"))
    assert out.returncode == 0, out.stderr
    assert "PD 2:2" in out.stdout
    out = run("experiment", "speed", str(work), "-o", str(tmp_path / "x"))
    assert out.returncode == 2
    assert "STUDY: 'speed' is not one of" in out.stderr


def test_calibrate_a_run_then_simulate_with_it(tmp_path: Path) -> None:
    work = tmp_path / "w.parquet"
    run("generate", "sample", "--busiest", "2m", "--speedup", "0.25", "-o", str(work))
    assert run("simulate", str(work), "-o", str(tmp_path / "a"), "--no-report").returncode == 0
    out = run("calibrate", str(tmp_path / "a"), "-o", str(tmp_path / "engine.yaml"))
    assert out.returncode == 0, out.stderr
    assert "median relative error" in out.stdout
    assert "kind: linear" in (tmp_path / "engine.yaml").read_text()
    out = run(
        "simulate", str(work), "--engine", str(tmp_path / "engine.yaml"), "-o", str(tmp_path / "b")
    )
    assert out.returncode == 0, out.stderr
    a = json.loads((tmp_path / "a" / "summary.json").read_text())["metrics"]
    b = json.loads((tmp_path / "b" / "summary.json").read_text())["metrics"]
    assert abs(b["tpot_s"]["p50"] / a["tpot_s"]["p50"] - 1) < 0.2
    out = run("calibrate", str(tmp_path / "missing"), "-o", str(tmp_path / "x.yaml"))
    assert out.returncode == 2
    # a llama-server run: the engine file gets the llamacpp kind and simulates with it
    llama = tmp_path / "llama.yaml"
    out = run("calibrate", str(tmp_path / "a"), "-o", str(llama), "--slots", "4", "--ctx", "8192")
    assert out.returncode == 0, out.stderr
    assert "llamacpp:" in llama.read_text()
    out = run("simulate", str(work), "--engine", str(llama), "-o", str(tmp_path / "c"))
    assert out.returncode == 0, out.stderr
    out = run("calibrate", str(tmp_path / "a"), "-o", str(tmp_path / "y.yaml"), "--ctx", "8192")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert "--slots" in out.stderr


def test_simulate_autoscale_compares_the_plan_with_static_and_reactive(tmp_path: Path) -> None:
    work = tmp_path / "w.parquet"
    assert run("generate", "sample", "--busiest", "4m", "-o", str(work)).returncode == 0
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "start_s": 60,
                "interval_s": 60,
                "instances": [1, 2, 2],
                "startup_s": 30,
                "capacity_rps": 5.0,
                "slo": {"ttft": 2.0},
            }
        )
    )
    out = run("simulate", str(work), "--autoscale", str(plan), "-o", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    assert "the plan covers 60-240 s (3 intervals of 60 s)" in out.stderr
    for policy in ("plan", "static", "reactive"):
        assert policy in out.stdout
    scaled = json.loads((tmp_path / "run" / "autoscale.json").read_text())
    assert set(scaled["policies"]) == {"plan", "static", "reactive"}
    assert scaled["slo"] == {"ttft": 2.0, "tpot": None, "e2e": None}
    static, planned = scaled["policies"]["static"], scaled["policies"]["plan"]
    assert planned["instance_hours"] < static["instance_hours"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["counts"]["scheduled"] == scaled["requests"]
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Autoscaling" in html
    assert "autoscaled by a plan, 1-2 instances" in html
    # a plan outside the workload's span, and a broken plan, are named
    plan.write_text(json.dumps({"start_s": 1e6, "interval_s": 60, "instances": [1]}))
    out = run("simulate", str(work), "--autoscale", str(plan), "-o", str(tmp_path / "r2"))
    assert out.returncode == 2
    assert "falls in the plan's span" in out.stderr
    plan.write_text(json.dumps({"interval_s": 60, "instances": []}))
    out = run("simulate", str(work), "--autoscale", str(plan), "-o", str(tmp_path / "r3"))
    assert out.returncode == 2
    assert "instances" in out.stderr
