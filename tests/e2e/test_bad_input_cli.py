"""Bad input gives one ``error:`` line and exit 2; odd but valid input is analysed
(issue 14, item 9).

Run in-process (:mod:`support.inproc`): the same ``run`` as the console script.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from support.inproc import invoke

HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"


def burstgpt(rows: list[tuple[float, str, int, int]]) -> str:
    """A BurstGPT CSV of (timestamp, model, request tokens, response tokens)."""
    lines = [HEADER] + [f"{t},{m},{i},{o},{i + o},Conversation log" for t, m, i, o in rows]
    return "\n".join(lines) + "\n"


# -- usage errors: one line, not typer's box --------------------------------------------------


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["generate", "sample", "--rps", "abc", "-o", "w.parquet"], "--rps"),
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--port", "-1"], "--port"),
        (["generate", "--limit", "1.5", "-o", "w.parquet"], "--limit"),
        (["generate", "-o", "w.parquet", "--arrivals", "nope"], "--arrivals"),
        (["analyze", "sample"], "--out"),
        (["analyze", "sample", "-o", "x", "--no-such-option"], "--no-such-option"),
        (["forecast", "sample", "--granularities", "", "-o", "fc"], "--granularities"),
    ],
)
def test_a_usage_error_is_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], name: str
) -> None:
    result = invoke(capsys, *args)
    assert result.is_clean_error(name), result.stderr
    assert "Usage:" not in result.stderr
    assert "╭" not in result.stderr


def test_help_and_version_still_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(capsys, "--version").code == 0
    result = invoke(capsys, "generate", "--help")
    assert result.code == 0
    assert "--rps" in result.stdout


# -- engine.yaml ------------------------------------------------------------------------------


@pytest.fixture
def latin1_engine(write_file: Callable[[str, str | bytes], Path]) -> Path:
    return write_file("engine.yaml", b"tp: 1\n# caf\xe9\ngpu: A100-80G\n")


def test_simulate_engine_file_not_utf8(
    capsys: pytest.CaptureFixture[str], latin1_engine: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = invoke(capsys, "simulate", "sample", "--engine", latin1_engine, "-o", out)
    assert result.is_clean_error(f"{latin1_engine}:2:6:"), result.stderr
    assert "UTF-8" in result.error_lines[0]
    assert not out.exists()


def test_serve_engine_file_not_utf8(
    capsys: pytest.CaptureFixture[str], latin1_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("served with a bad engine file")

    monkeypatch.setattr("burstlab.server.hosting.serve_forever", never)
    result = invoke(capsys, "serve", "--engine", latin1_engine, "--port", "0")
    assert result.is_clean_error(f"{latin1_engine}:2:6:"), result.stderr


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("cost: {kind: roofline, mfu: 0}\n", "cost.mfu:"),
        ("cost: {kind: roofline, mbu: 1.5}\n", "cost.mbu:"),
        ("gpu: H100-80G\ncost: {kind: roofline, gpu: A100-80G, attn_mfu: -1}\n", "cost.attn_mfu:"),
        ("cost: {kind: linear, c0: -1}\n", "cost.c0:"),
        ("gpu: {name: x, flops: 0, mem_bw: 1, memory: 1}\n", "gpu.flops:"),
    ],
)
def test_an_engine_error_names_the_field(
    capsys: pytest.CaptureFixture[str],
    write_file: Callable[[str, str | bytes], Path],
    tmp_path: Path,
    text: str,
    where: str,
) -> None:
    engine = write_file("engine.yaml", text)
    result = invoke(capsys, "simulate", "sample", "--engine", engine, "-o", tmp_path / "r")
    assert result.is_clean_error(f"{engine}: {where}"), result.stderr


def test_a_roofline_cost_takes_the_spec_hardware(
    write_file: Callable[[str, str | bytes], Path],
) -> None:
    """README's ``cost: {kind: roofline, mfu: 0.6, ...}`` reads: the roofline of the
    spec's own GPU and model, with only the efficiencies written."""
    from burstlab.sim.cost import Roofline
    from burstlab.sim.spec import load_spec

    engine = write_file(
        "engine.yaml", "gpu: H100-80G\ncost: {kind: roofline, mfu: 0.5, overhead_s: 0.002}\n"
    )
    spec = load_spec(engine)
    assert isinstance(spec.cost, Roofline)
    assert (spec.cost.gpu.name, spec.cost.model.name) == ("H100-80G", "Llama-2-7B")
    assert (spec.cost.mfu, spec.cost.overhead_s) == (0.5, 0.002)


# -- constant or degenerate columns are data --------------------------------------------------

DEGENERATE = {
    # every request and response the same length, and equal to each other
    "equal lengths": [(i * 0.5, "ChatGPT", 100, 100) for i in range(120)],
    # per row input == output, lengths varying
    "input equals output": [(i * 0.5, "ChatGPT", 10 + 7 * i, 10 + 7 * i) for i in range(120)],
    "one input length": [(i * 0.5, "ChatGPT", 64, 5 + i % 40) for i in range(120)],
    "one model": [(i * 0.37, "GPT-4", 5 + i, 9 + i % 11) for i in range(120)],
    "one instant": [(5.0, "ChatGPT", 5 + i, 9 + i % 11) for i in range(120)],
    "one token": [(i * 0.5, "ChatGPT", 1, 1) for i in range(120)],
    "three requests": [(float(t), "ChatGPT", 10, 10) for t in range(3)],
}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_analyze_a_degenerate_trace(
    capsys: pytest.CaptureFixture[str],
    write_file: Callable[[str, str | bytes], Path],
    tmp_path: Path,
    case: str,
) -> None:
    trace = write_file("trace.csv", burstgpt(DEGENERATE[case]))
    out = tmp_path / "out"
    result = invoke(capsys, "analyze", trace, "-o", out, "--no-plots")
    assert result.code == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == len(DEGENERATE[case])
    assert (out / "report.html").is_file()
