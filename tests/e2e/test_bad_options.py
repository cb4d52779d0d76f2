"""Every numeric option of every command, given 0, -1, nan, inf and text (issue 14, item 9).

Each value either works (where it means something: ``--seed 0``, ``--port 0``) or
gives one ``error:`` line that names the option, with exit 2 and no traceback.
The options are read from the typer app, so a new numeric option is covered
without editing this file: until it is listed in :data:`WORKS`, any of its
values may work or fail cleanly, but none may crash. Commands run in-process
(:mod:`support.inproc`) on a small synthetic trace; ``bench`` against a mock
server. A ``bench`` row that fails is an expected failure for now: its option
checks belong to the bench work of the same issue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main

from burstlab.cli.app import app
from support.inproc import Result, invoke

pytestmark = pytest.mark.slow

VALUES = ("0", "-1", "nan", "inf", "abc")


def _is_numeric(param: Any) -> bool:
    """An int or float option (not a flag): typer's own parameters carry their
    annotation; older typer gives click's INT, FLOAT, IntRange, FloatRange."""
    if getattr(param, "param_type_name", None) != "option":
        return False
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        return descriptor.annotation in (int, float)
    import click

    return isinstance(param.type, click.types.IntParamType | click.types.FloatParamType)


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for name, sub in sorted(subcommands.items()):
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


def numeric_options() -> list[tuple[str, str]]:
    """(command, option) for every numeric option: ``("generate", "--rps")``."""
    found = []
    for path, command in _commands(typer.main.get_command(app)):
        for param in command.params:
            if _is_numeric(param):
                name = next((o for o in param.opts if o.startswith("--")), param.opts[0])
                found.append((" ".join(path), name))
    return found


#: Per option, the values that work; every other value must be a clean error.
WORKS: dict[tuple[str, str], set[str]] = {
    **{(cmd, "--seed"): {"0"} for cmd in ("analyze", "bench", "fit", "forecast", "generate")},
    ("generate", "--day"): {"0"},
    ("plan", "--headroom"): {"0"},
    ("serve", "--port"): {"0"},  # any free port
    **{
        option: set()
        for option in [
            ("bench", "--max-concurrency"), ("bench", "--workers"), ("bench", "--timeout"),
            ("bench", "--idle-timeout"), ("bench", "--max-lag"),
            ("fit", "--holdout"), ("fit", "--paths"),
            ("forecast", "--horizon"), ("forecast", "--lags"), ("forecast", "--window"),
            ("forecast", "--test-fraction"),
            ("generate", "--limit"), ("generate", "--rps"), ("generate", "--speedup"),
            ("generate", "--burstiness"), ("generate", "--shape"), ("generate", "--length-cap"),
            ("generate", "--zipf"),
            ("plan", "--capacity"), ("plan", "--attainment"), ("plan", "--min"), ("plan", "--max"),
            ("serve", "--time-scale"), ("serve", "--max-body"), ("serve", "--max-connections"),
            ("serve", "--header-timeout"),
            ("simulate", "--num-blocks"),
            ("experiment", "--jobs"),
        ]
    },
}  # fmt: skip
#: Values that may work or fail cleanly, as their owner decides (never crash):
#: no limit at all, or a lag bound of zero.
EITHER: dict[tuple[str, str], set[str]] = {
    ("bench", "--timeout"): {"inf"},
    ("bench", "--idle-timeout"): {"inf"},
    ("bench", "--max-lag"): {"0", "inf"},
}


def expected(command: str, option: str, value: str) -> str:
    """What a value must do: work, fail cleanly, or either (an option not listed, a new one)."""
    if (command, option) not in WORKS or value in EITHER.get((command, option), set()):
        return "either"
    return "works" if value in WORKS[command, option] else "clean error"


@dataclass(frozen=True)
class Inputs:
    trace: Path  # two days of synthetic requests, CSV
    model: Path  # model.json fitted to it
    forecast: Path  # a forecast directory made from it
    tiny: Path  # two requests, for bench
    url: str  # a fixed-timing mock server, for bench
    run: Path  # a simulated run that calibrates


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inputs]:
    from burstlab.cli.app import run
    from burstlab.server.app import make_app
    from burstlab.server.fixed import FixedTiming
    from burstlab.server.hosting import serve_in_thread

    root = tmp_path_factory.mktemp("inputs")
    trace, model, forecast = root / "trace.csv", root / "model.json", root / "fc"
    synthetic = ["generate", "--synthetic", "--duration", "2d", "--rps", "0.01", "-o"]
    assert run([*synthetic, str(trace)]) == 0
    assert run(["fit", str(trace), "-o", str(model)]) == 0
    assert run([*FORECAST, str(trace), "-o", str(forecast)]) == 0
    tiny = root / "tiny.csv"
    tiny.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "0,ChatGPT,10,4,14,Conversation log\n0.05,ChatGPT,12,4,16,Conversation log\n"
    )
    work, sim = root / "w.parquet", root / "run"
    assert run(["generate", "sample", "--busiest", "2m", "--speedup", "0.25", "-o", str(work)]) == 0
    assert run(["simulate", str(work), "-o", str(sim), "--no-report"]) == 0
    with serve_in_thread(make_app(FixedTiming(ttft=0.001, itl=0.001, eos=4))) as url:
        yield Inputs(trace, model, forecast, tiny, url, sim)


FORECAST = ["forecast", "--granularity", "1h", "--granularities", "1h",
            "--models", "last,moving_average", "--no-plots"]  # fmt: skip
FIXED = ["--fixed", "ttft=0.01,itl=0.01"]

Base = Callable[[Inputs, Path], list[str | Path]]
QUIET_BENCH = ["-q", "--no-report"]
TINY = ["--layers", "1", "--hidden", "64", "--heads", "2", "--kv-heads", "2", "--ffn", "64"]
SAMPLE_MODEL = ["--duration", "10m"]  # with a model.json from 'fit'

#: Per command, an invocation that works without the option under test.
BASE: dict[str, Base] = {
    "analyze": lambda f, out: ["analyze", f.trace, "-o", out, "--no-plots"],
    "bench": lambda f, out: ["bench", f.tiny, "--url", f.url, "-o", out / "run", *QUIET_BENCH],
    "fit": lambda f, out: ["fit", f.trace, "-o", out / "model.json"],
    "generate": lambda f, out: ["generate", f.trace, "-o", out / "w.parquet"],
    "simulate": lambda f, out: ["simulate", f.trace, "-o", out / "run", "--no-report"],
    "forecast": lambda f, out: [*FORECAST, f.trace, "-o", out],
    "plan": lambda f, out: ["plan", "--forecast", f.forecast, "--capacity", "1", "-o", out / "p"],
    "serve": lambda f, out: ["serve", *FIXED, "--port", "0"],
    "experiment": lambda f, out: ["experiment", "scheduling", f.trace, "-o", out, "--no-runs"],
    "calibrate": lambda f, out: ["calibrate", f.run, "-o", out / "engine.yaml"],
    "engine llama-cpp": lambda f, out: ["engine", "llama-cpp", "--setup", "--dir", out, *TINY],
}


def _sample_model(f: Inputs, out: Path) -> list[str | Path]:
    return ["generate", f.model, *SAMPLE_MODEL, "-o", out / "w.parquet"]


def _fit_holdout(f: Inputs, out: Path) -> list[str | Path]:
    return ["fit", f.trace, "-o", out / "m.json", "--holdout", "0.5", "--paths", "1"]


#: Where an option acts only in another mode of its command, that mode.
MODE: dict[tuple[str, str], Base] = {
    **{
        ("generate", name): _sample_model
        for name in ("--burstiness", "--shape", "--length-cap", "--seed")
    },
    ("generate", "--zipf"): lambda f, out: ["generate", *SAMPLE_MODEL, "-o", out / "w.csv"],
    ("fit", "--seed"): _fit_holdout,
    ("serve", "--port"): lambda f, out: ["serve", *FIXED],
    ("serve", "--time-scale"): lambda f, out: ["serve", "--port", "0"],
    ("plan", "--capacity"): lambda f, out: ["plan", "--forecast", f.forecast, "-o", out / "p"],
    ("calibrate", "--ctx"): lambda f, out: ["calibrate", f.run, "-o", out / "e", "--slots", "4"],
}

CASES = [(command, option, value) for command, option in numeric_options() for value in VALUES]


def outcome(result: Result, option: str) -> str:
    """What a value did: exit 0, a clean error (:meth:`Result.is_clean_error`), or other."""
    if result.code == 0:
        return "works"
    if result.is_clean_error(option):
        return "clean error"
    return "other"


def test_the_options_are_found() -> None:
    """The walk sees options of subcommands and of every kind of number."""
    found = set(numeric_options())
    assert {("generate", "--rps"), ("serve", "--port"), ("plan", "--min")} <= found
    assert ("analyze", "--plots") not in found  # a flag is not a number
    assert ("analyze", "--window") not in found  # a duration is text


@pytest.mark.parametrize(("command", "option", "value"), CASES)
def test_numeric_option(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
    inputs: Inputs,
    tmp_path: Path,
    command: str,
    option: str,
    value: str,
) -> None:
    monkeypatch.setattr("burstlab.server.hosting.serve_forever", lambda *a, **k: None)
    base = MODE.get((command, option)) or BASE.get(command)
    if base is None:
        pytest.fail(f"no invocation of {command!r} in BASE: add one that works")
    result = invoke(capsys, *base(inputs, tmp_path), option, value)
    got, want = outcome(result, option), expected(command, option, value)
    record_property("outcome", got)  # --junitxml: the matrix of outcomes
    ok = got != "other" if want == "either" else got == want
    if not ok and command == "bench":
        pytest.xfail(f"bench's option checks are the bench owner's (issue 14 item 9): {got}")
    assert ok, f"{command} {option} {value}: expected {want}, got {got}:\n{result.stderr}"
