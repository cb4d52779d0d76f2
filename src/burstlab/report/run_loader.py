"""A run directory read for its report: the typed manifest and summary, the per-request
results (a benchmark's ``records.jsonl`` or a simulation's ``requests.parquet``), the
engine's telemetry and the autoscaling comparison, whichever the run left.

Everything is read through :class:`~burstlab.results.rundir.RunDir`. A run killed
before it wrote ``summary.json`` still has a summary here, recomputed from its
records, with a note saying so. The manifest's free-form parts (the bench
configuration, the simulated engine as the user described it) and
``autoscale.json`` are read into small views that keep only what the report
shows, so a run written by an older or newer burstlab still reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from burstlab.core.errors import InputError, invalid
from burstlab.results.manifest import Kind, Manifest
from burstlab.results.rundir import AUTOSCALE, MANIFEST, RunDir
from burstlab.results.summary import RunSummary, summarize

#: The most requests a run's per-request figures draw (points, distributions, per-window
#: percentiles): a larger run is drawn from every k-th request by intended time, so its
#: figures take the same time whatever its size. Counts per window use every request.
FIGURE_REQUESTS = 50_000
#: The most telemetry rows (engine steps) read for the telemetry figure.
TELEMETRY_ROWS = 200_000

#: A setting the report only displays: whatever scalar the run wrote.
Setting = str | int | float | bool | None


class _View(BaseModel):
    """What the report reads of a free-form record; other keys are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


V = TypeVar("V", bound=_View)


class Target(_View):
    """The server a bench run measured, from ``run.json``'s redacted configuration."""

    url: Setting = None
    model: Setting = None
    api: Setting = None
    backend: Setting = None
    stream: Setting = None
    max_concurrency: Setting = None
    workers: Setting = None
    seed: Setting = None


class Named(_View):
    """A GPU or model described by its fields; the report shows its name."""

    name: Setting = None


class _Cost(_View):
    kind: Setting = None


class _Scheduler(_View):
    scheduler: Setting = None
    max_num_seqs: Setting = None
    max_batched_tokens: Setting = None
    num_blocks: Setting = None
    block_size: Setting = None
    preemption: Setting = None
    queue_cap: Setting = None


class _Cluster(_View):
    replicas: Setting = None
    router: Setting = None


class _PD(_View):
    prefill: Setting = None
    decode: Setting = None
    dynamic: dict[str, Any] | None = None


class _Plan(_View):
    instances: list[int] = Field(default_factory=list)


class Engine(_View):
    """The simulated replica (or cluster), from ``run.json``'s engine description."""

    gpu: Named | str | None = None
    model: Named | str | None = None
    tp: Setting = None
    cost: _Cost | None = None
    engine: _Scheduler | None = None
    cluster: _Cluster | None = None
    pd: _PD | None = None
    plan: _Plan | None = None


class PolicyScore(_View):
    """One autoscaling policy's figures (seconds; shares 0-1)."""

    slo_attainment: float | None = None
    failure_rate: float | None = None
    ttft_p99_s: float | None = None
    e2e_p99_s: float | None = None
    instance_hours: float | None = None
    mean_instances: float | None = None
    peak_instances: float | None = None


class Autoscale(_View):
    """``autoscale.json``: every policy's score and instance count over time
    (``(seconds, instances)`` at every change)."""

    policies: dict[str, PolicyScore] = Field(default_factory=dict)
    timelines: dict[str, list[tuple[float, float]]] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Run:
    """A run directory as read. ``status`` is the summary's, or for a run without
    one the manifest's (``incomplete`` where the manifest still says running)."""

    path: Path
    kind: Kind
    status: str
    manifest: Manifest | None
    summary: RunSummary
    records: pl.DataFrame | None
    telemetry: pl.DataFrame | None = None
    #: The simulated GPUs' utilisation per replica and time bin (``utilisation.parquet``).
    utilisation: pl.DataFrame | None = None
    autoscale: Autoscale | None = None
    target: Target | None = None
    engine: Engine | None = None
    notes: list[str] = field(default_factory=list)
    recomputed: bool = False


def load_run(run_dir: str | Path, *, telemetry: bool = True) -> Run:
    """Read a run directory; recompute the summary from the records when it is missing.
    ``telemetry=False`` skips the engine's telemetry and utilisation series (only
    figures need them).

    Raises :class:`~burstlab.core.errors.InputError` naming the directory when it
    is missing or holds no run (no records and no summary), or naming the file
    that is not valid.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError("no such run directory", path=str(path))
    rundir = RunDir(path)
    manifest = rundir.manifest()
    results = rundir.results_file()
    source = results.name if results is not None else "records.jsonl"
    records = rundir.records()
    saved = rundir.summary()
    notes: list[str] = []
    status: str
    if saved is not None:
        summary, status = saved, saved.status
    elif records is not None and records.height > 0:
        slo = manifest.slo if manifest is not None else None
        summary = summarize(records, slo=slo)
        ended = manifest.status if manifest is not None else "running"
        status = "incomplete" if ended == "running" else ended
        notes.append(
            "summary.json is missing (the run was killed before it ended?): the summary "
            f"was recomputed from {source}, without the client's health samples"
        )
    else:
        raise InputError(
            "holds no run (no records, no requests.parquet and no summary.json)",
            path=str(path),
            hint="pass the directory given to burstlab bench -o or simulate -o",
        )
    if records is None:
        notes.append(f"{source} is missing: no figures and no example errors")
    elif records.height == 0:
        notes.append(f"{source} holds no records")
    steps = rundir.telemetry_rows() if telemetry else 0
    if steps > TELEMETRY_ROWS:
        notes.append(
            f"the engine's telemetry has {steps:,} steps: its figure draws every "
            f"{math.ceil(steps / TELEMETRY_ROWS):,}th"
        )
    if records is not None and records.height > FIGURE_REQUESTS:
        notes.append(
            f"the per-request figures draw {FIGURE_REQUESTS:,}-odd of the {records.height:,} "
            "requests, evenly spread in intended time; every table and count uses them all"
        )
    if not summary.token_times:
        notes.append(
            "token times were not kept (simulate --token-times keeps them): the ITL row is "
            "empty; TPOT and each request's largest gap between tokens (max_gap_s in "
            "requests.parquet) stand for it"
        )
    kind: Kind = manifest.kind if manifest is not None else "bench"
    return Run(
        path=path,
        kind=kind,
        status=status,
        manifest=manifest,
        summary=summary,
        records=records,
        telemetry=rundir.telemetry(max_rows=TELEMETRY_ROWS) if telemetry else None,
        utilisation=rundir.utilisation() if telemetry else None,
        autoscale=_view(Autoscale, rundir.autoscale(), path / AUTOSCALE),
        target=_view(Target, manifest.config if manifest else None, path / MANIFEST, "config."),
        engine=_view(Engine, manifest.engine if manifest else None, path / MANIFEST, "engine."),
        notes=notes,
        recomputed=saved is None,
    )


def figure_sample(table: pl.DataFrame) -> pl.DataFrame | None:
    """Every k-th row of a result table (sorted by intended time) so that at most
    :data:`FIGURE_REQUESTS` are drawn; None when the table is small enough as it is."""
    if table.height <= FIGURE_REQUESTS:
        return None
    return table.gather_every(math.ceil(table.height / FIGURE_REQUESTS))


def _view(model: type[V], data: dict[str, Any] | None, path: Path, prefix: str = "") -> V | None:
    if data is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, path=path, prefix=prefix) from None
