"""Sweeps: many simulations (engine variants x workloads) run serially, on a local
process pool or as Ray tasks, and merged into one table.

A sweep is a list of :class:`Task`: one engine spec (a study's variant, at one
point of a user grid over ``engine.yaml`` fields) on one workload. Each task
simulates its workload, writes its own run directory when it has one (through
:func:`burstlab.sim.simulate.simulate_into`, as ``burstlab simulate`` does) and
returns its row of :func:`burstlab.sim.experiment.metrics`. The driver puts the
rows in task order, whatever order they finished in.

The results do not depend on the executor: the engine makes no random choice
(same spec, same requests, same result), and the workloads are read once, by the
driver, and handed to every task as tables, so every executor simulates the same
requests on the same engines. Only wall times (``run.json``, ``summary.json``'s
engine wall seconds) differ between executors.

Executors (one method, :meth:`Executor.run`):

- :class:`Serial`: one task after another in this process;
- :class:`ProcessPool`: ``concurrent.futures`` worker processes started by
  ``spawn`` (safe with threads and on every platform); each worker receives the
  workload tables once, when it starts;
- :class:`RayExecutor`: one Ray task per simulation (``burstlab[ray]``, imported
  only here). Without an address it starts a local Ray with ``num_cpus`` CPUs and
  stops it at the end; with one it connects to that cluster (``auto``,
  ``HOST:PORT`` or ``ray://HOST:10001``). Workload tables go to Ray's object store
  once each. On a cluster of several machines the workers need burstlab installed
  and the output folder on a file system they share, or each run directory stays
  on the machine that ran it (the merged table comes back to the driver either way).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import shutil
import socket
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, Literal, Protocol

import polars as pl
import yaml
from pydantic import ValidationError

from burstlab.core.errors import BurstlabError, InputError, invalid
from burstlab.results.rundir import MANIFEST, RunDir
from burstlab.sim.engine import Engine
from burstlab.sim.experiment import STUDIES, metrics, variants
from burstlab.sim.simulate import simulate_into
from burstlab.sim.spec import EngineSpec

#: The study that varies nothing but the ``--grid`` fields.
GRID = "grid"
ExecutorKind = Literal["serial", "process", "ray"]
EXECUTORS: tuple[str, ...] = ("serial", "process", "ray")
#: Called with (tasks done, tasks in all) each time a task ends.
Progress = Callable[[int, int], None]


# -- the grid ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Axis:
    """One ``--grid`` option: a dotted ``engine.yaml`` field and the values it takes,
    as written (``engine.max_num_seqs=64,128,256``)."""

    field: str
    values: tuple[str, ...]


def parse_grid(items: Sequence[str]) -> list[Axis]:
    """``FIELD=V1,V2,...`` per item, a field of ``engine.yaml`` in dotted form
    (``engine.num_blocks``, ``gpu_memory_utilization``, ``cluster.replicas``,
    ``pd.prefill``). Each field once; values are YAML scalars (``64``, ``0.5``,
    ``fcfs``, ``true``, ``null``)."""
    axes: list[Axis] = []
    for item in items:
        name, eq, rest = item.partition("=")
        name = name.strip()
        values = tuple(v.strip() for v in rest.split(","))
        if not eq or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
            raise InputError(
                f"expected FIELD=V1,V2,... with a dotted engine.yaml field, got {item!r}",
                field="--grid",
                hint="e.g. --grid engine.max_num_seqs=64,128,256",
            )
        if not all(values):
            raise InputError(f"{name}: an empty value in {rest!r}", field="--grid")
        if len(set(values)) < len(values):
            raise InputError(f"{name}: a value given twice in {rest!r}", field="--grid")
        if any(a.field == name for a in axes):
            raise InputError(f"{name} is given twice; give its values once", field="--grid")
        axes.append(Axis(name, values))
    return axes


def grid_points(axes: Sequence[Axis]) -> list[tuple[tuple[str, str], ...]]:
    """Every combination of the axes' values, the last axis varying fastest; one
    empty point when there are no axes."""
    return [
        tuple(zip((a.field for a in axes), combo, strict=True))
        for combo in product(*(a.values for a in axes))
    ]


def apply_settings(spec: EngineSpec, settings: Sequence[tuple[str, str]]) -> EngineSpec:
    """``spec`` with each ``(dotted field, value as written)`` set, checked as
    ``engine.yaml`` is (an unknown or bad field is an :class:`InputError` naming it)."""
    if not settings:
        return spec
    data = spec.model_dump()
    for field, text in settings:
        *parents, leaf = field.split(".")
        node = data
        for i, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parents[: i + 1])
                raise InputError(
                    f"{field}: {where} is {child!r} in the engine spec, not a mapping",
                    field="--grid",
                )
            else:
                child = node[part] = dict(child)
            node = child
        node[leaf] = _scalar(text)
    point = ", ".join(f"{f}={v}" for f, v in settings)
    try:
        out = EngineSpec.model_validate(data)
        out.config()
    except ValidationError as exc:
        error = invalid(exc, model=EngineSpec)
        raise InputError(f"{error.reason} (at {point})", field="--grid") from None
    except InputError as exc:
        raise InputError(f"{exc.reason} (at {point})", field="--grid") from None
    return out


def _scalar(text: str) -> Any:
    """A grid value as YAML reads it (``64`` an int, ``null`` None), else the text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if value is None or isinstance(value, bool | int | float | str) else text


# -- tasks ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Task:
    """One simulation of a sweep: ``spec`` on the workload named ``workload``.

    ``index`` is its row in the merged table; ``variant`` the study's label
    (with the grid point's settings in front); ``settings`` the grid point as
    written; ``run_dir`` where it writes its run directory (``None``: it writes none).
    """

    index: int
    variant: str
    workload: str
    spec: EngineSpec
    settings: tuple[tuple[str, str], ...] = ()
    run_dir: str | None = None


def plan_sweep(
    study: str,
    spec: EngineSpec,
    workloads: Sequence[str],
    axes: Sequence[Axis] = (),
    *,
    runs: str | Path | None = None,
) -> list[Task]:
    """The tasks of ``study`` (``scheduling``, ``kv``, ``pd``, or :data:`GRID` for the
    grid alone) at every grid point, on every workload (named as the caller will
    key their tables), in that nesting order: workload, grid point, variant.

    A study's variants are derived from each grid point's spec (``kv``'s block
    counts from that point's derived cache size). With ``runs``, task ``i``
    writes its run directory in ``runs/NN-LABEL``.
    """
    if study != GRID and study not in STUDIES:
        raise InputError(f"unknown experiment {study!r}; known: {', '.join((*STUDIES, GRID))}")
    if study == GRID and not axes:
        raise InputError("the grid study needs at least one --grid FIELD=V1,V2,...")
    if not workloads:
        raise InputError("no workload given")
    short = _short_names([a.field for a in axes])
    points = [(p, apply_settings(spec, p)) for p in grid_points(axes)]
    labelled: list[tuple[tuple[tuple[str, str], ...], str, EngineSpec]] = []
    for point, base in points:
        prefix = " ".join(f"{short[f]}={v}" for f, v in point)
        found = [(prefix, base)] if study == GRID else variants(study, base)
        for label, variant in found:
            full = label if study == GRID else (f"{prefix} {label}" if prefix else label)
            labelled.append((point, full, variant))
    count = len(workloads) * len(labelled)
    width = len(str(count - 1))
    tasks: list[Task] = []
    for workload in workloads:
        for point, label, variant in labelled:
            i = len(tasks)
            run_dir = None
            if runs is not None:
                name = _slug(label if len(workloads) == 1 else f"{Path(workload).stem} {label}")
                run_dir = str(Path(runs) / f"{i:0{width}d}-{name}")
            tasks.append(Task(i, label, workload, variant, point, run_dir))
    return tasks


def _short_names(fields: Sequence[str]) -> dict[str, str]:
    """A grid field's label: its last part (``max_num_seqs``) unless two fields share it."""
    last = [f.rsplit(".", 1)[-1] for f in fields]
    return {f: (s if last.count(s) == 1 else f) for f, s in zip(fields, last, strict=True)}


def _slug(text: str) -> str:
    """A folder name from a label: letters, digits, ``.``, ``=`` and ``-`` kept."""
    return re.sub(r"[^\w.=-]+", "-", text).strip("-") or "run"


def run_task(task: Task, workload: pl.DataFrame) -> dict[str, float]:
    """Simulate one task; its :func:`~burstlab.sim.experiment.metrics` row.

    With a ``run_dir`` the run is written there as ``burstlab simulate`` writes
    one (the spec described in ``run.json``), and the row comes from the same result.
    """
    table = workload.sort("arrival_s", maintain_order=True)
    arrival = table["arrival_s"].to_numpy()
    outputs = table["output_tokens"].to_numpy()
    inputs = table["input_tokens"].to_numpy()
    engine = task.spec.build()
    if task.run_dir is None and isinstance(engine, Engine):  # the metrics need no token times
        result = engine.run(arrival, inputs, outputs, token_times=False)
    elif task.run_dir is None:
        result = engine.run(arrival, inputs, outputs)
    else:
        with RunDir.create(task.run_dir) as out:
            _, result = simulate_into(out, table, engine, description=task.spec.describe())
    return metrics(result, arrival, outputs)


def merge(tasks: Sequence[Task], rows: Sequence[Mapping[str, float]]) -> pl.DataFrame:
    """The sweep's table, one row per task in task order: ``variant``; one column
    per grid field (its value as written) when there is a grid; ``workload`` when
    there are several; the metrics; ``run`` (the run directory) when written."""
    several = len({t.workload for t in tasks}) > 1
    out: list[dict[str, Any]] = []
    for task, row in zip(tasks, rows, strict=True):
        line: dict[str, Any] = {"variant": task.variant, **dict(task.settings)}
        if several:
            line["workload"] = task.workload
        line.update(row)
        if task.run_dir is not None:
            line["run"] = task.run_dir
        out.append(line)
    return pl.DataFrame(out)


# -- executors -----------------------------------------------------------------------------


class Executor(Protocol):
    """Runs a sweep's tasks somewhere; the rows come back in task order."""

    def run(
        self,
        tasks: Sequence[Task],
        tables: Mapping[str, pl.DataFrame],
        progress: Progress | None = None,
    ) -> list[dict[str, float]]:
        """Every task's :func:`run_task` row, in the order of ``tasks``;
        ``progress(done, total)`` after each one ends."""
        ...


@dataclass(frozen=True, slots=True)
class Serial:
    """One task after another, in this process."""

    def run(
        self,
        tasks: Sequence[Task],
        tables: Mapping[str, pl.DataFrame],
        progress: Progress | None = None,
    ) -> list[dict[str, float]]:
        rows = []
        for done, task in enumerate(tasks, 1):
            rows.append(run_task(task, tables[task.workload]))
            if progress is not None:
                progress(done, len(tasks))
        return rows


#: The workload tables of a process-pool worker, set once by its initializer.
_WORKER_TABLES: dict[str, pl.DataFrame] = {}


def _init_worker(tables: Mapping[str, pl.DataFrame]) -> None:
    _WORKER_TABLES.clear()
    _WORKER_TABLES.update(tables)


def _pool_task(task: Task) -> dict[str, float]:
    return run_task(task, _WORKER_TABLES[task.workload])


@dataclass(frozen=True, slots=True)
class ProcessPool:
    """``jobs`` worker processes on this machine (``spawn``ed: no state inherited
    but the tables, sent once per worker)."""

    jobs: int

    def run(
        self,
        tasks: Sequence[Task],
        tables: Mapping[str, pl.DataFrame],
        progress: Progress | None = None,
    ) -> list[dict[str, float]]:
        if not tasks:
            return []
        workers = max(1, min(self.jobs, len(tasks)))
        rows: dict[int, dict[str, float]] = {}
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(dict(tables),),
        ) as pool:
            pending: dict[Future[dict[str, float]], int] = {
                pool.submit(_pool_task, t): t.index for t in tasks
            }
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        rows[pending.pop(future)] = future.result()
                        if progress is not None:
                            progress(len(rows), len(tasks))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return [rows[t.index] for t in tasks]


@dataclass(frozen=True, slots=True)
class RayExecutor:
    """One Ray task per simulation: a local Ray with ``num_cpus`` CPUs (``None``:
    the machine's) when ``address`` is ``None``, else the cluster at ``address``.
    An already initialised Ray (a caller's ``ray.init``) is used as it is."""

    address: str | None = None
    num_cpus: int | None = None

    def run(
        self,
        tasks: Sequence[Task],
        tables: Mapping[str, pl.DataFrame],
        progress: Progress | None = None,
    ) -> list[dict[str, float]]:
        ray = import_ray()
        started = False
        if not ray.is_initialized():
            _init_ray(ray, self.address, self.num_cpus)
            started = True
        try:
            return _run_on_ray(ray, tasks, tables, progress)
        finally:
            if started:
                ray.shutdown()


def import_ray() -> Any:
    """The ``ray`` module, or an :class:`InputError` saying how to install it."""
    try:
        import ray  # noqa: PLC0415 - an optional extra, loaded on use
    except ImportError:
        raise InputError(
            "--executor ray needs Ray, which is not installed",
            field="--executor",
            hint="pip install 'burstlab[ray]', or use --jobs N for a local process pool",
        ) from None
    return ray


def _init_ray(ray: Any, address: str | None, num_cpus: int | None) -> None:
    quiet: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
    if address is None:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, **quiet)
        return
    _check_reachable(address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InputError(
            f"cannot connect to the Ray cluster at {address!r}: {exc}",
            field="--address",
            hint="start one with 'ray start --head', or leave --address out for a local Ray",
        ) from None


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once, not after Ray's minutes of retries, when nothing listens at a
    ``HOST:PORT`` (or ``ray://HOST:PORT``) address; ``auto`` is Ray's to resolve."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise InputError(
            f"cannot reach the Ray cluster at {address!r}: {exc.strerror or exc}",
            field="--address",
            hint="start one with 'ray start --head', or leave --address out for a local Ray",
        ) from None


def _run_on_ray(
    ray: Any,
    tasks: Sequence[Task],
    tables: Mapping[str, pl.DataFrame],
    progress: Progress | None,
) -> list[dict[str, float]]:
    remote = ray.remote(num_cpus=1)(run_task)
    refs = {name: ray.put(table) for name, table in tables.items()}
    pending = {remote.remote(t, refs[t.workload]): t.index for t in tasks}
    rows: dict[int, dict[str, float]] = {}
    try:
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                index = pending.pop(ref)
                try:
                    rows[index] = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, BurstlabError):
                        raise cause from None
                    raise
                if progress is not None:
                    progress(len(rows), len(tasks))
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return [rows[t.index] for t in tasks]


def executor(kind: str | None, jobs: int | None = None, address: str | None = None) -> Executor:
    """The executor the command line asks for.

    ``kind`` ``None`` is Ray when ``address`` is given, a process pool when
    ``jobs`` > 1, else serial. ``jobs`` is the process pool's workers or the local
    Ray's CPUs (default: this machine's); a Ray cluster at ``address`` has its own.
    """
    if jobs is not None and not 1 <= jobs < math.inf:
        raise InputError(f"must be a whole number of 1 or more, got {jobs}", field="--jobs")
    if kind is None:
        kind = "ray" if address is not None else "process" if (jobs or 1) > 1 else "serial"
    if kind not in EXECUTORS:
        raise InputError(f"{kind!r} is not one of {', '.join(EXECUTORS)}", field="--executor")
    if address is not None and kind != "ray":
        raise InputError(
            "--address is the Ray cluster's; it needs --executor ray", field="--address"
        )
    if kind == "serial":
        if jobs not in (None, 1):
            raise InputError("serial runs one task at a time; drop --jobs", field="--jobs")
        return Serial()
    if kind == "process":
        return ProcessPool(jobs or os.cpu_count() or 1)
    if address is not None and jobs is not None:
        raise InputError("a Ray cluster at --address has its own CPUs; drop --jobs", field="--jobs")
    import_ray()  # not installed: the error now, before any work
    return RayExecutor(address=address, num_cpus=jobs)


def run_sweep(
    tasks: Sequence[Task],
    tables: Mapping[str, pl.DataFrame],
    runner: Executor | None = None,
    progress: Progress | None = None,
) -> pl.DataFrame:
    """Run ``tasks`` on ``runner`` (default :class:`Serial`) and merge their rows
    (:func:`merge`). ``tables`` maps each task's ``workload`` to its request table."""
    missing = sorted({t.workload for t in tasks} - set(tables))
    if missing:
        raise InputError(f"no table for workload {missing[0]!r}")
    rows = (runner or Serial()).run(tasks, tables, progress)
    return merge(tasks, rows)


def clear_runs(runs: str | Path, *, force: bool) -> None:
    """Make ``runs`` (a sweep's folder of run directories) empty, so that it holds
    this sweep's runs only: a folder with anything in it is refused unless
    ``force``; with ``force`` its run directories (a folder with ``run.json``)
    are removed, and anything else in it is refused, so nothing else is deleted."""
    folder = Path(runs)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise InputError(f"{folder} is a file, not a folder of runs", field="--out")
    children = sorted(folder.iterdir())
    if not children:
        return
    if not force:
        raise InputError(
            f"{folder} holds runs; not overwriting them",
            field="--out",
            hint="pass --force to replace them, or choose another output",
        )
    strangers = [c for c in children if not (c.is_dir() and RunDir(c).has(MANIFEST))]
    if strangers:
        raise InputError(f"{strangers[0]} is not a run directory; not removing it", field="--out")
    for child in children:
        shutil.rmtree(child)
