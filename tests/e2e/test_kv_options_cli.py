"""``simulate --kv-utilization`` and the warning for more KV blocks than the GPU holds,
in process on a small workload."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest

from support.inproc import invoke

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from burstlab.cli.app import run

    path = tmp_path_factory.mktemp("kv") / "w.parquet"
    assert run(["generate", "sample", "--busiest", "1m", "-o", str(path)]) == 0
    return path


def engine_of(run_dir: Path) -> dict[str, object]:
    return json.loads((run_dir / "run.json").read_text())["engine"]  # type: ignore[no-any-return]


def test_kv_utilization_sizes_the_cache(
    capsys: pytest.CaptureFixture[str], work: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = invoke(capsys, "simulate", work, "-o", out, "--no-report", "--kv-utilization", "0.3")
    assert result.code == 0, result.stderr
    engine = engine_of(out)
    assert engine["kv_utilization"] == 0.3
    assert engine["engine"]["num_blocks"] == 2234  # type: ignore[index]
    assert "warning:" not in result.stderr


def test_the_option_replaces_the_files_block_count(
    capsys: pytest.CaptureFixture[str], work: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "engine.yaml"
    spec.write_text("engine:\n  num_blocks: 500\n")
    out = tmp_path / "run"
    args = ("simulate", work, "--engine", spec, "-o", out, "--no-report")
    assert invoke(capsys, *args, "--kv-utilization", "0.5").code == 0
    assert engine_of(out)["engine"]["num_blocks"] == 3724  # type: ignore[index]


def test_too_many_blocks_warn_on_stderr_and_still_run(
    capsys: pytest.CaptureFixture[str], work: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = invoke(capsys, "simulate", work, "-o", out, "--no-report", "--num-blocks", "20000")
    assert result.code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "20,000" in warnings[0]
    assert "7,449" in warnings[0]
    assert "warning" not in result.stdout
    assert engine_of(out)["engine"]["num_blocks"] == 20000  # type: ignore[index]


@pytest.mark.parametrize(
    "args",
    [
        ("--kv-utilization", "0"),
        ("--kv-utilization", "1.5"),
        ("--kv-utilization", "nan"),
        ("--kv-utilization", "0.3", "--num-blocks", "100"),
    ],
)
def test_bad_kv_utilization_is_one_clean_error(
    capsys: pytest.CaptureFixture[str], work: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = invoke(capsys, "simulate", work, "-o", tmp_path / "run", *args)
    assert result.is_clean_error("--kv-utilization"), result.stderr
    assert not (tmp_path / "run").exists()


def test_experiment_kv_fails_more_as_the_cache_shrinks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The issue's check: on the sample's busiest ten minutes (bursty, and more than one
    replica serves) the share of failed requests rises as the KV cache shrinks."""
    work = tmp_path / "w.parquet"
    assert invoke(capsys, "generate", "sample", "--busiest", "10m", "-o", work).code == 0
    out = tmp_path / "exp"
    result = invoke(capsys, "experiment", "kv", work, "-o", out, "--no-runs")
    assert result.code == 0, result.stderr
    rows = json.loads((out / "experiment.json").read_text())["rows"]
    failed = [row["failure_rate"] for row in rows]
    assert [row["variant"].split(" (")[1] for row in rows] == [
        "x0.1)",
        "x0.25)",
        "x0.5)",
        "x1)",
        "x2)",
    ]
    assert all(a > b for a, b in pairwise(failed)), failed
    assert failed[0] > 0.3
    assert "failed %" in result.stdout


def test_experiment_warns_of_too_many_blocks(
    capsys: pytest.CaptureFixture[str], work: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "engine.yaml"
    spec.write_text("engine:\n  num_blocks: 20000\n")
    args = ("experiment", "scheduling", work, "--engine", spec, "-o", tmp_path / "exp")
    result = invoke(capsys, *args, "--no-runs")
    assert result.code == 0, result.stderr
    assert sum(line.startswith("warning:") for line in result.stderr.splitlines()) == 1
