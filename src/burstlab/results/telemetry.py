"""A simulated engine's telemetry written as it is made: ``telemetry.parquet`` from chunks.

A long simulation makes millions of telemetry rows (one per scheduler step or run of
identical decode steps; 26M for BurstGPT's 10.31M requests). Kept in memory they
would cost more than the per-request results, so the engine hands them over in
chunks (a telemetry sink), :class:`TelemetryWriter` writes each chunk as a part file
beside the run, and :meth:`TelemetryWriter.close` merges the parts into one Parquet
file, streamed, so memory stays bounded by a chunk whatever the run's length.

Counts (iterations, batch, requests, blocks, preemptions) are stored as int32 and
times and work sums as float64.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

#: Rows collected before a part file is written (about 25 MB of rows in memory).
PART_ROWS = 1 << 18


def telemetry_table(
    rows: np.ndarray, columns: Sequence[str], integers: frozenset[str]
) -> pl.DataFrame:
    """Telemetry rows (one column per name of ``columns``) as a table: the ``integers``
    columns as int32, the rest float64."""
    data = np.asarray(rows, dtype=np.float64).reshape(-1, len(columns))
    return pl.DataFrame(
        [
            pl.Series(name, data[:, k], dtype=pl.Float64).cast(
                pl.Int32 if name in integers else pl.Float64
            )
            for k, name in enumerate(columns)
        ]
    )


class TelemetryWriter:
    """Collects telemetry chunks (2-D arrays, one column per name of ``columns``) into
    part files in a hidden folder beside ``path``; :meth:`close` merges them into
    ``path`` (atomically) and removes the folder. Callable, so it is itself the sink."""

    def __init__(
        self,
        path: Path,
        columns: Sequence[str],
        integers: frozenset[str] = frozenset(),
        *,
        part_rows: int = PART_ROWS,
    ) -> None:
        self.path = path
        self.columns = tuple(columns)
        self.integers = integers
        self.part_rows = part_rows
        self.rows = 0
        self._parts_dir = path.with_name(f".{path.name}.parts")
        shutil.rmtree(self._parts_dir, ignore_errors=True)
        self._parts: list[Path] = []
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0

    def __call__(self, chunk: np.ndarray) -> None:
        """Take a chunk of rows (the writer copies what it keeps)."""
        if chunk.shape[0] == 0:
            return
        self._pending.append(np.array(chunk[:, : len(self.columns)], dtype=np.float64))
        self._pending_rows += chunk.shape[0]
        self.rows += chunk.shape[0]
        if self._pending_rows >= self.part_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        self._parts_dir.mkdir(parents=True, exist_ok=True)
        part = self._parts_dir / f"part-{len(self._parts):06d}.parquet"
        frame = telemetry_table(np.concatenate(self._pending), self.columns, self.integers)
        frame.write_parquet(part, compression="zstd", statistics=False)
        self._parts.append(part)
        self._pending, self._pending_rows = [], 0

    def close(self) -> Path:
        """Write ``path``: every row taken, in order (an empty table when there were
        none), then remove the parts. Returns ``path``."""
        self._flush()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        if not self._parts:
            empty = np.zeros((0, len(self.columns)))
            telemetry_table(empty, self.columns, self.integers).write_parquet(tmp)
        elif len(self._parts) == 1:
            self._parts[0].replace(tmp)
        else:
            pl.scan_parquet(self._parts).sink_parquet(tmp, compression="zstd", statistics=False)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        tmp.replace(self.path)
        shutil.rmtree(self._parts_dir, ignore_errors=True)
        return self.path

    def discard(self) -> None:
        """Remove the parts without writing ``path`` (the run failed)."""
        shutil.rmtree(self._parts_dir, ignore_errors=True)
