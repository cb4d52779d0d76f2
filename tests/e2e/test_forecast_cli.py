"""``generate --synthetic`` -> ``forecast`` -> ``plan`` -> ``simulate --autoscale`` end to end,
and what the short bundled sample can and cannot do."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import polars as pl
import pytest

from support.cli import BIN

pytestmark = pytest.mark.slow


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.extra("forecast")
def test_synthetic_trace_to_forecast_to_plan_to_autoscaled_simulation(tmp_path: Path) -> None:
    trace = tmp_path / "trace.parquet"
    out = run("generate", "--synthetic", "--duration", "3d", "--rps", "0.03", "--seed", "3",
              "-o", str(trace))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "over 3.0 days" in out.stdout
    table = pl.read_parquet(trace)
    assert 6_000 < table.height < 10_000

    fc = tmp_path / "fc"
    out = run("forecast", str(trace), "-g", "60m", "--granularities", "30m,60m",
              "--models", "xgboost,last,seasonal_day,linear", "--test-fraction", "0.1",
              "-o", str(fc))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "best at 60m" in out.stdout
    for name in ("predictions.parquet", "metrics.json", "forecast.json", "report.html"):
        assert (fc / name).is_file(), name
    metrics = json.loads((fc / "metrics.json").read_text())
    assert metrics["primary"] == "60m"
    for label in ("30m", "60m"):
        for series in ("requests", "input_mean", "output_mean", "tokens"):
            scores = metrics["granularities"][label][series]
            assert set(scores) == {"xgboost", "last", "seasonal_day", "linear"}
            assert all(v["nmae"] is not None and v["nmae"] >= 0 for v in scores.values())
    meta = json.loads((fc / "forecast.json").read_text())
    assert meta["source"] == str(trace.resolve())
    html = (fc / "report.html").read_text()
    assert "Across granularities" in html
    assert html.count("data:image/png;base64,") == 5  # the study and one per series
    (fc / "report.html").unlink()
    out = run("report", str(fc), "--no-plots")
    assert out.returncode == 0, out.stderr
    assert "Across granularities" in (fc / "report.html").read_text()

    plan = tmp_path / "plan.json"
    out = run("plan", "--forecast", str(fc), "--capacity", "0.008", "--headroom", "0.2",
              "--max", "6", "--startup", "5m", "-o", str(plan))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "instance-hours planned" in out.stdout
    schedule = json.loads(plan.read_text())
    assert schedule["interval_s"] == 3600
    assert schedule["source"]["model"] == meta["best"]["requests"]["model"]
    predicted = pl.read_parquet(fc / "predictions.parquet").filter(
        pl.col("granularity_s") == 3600,
        pl.col("series") == "requests",
        pl.col("model") == schedule["source"]["model"],
    )
    assert len(schedule["instances"]) == predicted.height
    assert max(schedule["instances"]) <= 6
    assert len(set(schedule["instances"])) > 1  # it follows the daily cycle

    # the capacity found by simulating the engine under the SLO, lengths from the trace
    engine = tmp_path / "engine.yaml"
    engine.write_text("model: Llama-2-13B\ngpu: A6000\n")
    by_engine = tmp_path / "plan-engine.json"
    out = run("plan", "--forecast", str(fc), "--engine", str(engine), "--slo", "ttft=2,tpot=0.1",
              "-o", str(by_engine))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "one instance serves" in out.stderr
    assert "lengths from" in out.stderr  # the forecast's own trace
    found = json.loads(by_engine.read_text())
    assert 0.05 < found["capacity_rps"] < 2.0
    assert found["slo"]["tpot"] == 0.1
    rate = predicted["predicted"].max() / 3600  # type: ignore[operator]
    assert max(found["instances"]) == max(1, math.ceil(rate * 1.2 / found["capacity_rps"] - 1e-9))

    out = run("simulate", str(trace), "--autoscale", str(plan), "--slo", "ttft=2,e2e=60",
              "-o", str(tmp_path / "run"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    scaled = json.loads((tmp_path / "run" / "autoscale.json").read_text())
    policies = scaled["policies"]
    assert set(policies) == {"plan", "static", "reactive"}
    assert policies["plan"]["instance_hours"] < policies["static"]["instance_hours"]
    assert policies["plan"]["slo_attainment"] >= 0.95


def test_the_short_sample_says_what_it_can_and_cannot_forecast(tmp_path: Path) -> None:
    out = run(
        "forecast", "sample", "-o", str(tmp_path / "fc"), "--models", "last,linear,seasonal_day"
    )
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "10m is not possible on this trace: the primary granularity is 1m instead" in text
    assert "not evaluated: 10m: the trace spans 58 min: 10m gives 5 intervals, at least 48" in text
    assert "seasonal_day: needs at least 2 days of data; the trace spans 58 min" in text
    metrics = json.loads((tmp_path / "fc" / "metrics.json").read_text())
    assert list(metrics["granularities"]) == ["1m"]
    # a plan from it covers the test span of the sample only
    out = run("plan", "--forecast", str(tmp_path / "fc"), "--capacity", "5", "-o",
              str(tmp_path / "plan.json"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "intervals of 60 s" in out.stdout

    out = run("forecast", "sample", "-g", "10m", "--granularities", "10m,1h", "-o",
              str(tmp_path / "no"))  # fmt: skip
    assert out.returncode == 2
    assert "the trace spans 58 min, too short to forecast" in out.stderr
    assert "generate --synthetic" in out.stderr
    assert not (tmp_path / "no").exists()


def test_bad_options_are_named(tmp_path: Path) -> None:
    out = run("forecast", "sample", "-g", "soon", "-o", str(tmp_path / "a"))
    assert out.returncode == 2
    assert "--granularity 'soon' is not a duration" in out.stderr
    out = run("forecast", "sample", "--models", "xgboost,prophet", "-o", str(tmp_path / "b"))
    assert out.returncode == 2
    assert "unknown model prophet" in out.stderr
    out = run("forecast", "sample", "--horizon", "0", "-o", str(tmp_path / "c"))
    assert out.returncode == 2
    assert "horizon" in out.stderr
    out = run("plan", "--forecast", str(tmp_path / "missing"), "--capacity", "1", "-o",
              str(tmp_path / "p.json"))  # fmt: skip
    assert out.returncode == 2
    assert "forecast.json" in out.stderr
    out = run("generate", "--synthetic", "--duration", "2d", "--rps", "-1", "-o",
              str(tmp_path / "t.parquet"))  # fmt: skip
    assert out.returncode == 2
    assert "--rps must be positive" in out.stderr


def test_synthetic_refuses_replay_options(tmp_path: Path) -> None:
    out = run("generate", "sample", "--synthetic", "-o", str(tmp_path / "a.parquet"))
    assert out.returncode == 2
    assert "TRACE: not with --synthetic" in out.stderr
    out = run("generate", "--synthetic", "--busiest", "10m", "-o", str(tmp_path / "b.parquet"))
    assert out.returncode == 2
    assert "--busiest: not with --synthetic" in out.stderr
    assert not (tmp_path / "a.parquet").exists()
