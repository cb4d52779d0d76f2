"""A run directory: the one place that creates, locks, writes and reads a run's files.

Layout (version 2), in the order files are written:

- ``run.json``: the :class:`~burstlab.results.manifest.Manifest`, before the first send
  and again when the run ends;
- ``schedule.parquet``: the workload as scheduled (row ``i`` is request ``i``; benchmarks);
- ``records.jsonl``: one line per request as it ends (:mod:`burstlab.results.records`;
  benchmarks);
- ``warmup.jsonl``: the records of ``bench --warmup N``'s requests, sent before ``t0``
  and kept out of the run's records, counts and metrics (benchmarks with a warm-up);
- ``requests.parquet``: one row per request, the schedule and every result column
  (:mod:`burstlab.results.requests`; simulations, in place of the two above);
- ``telemetry.parquet``: the simulated engine's steps (simulations only);
- ``utilisation.parquet``: the simulated GPUs' busy share, MFU and MBU per replica
  per time bin (:mod:`burstlab.sim.utilisation`; simulations only);
- ``summary.json``: the :class:`~burstlab.results.summary.RunSummary` once the run is over;
- ``vllm.json`` and ``metrics.csv``: the headline figures for other tools
  (:mod:`burstlab.results.export`);
- ``autoscale.json``: the autoscaling comparison (``simulate --autoscale`` only);
- ``report.html``: written by ``burstlab report``.

A writer holds an exclusive ``flock`` on the directory itself for the whole run,
so a second run pointed at the same directory is refused instead of
interleaving records; the lock goes with the process, so a killed run leaves
nothing to clean up. Every file but the records is written atomically.

While a run is written, ``.reserve`` holds :data:`RESERVE_BYTES` of disk: if the
disk fills, :meth:`RunDir.release_reserve` frees it so the summary and the final
manifest can still say what happened. It is gone when the writer closes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import polars as pl
from pydantic import BaseModel, ValidationError

from burstlab.core.errors import InputError, invalid
from burstlab.core.files import atomic_file, atomic_write, read_json_object, write_json
from burstlab.results.export import metrics_csv, vllm_result
from burstlab.results.manifest import MANIFEST_VERSION, Manifest, upgrade_manifest
from burstlab.results.records import RECORDS_FILE, RecordWriter, load_records
from burstlab.results.requests import REQUESTS_FILE, read_requests
from burstlab.results.summary import SUMMARY_VERSION, RunSummary, upgrade_summary
from burstlab.results.telemetry import TelemetryWriter
from burstlab.trace.io import read_table, write_table

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock
    fcntl = None  # type: ignore[assignment]

MANIFEST = "run.json"
SUMMARY = "summary.json"
SCHEDULE = "schedule.parquet"
RECORDS = RECORDS_FILE
WARMUP = "warmup.jsonl"
REQUESTS = REQUESTS_FILE
TELEMETRY = "telemetry.parquet"
UTILISATION = "utilisation.parquet"
AUTOSCALE = "autoscale.json"
VLLM = "vllm.json"
METRICS_CSV = "metrics.csv"
REPORT = "report.html"
RESERVE = ".reserve"
#: Disk space held back while a run is written, for its summary files on a full disk.
RESERVE_BYTES = 256 << 10

M = TypeVar("M", bound=BaseModel)


class RunDir:
    """A run directory at ``path``. Reading needs nothing; writing starts with :meth:`create`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: int | None = None

    # -- writing ---------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, *, records: bool = True) -> RunDir:
        """A new run in ``path``: the folder is created and locked, and (``records``,
        a benchmark's) the records file created empty. A folder that already holds a
        run's records or requests table, or that another run is writing, is refused,
        so no measurement is overwritten."""
        run = cls(path)
        existing = run.records_path
        if run.path.exists() and not run.path.is_dir():
            raise InputError(
                "is a file, not a run directory", path=str(run.path), hint="pass a new directory"
            )
        if (existing.exists() and existing.stat().st_size > 0) or run.has(REQUESTS):
            raise InputError(
                "already holds a run's records; refusing to overwrite them",
                path=str(run.path),
                hint="pass a new run directory",
            )
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"cannot create the run directory: {exc.strerror}", path=str(path)
            ) from None
        run._acquire()
        if records:
            existing.touch()
        run._reserve()
        return run

    def _reserve(self) -> None:
        """Hold :data:`RESERVE_BYTES` of disk for the end of the run (best effort)."""
        path = self.path / RESERVE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError:
            return
        try:
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            except (OSError, AttributeError):  # no fallocate here: write the bytes
                os.write(fd, bytes(RESERVE_BYTES))
        except OSError:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def release_reserve(self) -> None:
        """Free the reserved disk space (before the summary files); safe to call twice."""
        (self.path / RESERVE).unlink(missing_ok=True)

    def _acquire(self) -> None:
        if fcntl is None:
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise InputError(
                "another burstlab run is writing to this directory",
                path=str(self.path),
                hint="wait for it to end, or pass a new run directory",
            ) from None
        self._lock = fd

    def close(self) -> None:
        """Free the reserve and release the writer's lock; safe to call twice."""
        if self._lock is not None:
            self.release_reserve()
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def records_path(self) -> Path:
        """The records file, appended to by :class:`RecordWriter` (one per process)."""
        return self.path / RECORDS

    def file(self, name: str) -> Path:
        """The path of the run file ``name`` (one of this module's constants)."""
        return self.path / name

    def records_writer(self) -> RecordWriter:
        """An appending writer on the records file (each worker process opens its own)."""
        return RecordWriter(self.records_path)

    def warmup_writer(self) -> RecordWriter:
        """An appending writer on ``warmup.jsonl``: the warm-up requests' records, apart
        from the run's."""
        return RecordWriter(self.path / WARMUP)

    def write_records(self, lines: bytes) -> None:
        """All records at once, atomically (a simulation writes them when it ends)."""
        atomic_write(self.records_path, lines)

    def write_requests(self, table: pl.DataFrame) -> None:
        """A simulation's stored requests table (see :mod:`burstlab.results.requests`),
        atomically, as Parquet."""
        with atomic_file(self.path / REQUESTS) as fh:
            table.write_parquet(fh, compression="zstd", statistics=False)

    def write_manifest(self, manifest: Manifest) -> None:
        atomic_write(self.path / MANIFEST, manifest.model_dump_json(indent=2).encode())

    def write_schedule(self, table: pl.DataFrame) -> None:
        """The workload as scheduled, validated as a canonical request table."""
        write_table(table, self.path / SCHEDULE)

    def telemetry_writer(
        self, columns: Sequence[str], integers: frozenset[str] = frozenset()
    ) -> TelemetryWriter:
        """A sink for the engine's telemetry in chunks (columns ``columns``, the
        ``integers`` ones stored as int32); its ``close`` writes the telemetry file."""
        return TelemetryWriter(self.path / TELEMETRY, columns, integers)

    def write_telemetry(self, telemetry: pl.DataFrame) -> None:
        with atomic_file(self.path / TELEMETRY) as fh:
            telemetry.write_parquet(fh)

    def write_utilisation(self, table: pl.DataFrame) -> None:
        """The utilisation time series, one row per replica and time bin
        (:meth:`burstlab.sim.utilisation.UtilisationSeries.table`)."""
        with atomic_file(self.path / UTILISATION) as fh:
            table.write_parquet(fh)

    def write_summary(self, summary: RunSummary, manifest: Manifest, table: pl.DataFrame) -> None:
        """``summary.json``, then ``vllm.json`` and ``metrics.csv`` derived from it."""
        atomic_write(self.path / SUMMARY, summary.model_dump_json(indent=2).encode())
        write_json(self.path / VLLM, vllm_result(summary, manifest, table))
        atomic_write(self.path / METRICS_CSV, metrics_csv(summary))

    def write_autoscale(self, comparison: dict[str, Any]) -> None:
        write_json(self.path / AUTOSCALE, comparison)

    # -- reading ---------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.path.is_dir()

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def manifest(self) -> Manifest | None:
        """``run.json``, upgraded from an older version; None when missing."""
        data = read_json_object(self.path / MANIFEST)
        if data is None:
            return None
        return self._validate(Manifest, upgrade_manifest(data), MANIFEST, MANIFEST_VERSION)

    def summary(self) -> RunSummary | None:
        """``summary.json``, upgraded from an older version; None when missing."""
        data = read_json_object(self.path / SUMMARY)
        if data is None:
            return None
        return self._validate(RunSummary, upgrade_summary(data), SUMMARY, SUMMARY_VERSION)

    def results_file(self) -> Path | None:
        """The file holding one result per request: ``requests.parquet`` (a
        simulation), else ``records.jsonl`` (a benchmark); None when there is neither."""
        for name in (REQUESTS, RECORDS):
            if self.has(name):
                return self.path / name
        return None

    def records(self, *, token_times: bool = True) -> pl.DataFrame | None:
        """The per-request results as a result table with every metric (from
        :meth:`results_file`); None when there is no such file. ``token_times=False``
        leaves a simulation's token-time lists out."""
        path = self.results_file()
        if path is None:
            return None
        if path.name == REQUESTS:
            return read_requests(path, token_times=token_times)
        return load_records(path)

    def schedule(self) -> pl.DataFrame | None:
        """The workload as scheduled: ``schedule.parquet``, or a simulation's
        canonical columns of ``requests.parquet``; None when there is neither."""
        path = self.path / SCHEDULE
        if path.is_file():
            return read_table(path)[0]
        if self.has(REQUESTS):
            return read_table(self.path / REQUESTS)[0]
        return None

    def telemetry(self, *, max_rows: int | None = None) -> pl.DataFrame | None:
        """The engine's telemetry; None when there is none. With ``max_rows``, a long
        one is read as every k-th row (streamed, so memory stays bounded by the rows
        kept): what a figure needs of millions of steps."""
        path = self.path / TELEMETRY
        if not path.is_file():
            return None
        if max_rows is None:
            return pl.read_parquet(path)
        rows = int(pl.scan_parquet(path).select(pl.len()).collect().item())
        every = max(1, math.ceil(rows / max(max_rows, 1)))
        if every == 1:
            return pl.read_parquet(path)
        return pl.scan_parquet(path).gather_every(every).collect(engine="streaming")

    def telemetry_rows(self) -> int:
        """Rows of the engine's telemetry (0 when there is none), from the file's metadata."""
        path = self.path / TELEMETRY
        return int(pl.scan_parquet(path).select(pl.len()).collect().item()) if path.is_file() else 0

    def utilisation(self) -> pl.DataFrame | None:
        path = self.path / UTILISATION
        return pl.read_parquet(path) if path.is_file() else None

    def autoscale(self) -> dict[str, Any] | None:
        return read_json_object(self.path / AUTOSCALE)

    def _validate(self, model: type[M], data: dict[str, Any], name: str, current: int) -> M:
        version = data.get("version")
        path = self.path / name
        if not isinstance(version, int) or version > current:
            raise InputError(
                f"{name} is format version {version!r}; this burstlab reads 1 to {current}",
                path=str(path),
                hint="read it with the burstlab that wrote it, or upgrade burstlab",
            )
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise invalid(exc, path=path) from None


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a finished (or interrupted) run produced: its directory and summary.
    ``bench`` and ``simulate`` both return one."""

    run_dir: Path
    summary: RunSummary
    #: Why files of the run could not be written (the disk filled), or None.
    write_error: str | None = None

    @property
    def status(self) -> str:
        return self.summary.status

    @property
    def lost(self) -> int:
        """Scheduled requests with no record (a worker died before writing them)."""
        return self.summary.lost
