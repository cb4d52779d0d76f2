"""``burstlab bench --executor ray`` from the command line: a run on a local Ray the
command starts itself, its records, summary and the lines about the nodes; bad
options are one clean error with nothing left behind."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from burstlab.results.records import load_records
from burstlab.server.app import make_app
from burstlab.server.fixed import FixedTiming
from burstlab.server.hosting import serve_in_thread
from burstlab.trace.io import write_table
from support.cli import command
from support.frames import constant_rate
from support.inproc import invoke


@pytest.mark.slow
@pytest.mark.extra("ray")
def test_bench_on_a_local_ray_writes_a_whole_run(tmp_path: Path) -> None:
    workload = write_table(constant_rate(60, 30.0, 3), tmp_path / "w.parquet")
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    options = ["-q", "--backend", "vllm", "--executor", "ray", "--workers", "2", "--no-report"]
    with serve_in_thread(make_app(FixedTiming(ttft=0.01, itl=0.005))) as url:
        done = subprocess.run(
            [*command(), "bench", str(workload), "--url", url, "-o", str(run_dir), *options],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    table = load_records(run_dir)
    assert sorted(table["request_id"].to_list()) == list(range(60))
    assert (table["outcome"] == "ok").all()
    assert set(table["worker"].to_list()) == {0, 1}
    nodes = set(table["node"].to_list())
    assert None not in nodes
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["config"]["executor"] == "ray"
    assert manifest["cluster"]["actors"] == 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["client_by_node"]) == nodes
    for node in nodes:  # what the command says about each node
        assert f"Ray node {node} (actors " in done.stdout
        assert f"client on node {node}: " in done.stdout
    assert "clock offset" in done.stdout
    assert "starts spread over" in done.stdout


@pytest.mark.parametrize(
    ("options", "names"),
    [
        (["--address", "127.0.0.1:6379"], "--address"),
        (["--executor", "threads"], "--executor"),
        (["--executor", "ray", "--workers", "0"], "--workers"),
    ],
)
def test_bad_ray_options_are_one_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], names: str
) -> None:
    workload = write_table(constant_rate(4, 10.0), tmp_path / "w.parquet")
    run_dir = tmp_path / "run"
    url = "http://127.0.0.1:9"  # never reached: the options are refused first
    result = invoke(capsys, "bench", workload, "--url", url, "-o", run_dir, "-q", *options)
    assert result.is_clean_error(names), result.stderr
    assert not run_dir.exists()


@pytest.mark.extra("ray")
@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1"),  # nothing listens
        ("nonsense", "--address: 'nonsense' is not HOST:PORT"),
    ],
)
def test_a_cluster_that_cannot_be_joined_is_one_error_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], address: str, says: str
) -> None:
    workload = write_table(constant_rate(4, 10.0), tmp_path / "w.parquet")
    run_dir = tmp_path / "run"
    options = ["--model", "m", "-q", "--executor", "ray", "--address", address]
    result = invoke(
        capsys, "bench", workload, "--url", "http://127.0.0.1:9", "-o", run_dir, *options
    )
    assert result.is_clean_error(), result.stderr
    assert says in result.error_lines[0]
    assert not run_dir.exists()
