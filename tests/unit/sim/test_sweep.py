"""Sweeps: the grid, the tasks, and the same table from every executor."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from burstlab.core.errors import InputError
from burstlab.results.rundir import RunDir
from burstlab.sim.experiment import run_study
from burstlab.sim.pd import PDConfig
from burstlab.sim.spec import EngineSpec
from burstlab.sim.sweep import (
    GRID,
    ProcessPool,
    RayExecutor,
    Serial,
    Task,
    apply_settings,
    clear_runs,
    executor,
    grid_points,
    parse_grid,
    plan_sweep,
    run_sweep,
)
from support.frames import workload


def mixed(n: int, rate: float, seed: int = 0) -> pl.DataFrame:
    """``n`` requests at ``rate`` per second with varied lengths (seeded)."""
    rng = np.random.default_rng(seed)
    table = workload(np.sort(rng.uniform(0, n / rate, n)).tolist())
    return table.with_columns(
        pl.Series("input_tokens", rng.integers(50, 3000, n), dtype=pl.Int32),
        pl.Series("output_tokens", rng.integers(5, 600, n), dtype=pl.Int32),
    )


#: Two small workloads, one of them busy enough to preempt on a small cache.
TABLES = {"a.parquet": mixed(150, 6.0, seed=1), "b.parquet": mixed(100, 3.0, seed=2)}
SMALL = EngineSpec(engine={"num_blocks": 600, "max_num_seqs": 32})


def small_sweep(runs: Path | None) -> list[Task]:
    """12 tasks: scheduling x max_num_seqs 8, 32 x two workloads."""
    axes = parse_grid(["engine.max_num_seqs=8,32"])
    return plan_sweep("scheduling", SMALL, list(TABLES), axes, runs=runs)


def summaries(table: pl.DataFrame) -> list[dict[str, Any]]:
    """What each run directory's summary says, less the wall-clock fields."""
    out = []
    for run in table["run"].to_list():
        summary = RunDir(run).summary()
        assert summary is not None
        data = summary.model_dump(mode="json")
        data.pop("engine", None)  # wall seconds differ run to run
        out.append(json.loads(json.dumps(data, sort_keys=True)))
    return out


# -- the grid ------------------------------------------------------------------------------


def test_parse_grid_reads_fields_and_values_as_written() -> None:
    axes = parse_grid(["engine.max_num_seqs=64, 128,256", "gpu_memory_utilization=0.5,0.9"])
    assert [(a.field, a.values) for a in axes] == [
        ("engine.max_num_seqs", ("64", "128", "256")),
        ("gpu_memory_utilization", ("0.5", "0.9")),
    ]
    points = grid_points(axes)
    assert len(points) == 6
    assert points[0] == (("engine.max_num_seqs", "64"), ("gpu_memory_utilization", "0.5"))
    assert points[1] == (("engine.max_num_seqs", "64"), ("gpu_memory_utilization", "0.9"))
    assert grid_points([]) == [()]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("engine.max_num_seqs", "expected FIELD=V1,V2"),
        ("=1,2", "expected FIELD=V1,V2"),
        ("engine..x=1", "expected FIELD=V1,V2"),
        ("engine.max_num_seqs=1,,2", "an empty value"),
        ("engine.max_num_seqs=", "an empty value"),
        ("engine.max_num_seqs=4,4", "a value given twice"),
    ],
)
def test_parse_grid_refuses_bad_items(item: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_grid([item])
    assert info.value.field == "--grid"


def test_a_field_given_twice_is_refused() -> None:
    with pytest.raises(InputError, match="given twice"):
        parse_grid(["engine.num_blocks=1,2", "engine.num_blocks=3"])


def test_apply_settings_sets_typed_values_at_any_depth() -> None:
    spec = apply_settings(
        EngineSpec(),
        [("engine.max_num_seqs", "64"), ("engine.queue_timeout_s", "null"), ("pd.prefill", "2")],
    )
    assert spec.config().max_num_seqs == 64
    assert spec.engine["queue_timeout_s"] is None
    assert spec.pd is not None
    assert spec.pd.prefill == 2
    assert spec.pd.decode == PDConfig().decode  # the rest of pd keeps its defaults
    assert apply_settings(spec, []) is spec


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("engine.max_num_seqs", "0", r"engine\.max_num_seqs: .*greater than or equal to 1"),
        ("engine.no_such", "1", r"engine\.no_such"),
        ("no_such", "1", r"no_such: Extra inputs"),
        ("gpu.flops", "1", "gpu is 'A100-80G' in the engine spec, not a mapping"),
        ("engine.scheduler", "random", r"engine\.scheduler"),
    ],
)
def test_apply_settings_names_the_bad_field_and_the_point(
    field: str, value: str, message: str
) -> None:
    with pytest.raises(InputError, match=message) as info:
        apply_settings(EngineSpec(), [(field, value)])
    assert info.value.field == "--grid"
    if field != "gpu.flops":
        assert f"(at {field}={value})" in info.value.reason


# -- planning ------------------------------------------------------------------------------


def test_a_study_is_derived_at_every_grid_point() -> None:
    axes = parse_grid(["gpu_memory_utilization=0.5,0.9"])
    tasks = plan_sweep("kv", EngineSpec(), ["w.parquet"], axes)
    assert len(tasks) == 10
    assert [t.index for t in tasks] == list(range(10))
    # kv's block counts are fractions of each point's own derived cache
    half = [t.spec.config().num_blocks for t in tasks[:5]]
    full = [t.spec.config().num_blocks for t in tasks[5:]]
    assert all(h < f for h, f in zip(half, full, strict=True))
    assert tasks[3].variant == f"gpu_memory_utilization=0.5 {half[3]} blocks (x1)"
    assert tasks[0].settings == (("gpu_memory_utilization", "0.5"),)
    assert all(t.run_dir is None for t in tasks)


def test_the_grid_study_varies_the_grid_alone_and_names_runs_uniquely(tmp_path: Path) -> None:
    axes = parse_grid(["engine.max_num_seqs=64,128"])
    tasks = plan_sweep(GRID, EngineSpec(), ["x/a.parquet", "y/a.csv"], axes, runs=tmp_path)
    assert [t.variant for t in tasks] == ["max_num_seqs=64", "max_num_seqs=128"] * 2
    assert [t.workload for t in tasks] == ["x/a.parquet"] * 2 + ["y/a.csv"] * 2
    names = [Path(t.run_dir).name for t in tasks if t.run_dir is not None]
    assert len(set(names)) == 4
    assert names[0] == "0-a-max_num_seqs=64"
    with pytest.raises(InputError, match="needs at least one --grid"):
        plan_sweep(GRID, EngineSpec(), ["w"], [])
    with pytest.raises(InputError, match="unknown experiment 'speed'"):
        plan_sweep("speed", EngineSpec(), ["w"], axes)


def test_two_fields_with_one_name_are_labelled_in_full() -> None:
    axes = parse_grid(["tp=1", "cost.kind=roofline", "cost.tp=1"])
    (task,) = plan_sweep(GRID, EngineSpec(), ["w"], axes)
    assert task.variant == "tp=1 kind=roofline cost.tp=1"
    assert task.spec.cost is not None


# -- running -------------------------------------------------------------------------------


def test_the_serial_sweep_is_the_study_table_and_reports_progress() -> None:
    tasks = plan_sweep("kv", SMALL, ["a.parquet"])
    seen: list[tuple[int, int]] = []
    table = run_sweep(tasks, TABLES, Serial(), progress=lambda d, n: seen.append((d, n)))
    assert seen == [(i, 5) for i in range(1, 6)]
    study = run_study("kv", TABLES["a.parquet"], SMALL)
    assert table.columns == study.columns  # one workload, no grid, no runs: the same shape
    assert table.equals(study)


@pytest.mark.slow
def test_each_task_writes_its_run_and_the_rows_come_from_the_same_results(
    tmp_path: Path,
) -> None:
    bare = run_sweep(small_sweep(None), TABLES)
    table = run_sweep(small_sweep(tmp_path / "runs"), TABLES)
    assert table.columns[:3] == ["variant", "engine.max_num_seqs", "workload"]
    assert table["run"].to_list() == [t.run_dir for t in small_sweep(tmp_path / "runs")]
    assert table.drop("run").equals(bare)
    for row in table.iter_rows(named=True):
        summary = RunDir(row["run"]).summary()
        assert summary is not None
        assert summary.counts.scheduled == TABLES[row["workload"]].height
        failed = summary.counts.scheduled - summary.counts.ok
        assert failed / summary.counts.scheduled == pytest.approx(row["failure_rate"])
    # the study's spec is in each run's manifest
    manifest = RunDir(table["run"][0]).manifest()
    assert manifest is not None
    assert manifest.engine["engine"]["max_num_seqs"] == 8
    assert manifest.engine["engine"]["scheduler"] == "fcfs"


@pytest.mark.slow
def test_a_process_pool_gives_the_serial_table_and_runs(tmp_path: Path) -> None:
    serial = run_sweep(small_sweep(tmp_path / "serial"), TABLES, Serial())
    seen: list[int] = []
    pooled = run_sweep(
        small_sweep(tmp_path / "pool"), TABLES, ProcessPool(2), lambda d, n: seen.append(d)
    )
    assert sorted(seen) == list(range(1, 13))
    assert pooled.drop("run").equals(serial.drop("run"))
    assert summaries(pooled) == summaries(serial)


@pytest.mark.slow
@pytest.mark.extra("ray")
def test_a_local_ray_with_two_cpus_gives_the_serial_table_and_runs(tmp_path: Path) -> None:
    import ray

    assert not ray.is_initialized()
    serial = run_sweep(small_sweep(tmp_path / "serial"), TABLES, Serial())
    seen: list[int] = []
    on_ray = run_sweep(
        small_sweep(tmp_path / "ray"),
        TABLES,
        RayExecutor(num_cpus=2),
        lambda d, n: seen.append(d),
    )
    assert not ray.is_initialized()  # the Ray it started is stopped
    assert sorted(seen) == list(range(1, 13))
    assert on_ray.drop("run").equals(serial.drop("run"))
    assert summaries(on_ray) == summaries(serial)


@pytest.mark.slow
def test_a_failing_task_fails_the_sweep_with_its_error(tmp_path: Path) -> None:
    tasks = small_sweep(tmp_path / "runs")
    taken = Path(tasks[5].run_dir or "")
    taken.mkdir(parents=True)
    (taken / "records.jsonl").write_text("{}\n")  # a run is there: RunDir refuses it
    with pytest.raises(InputError, match="already holds a run"):
        run_sweep(tasks, TABLES, ProcessPool(2))


def test_a_missing_table_is_named() -> None:
    with pytest.raises(InputError, match=r"no table for workload 'a\.parquet'"):
        run_sweep(small_sweep(None), {"b.parquet": TABLES["b.parquet"]})


# -- choosing an executor ------------------------------------------------------------------


def test_the_executor_follows_the_options() -> None:
    assert executor(None) == Serial()
    assert executor(None, 1) == Serial()
    assert executor(None, 3) == ProcessPool(3)
    assert executor("process", 2) == ProcessPool(2)
    assert isinstance(executor("process"), ProcessPool)


@pytest.mark.parametrize(
    ("kind", "jobs", "address", "option"),
    [
        (None, 0, None, "--jobs"),
        ("process", -1, None, "--jobs"),
        ("serial", 2, None, "--jobs"),
        ("threads", None, None, "--executor"),
        ("process", None, "auto", "--address"),
    ],
)
def test_bad_executor_options_are_named(
    kind: str | None, jobs: int | None, address: str | None, option: str
) -> None:
    with pytest.raises(InputError) as info:
        executor(kind, jobs, address)
    assert info.value.field == option


def test_ray_missing_is_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray":
            raise ImportError("no ray here")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(InputError, match="needs Ray") as info:
        executor("ray")
    assert "burstlab[ray]" in (info.value.hint or "")


@pytest.mark.extra("ray")
def test_ray_executor_options() -> None:
    assert executor("ray", 2) == RayExecutor(num_cpus=2)
    assert executor(None, None, "auto") == RayExecutor(address="auto")
    with pytest.raises(InputError, match="its own CPUs"):
        executor("ray", 2, "auto")


@pytest.mark.extra("ray")
def test_an_address_where_nothing_listens_fails_at_once() -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match="cannot reach the Ray cluster") as info:
        RayExecutor(address=f"127.0.0.1:{port}").run([], {})
    assert info.value.field == "--address"


# -- the runs folder -----------------------------------------------------------------------


def test_clear_runs_replaces_runs_only_with_force(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    clear_runs(runs, force=False)  # nothing there: fine
    run_sweep(plan_sweep("kv", SMALL, ["b.parquet"], runs=runs)[:2], TABLES)
    with pytest.raises(InputError, match="holds runs"):
        clear_runs(runs, force=False)
    clear_runs(runs, force=True)
    assert list(runs.iterdir()) == []
    (runs / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a run directory"):
        clear_runs(runs, force=True)
    assert (runs / "notes.txt").read_text() == "mine"


def test_the_step_bar_counts_on_a_terminal() -> None:
    from rich.console import Console

    from burstlab.cli.steps import StepBar

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with StepBar("simulating", "runs", console) as bar:
        bar.start(4)
        bar(3, 4)
        bar._bar.refresh()
    assert "3/4" in buffer.getvalue()
    assert "simulating" in buffer.getvalue()
