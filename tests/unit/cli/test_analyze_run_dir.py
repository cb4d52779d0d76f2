"""``analyze RUN_DIR`` reads the run's per-request results, a simulation's or a benchmark's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from burstlab.cli.analyze_cmd import _results_of_run
from burstlab.core.errors import InputError
from burstlab.results.records import Record, RecordWriter
from burstlab.sim.engine import Engine, EngineConfig
from burstlab.sim.simulate import simulate
from burstlab.trace.readers import read_trace
from support.frames import workload
from support.sim import LinearCost


def test_a_run_directory_stands_for_its_results(tmp_path: Path) -> None:
    table = workload(np.linspace(0, 10, 50).tolist(), input_tokens=64, output_tokens=8)
    simulate(table, Engine(EngineConfig(), LinearCost()), tmp_path / "sim")
    found = _results_of_run(str(tmp_path / "sim"))
    assert found == str(tmp_path / "sim" / "requests.parquet")
    trace, report = read_trace(found)
    assert report.format == "records"
    assert trace["arrival_s"].to_list() == table["arrival_s"].to_list()

    bench = tmp_path / "bench"
    bench.mkdir()
    writer = RecordWriter(bench / "records.jsonl")
    for i in (1, 0):  # in completion order
        writer.write(Record(request_id=i, arrival_s=float(i), input_tokens=5, output_tokens=2))
    writer.close()
    found = _results_of_run(str(bench))
    assert found == str(bench / "records.jsonl")
    assert read_trace(found)[0].height == 2

    assert _results_of_run("sample") == "sample"  # not a directory: itself
    assert _results_of_run(found) == found
    with pytest.raises(InputError, match="without a run's results"):
        _results_of_run(str(tmp_path))
