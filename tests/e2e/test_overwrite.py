"""No command replaces existing output unless ``--force`` (issue 14, item 11).

Table-driven over every command that writes output: the output exists, the
command refuses with one ``error:`` line naming it and leaves it as it was;
with ``--force`` it is replaced. ``bench`` and ``simulate`` refuse a run
directory that holds a run (their ``RunDir``), with or without ``--force``.
Commands run in-process (:mod:`support.inproc`) on a small synthetic trace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.inproc import invoke

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Inputs:
    trace: Path  # two days of synthetic requests, CSV
    forecast: Path  # a forecast directory made from it
    run: Path  # a simulated run of it
    model: Path  # model.json fitted to it


FORECAST = ["--granularity", "1h", "--granularities", "1h", "--models", "last", "--no-plots"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    from burstlab.cli.app import run

    root = tmp_path_factory.mktemp("inputs")
    trace, forecast, sim = root / "trace.csv", root / "fc", root / "run"
    synthetic = ["generate", "--synthetic", "--duration", "2d", "--rps", "0.01", "-o"]
    assert run([*synthetic, str(trace)]) == 0
    assert run(["forecast", str(trace), *FORECAST, "-o", str(forecast)]) == 0
    assert run(["simulate", str(trace), "-o", str(sim), "--no-report"]) == 0
    model = root / "model.json"
    assert run(["fit", str(trace), "-o", str(model)]) == 0
    return Inputs(trace, forecast, sim, model)


@dataclass(frozen=True)
class Case:
    """A command writing to ``out``, and the file of its output that exists already."""

    args: Callable[[Inputs, Path], list[str | Path]]
    existing: str  # relative to out: "" is out itself (a file)
    option: str | None = "--out"


CASES = {
    "analyze": Case(lambda f, out: ["analyze", f.trace, "-o", out, "--no-plots"], "summary.json"),
    "analyze report": Case(
        lambda f, out: ["analyze", f.trace, "-o", out, "--no-plots"], "report.html"
    ),
    "generate": Case(lambda f, out: ["generate", f.trace, "-o", out], ""),
    "generate --synthetic": Case(
        lambda f, out: ["generate", "--synthetic", "--duration", "1d", "-o", out], ""
    ),
    "generate --zipf": Case(
        lambda f, out: ["generate", "--zipf", "1.2", "--duration", "1m", "-o", out], ""
    ),
    "generate model.json": Case(
        lambda f, out: ["generate", f.model, "--duration", "10m", "-o", out], ""
    ),
    "fit": Case(lambda f, out: ["fit", f.trace, "-o", out], ""),
    "forecast": Case(lambda f, out: ["forecast", f.trace, *FORECAST, "-o", out], "metrics.json"),
    "plan": Case(
        lambda f, out: ["plan", "--forecast", f.forecast, "--capacity", "1", "-o", out], ""
    ),
    "experiment": Case(
        lambda f, out: ["experiment", "scheduling", f.trace, "-o", out], "experiment.csv"
    ),
    "calibrate": Case(lambda f, out: ["calibrate", f.run, "-o", out], ""),
    "trace convert": Case(lambda f, out: ["trace", "convert", f.trace, out], "", None),
}

SUFFIX = {"generate": ".parquet", "generate --synthetic": ".csv", "generate --zipf": ".jsonl",
          "generate model.json": ".parquet", "trace convert": ".parquet"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_existing_output_is_kept_unless_force(
    capsys: pytest.CaptureFixture[str], inputs: Inputs, tmp_path: Path, name: str
) -> None:
    case = CASES[name]
    out = tmp_path / ("out" + SUFFIX.get(name, ".json" if not case.existing else ""))
    target = out / case.existing if case.existing else out
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("earlier results\n")

    refused = invoke(capsys, *case.args(inputs, out))
    assert refused.is_clean_error(case.option), refused.stderr
    assert str(target) in refused.error_lines[0]
    assert "--force" in refused.stderr
    assert target.read_text() == "earlier results\n"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # nothing else

    forced = invoke(capsys, *case.args(inputs, out), "--force")
    assert forced.code == 0, forced.stderr
    assert target.read_bytes() != b"earlier results\n"


def test_a_directory_is_not_a_file(
    capsys: pytest.CaptureFixture[str], inputs: Inputs, tmp_path: Path
) -> None:
    out = tmp_path / "model.json"
    out.mkdir()
    result = invoke(capsys, "fit", inputs.trace, "-o", out, "--force")
    assert result.is_clean_error("--out"), result.stderr
    assert "is a directory" in result.stderr


def test_a_file_is_not_a_directory(
    capsys: pytest.CaptureFixture[str], inputs: Inputs, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.write_text("x")
    result = invoke(capsys, "analyze", inputs.trace, "-o", out, "--no-plots")
    assert result.is_clean_error("--out"), result.stderr
    assert "is a file" in result.stderr


def test_other_files_in_the_directory_are_fine(
    capsys: pytest.CaptureFixture[str], inputs: Inputs, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    result = invoke(capsys, "analyze", inputs.trace, "-o", tmp_path, "--no-plots")
    assert result.code == 0, result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_simulate_refuses_a_run_directory(
    capsys: pytest.CaptureFixture[str], inputs: Inputs
) -> None:
    before = (inputs.run / "requests.parquet").read_bytes()
    result = invoke(capsys, "simulate", inputs.trace, "-o", inputs.run, "--no-report")
    assert result.is_clean_error(), result.stderr
    assert (inputs.run / "requests.parquet").read_bytes() == before


#: Commands that write a run directory: their RunDir refuses one that holds a run.
RUN_DIR_COMMANDS = {"bench", "simulate", "demo"}


def test_every_command_that_writes_output_takes_force() -> None:
    """A command with ``--out`` or an OUTPUT argument has ``--force`` and a row above."""
    import typer.main

    from burstlab.cli.app import app

    root = typer.main.get_command(app)
    writers = set()
    stack = [((), root)]
    while stack:
        path, command = stack.pop()
        for name, sub in getattr(command, "commands", {}).items():
            stack.append(((*path, name), sub))
        names = {o for p in getattr(command, "params", []) for o in getattr(p, "opts", [])}
        if "--out" in names or "output" in {p.name for p in getattr(command, "params", [])}:
            writers.add((" ".join(path), "--force" in names))
    assert writers
    for name, has_force in sorted(writers):
        if name in RUN_DIR_COMMANDS:
            continue
        assert has_force, f"{name} writes output but has no --force"
        assert any(case == name or case.startswith(name + " ") for case in CASES), name
