"""``burstlab experiment`` sweeps end to end: grids, several workloads, executors, runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from burstlab.trace.io import write_table
from support.frames import workload
from support.inproc import invoke

pytestmark = pytest.mark.slow


def mixed(path: Path, n: int, rate: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    table = workload(np.sort(rng.uniform(0, n / rate, n)).tolist()).with_columns(
        pl.Series("input_tokens", rng.integers(50, 3000, n), dtype=pl.Int32),
        pl.Series("output_tokens", rng.integers(5, 600, n), dtype=pl.Int32),
    )
    write_table(table, path)
    return path


@pytest.fixture
def works(tmp_path: Path) -> list[Path]:
    return [
        mixed(tmp_path / "a.parquet", 120, 6.0, seed=1),
        mixed(tmp_path / "b.parquet", 80, 3.0, seed=2),
    ]


GRID = ["--grid", "engine.max_num_seqs=8,32", "--grid", "engine.num_blocks=300,1200"]


def table(out: Path) -> pl.DataFrame:
    return pl.read_csv(out / "experiment.csv")


def test_a_grid_on_two_workloads_serial_and_on_a_pool(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, works: list[Path]
) -> None:
    serial = invoke(capsys, "experiment", "grid", *works, *GRID, "-o", tmp_path / "s")
    assert serial.code == 0, serial.stderr
    assert "8 simulations (grid), one at a time" in serial.stderr
    assert "max_num_seqs=32 num_blocks=1200" in serial.stdout
    rows = table(tmp_path / "s")
    assert rows.height == 8
    assert rows.columns[:4] == ["variant", "engine.max_num_seqs", "engine.num_blocks", "workload"]
    runs = sorted((tmp_path / "s" / "runs").iterdir())
    assert [p.name for p in runs][:2] == [
        "0-a-max_num_seqs=8-num_blocks=300",
        "1-a-max_num_seqs=8-num_blocks=1200",
    ]
    assert all((p / "summary.json").is_file() for p in runs)
    saved = json.loads((tmp_path / "s" / "experiment.json").read_text())
    assert saved["grid"] == {
        "engine.max_num_seqs": ["8", "32"],
        "engine.num_blocks": ["300", "1200"],
    }
    assert saved["executor"] == {"kind": "serial"}

    pooled = invoke(capsys, "experiment", "grid", *works, *GRID, "-j", "2", "-o", tmp_path / "p")
    assert pooled.code == 0, pooled.stderr
    assert "on 2 processes" in pooled.stderr
    assert table(tmp_path / "p").drop("run").equals(rows.drop("run"))

    again = invoke(capsys, "experiment", "grid", *works, *GRID, "-o", tmp_path / "p")
    assert again.is_clean_error("--out")  # the table exists
    (tmp_path / "p" / "experiment.csv").unlink()
    (tmp_path / "p" / "experiment.json").unlink()
    (tmp_path / "p" / "experiment.png").unlink()
    again = invoke(capsys, "experiment", "grid", *works, *GRID, "-o", tmp_path / "p")
    assert again.is_clean_error("--out")  # the runs exist
    assert "holds runs" in again.stderr
    forced = invoke(capsys, "experiment", "kv", works[1], "-o", tmp_path / "p", "--force")
    assert forced.code == 0, forced.stderr
    assert len(list((tmp_path / "p" / "runs").iterdir())) == 5  # only this sweep's runs


@pytest.mark.extra("ray")
def test_the_scheduling_study_as_ray_tasks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, works: list[Path]
) -> None:
    args = ["experiment", "scheduling", works[0], "--grid", "engine.max_num_seqs=8,32"]
    serial = invoke(capsys, *args, "--no-runs", "-o", tmp_path / "s")
    assert serial.code == 0, serial.stderr
    assert not (tmp_path / "s" / "runs").exists()
    on_ray = invoke(capsys, *args, "--executor", "ray", "--jobs", "2", "-o", tmp_path / "r")
    assert on_ray.code == 0, on_ray.stderr
    assert "as Ray tasks on a local Ray with 2 CPUs" in on_ray.stderr
    assert table(tmp_path / "r").drop("run").equals(table(tmp_path / "s"))
    assert len(list((tmp_path / "r" / "runs").iterdir())) == 6


@pytest.mark.parametrize(
    ("args", "option", "message"),
    [
        (["--grid", "engine.max_num_seqs"], "--grid", "FIELD=V1,V2"),
        (["--grid", "engine.max_num_seqs=0"], "--grid", "greater than or equal to 1"),
        (["--grid", "engine.bogus=1"], "--grid", "engine.bogus"),
        (["--executor", "threads"], "--executor", "not one of"),
        (["--executor", "serial", "--jobs", "2"], "--jobs", "one task at a time"),
        (["--address", "auto", "--executor", "process"], "--address", "needs --executor ray"),
    ],
)
def test_bad_sweep_options_are_one_error_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    works: list[Path],
    args: list[str],
    option: str,
    message: str,
) -> None:
    result = invoke(capsys, "experiment", "kv", works[0], *args, "-o", tmp_path / "x")
    assert result.is_clean_error(option), result.stderr
    assert message in result.stderr
    assert not (tmp_path / "x").exists()


def test_the_grid_study_needs_a_grid_and_a_workload_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, works: list[Path]
) -> None:
    result = invoke(capsys, "experiment", "grid", works[0], "-o", tmp_path / "x")
    assert result.is_clean_error()
    assert "--grid" in result.stderr
    result = invoke(capsys, "experiment", "kv", works[0], works[0], "-o", tmp_path / "x")
    assert result.is_clean_error()
    assert "given twice" in result.stderr
