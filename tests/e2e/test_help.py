"""``--help`` of every command shows a flag as a flag (no ``<bool>``) and an option that
takes one of a fixed set as its choices (``<chat|completions>``, not ``<str>``); a value
outside the set is one error line, exit 2."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main

from burstlab.cli.app import app
from support.inproc import invoke

#: Options (and arguments) that take one of a fixed set: each must be typed as a choice.
CHOICE_OPTIONS = [
    ("bench", "--api"),
    ("bench", "--backend"),
    ("bench", "--max-field"),
    ("bench", "--prompt"),
    ("bench", "--executor"),
    ("bench", "--format"),
    ("trace info", "--format"),
    ("trace info", "--time-unit"),
    ("analyze", "--log-type"),
    ("generate", "--log-type"),
    ("generate", "--to"),
    ("simulate", "--scheduler"),
    ("experiment", "study"),
    ("experiment", "--executor"),
]


def commands() -> Iterator[tuple[str, Any]]:
    """Every command and group of the app, by its path (``""`` for the root)."""
    root = typer.main.get_command(app)

    def walk(path: str, command: Any) -> Iterator[tuple[str, Any]]:
        yield path, command
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(f"{path} {name}".strip(), sub)

    yield from walk("", root)


ALL = dict(commands())


def param(path: str, name: str) -> Any:
    params = ALL[path].params
    return next(p for p in params if name in p.opts or p.name == name)


def help_of(capsys: pytest.CaptureFixture[str], path: str) -> str:
    done = invoke(capsys, *path.split(), "--help")
    assert done.code == 0, done.stderr
    return done.stdout


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # no choice list folded over two lines


@pytest.mark.parametrize("path", sorted(ALL), ids=lambda p: p or "burstlab")
def test_no_help_shows_bool_and_every_choice_shows_its_values(
    path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of(capsys, path)
    assert "<bool>" not in text
    for p in ALL[path].params:
        desc = getattr(p, "type_descriptor", None)
        if desc is None or not desc.choices:
            continue
        shown = "<" + "|".join(str(c) for c in desc.choices) + ">"
        assert shown in text, (p.name, shown)


@pytest.mark.parametrize(
    ("path", "name"), CHOICE_OPTIONS, ids=[" ".join(c) for c in CHOICE_OPTIONS]
)
def test_options_of_a_fixed_set_are_choices(
    path: str, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    p = param(path, name)
    assert p.type_descriptor.choices, f"{path} {name} is not typed as a choice"
    first = re.compile(rf"^\W*(\*\s+)?{re.escape(name)}\s")  # the option's own row
    line = next(line for line in help_of(capsys, path).splitlines() if first.match(line))
    assert "<str>" not in line
    assert re.search(r"<[\w-]+(\|[\w-]+)+>", line), line


@pytest.mark.parametrize("path", sorted(ALL), ids=lambda p: p or "burstlab")
def test_brackets_in_help_text_are_shown_not_taken_for_markup(
    path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = " ".join(help_of(capsys, path).replace("│", " ").split())
    for p in ALL[path].params:
        text = (getattr(p, "help", None) or "").replace("\\[", "[")
        for word in re.findall(r"\S*\[\w+\]\S*", text):  # e.g. burstlab[ray]: a rich tag
            assert word in shown, (p.name, word)


def test_flags_still_show_their_negative_form(capsys: pytest.CaptureFixture[str]) -> None:
    line = next(line for line in help_of(capsys, "bench").splitlines() if "--no-stream" in line)
    assert "--stream" in line


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "w.parquet", "--url", "http://127.0.0.1:9", "-o", "o", "--api", "grpc"],
        ["bench", "w.parquet", "--url", "http://127.0.0.1:9", "-o", "o", "--backend", "trt"],
        ["trace", "info", "sample", "--format", "excel"],
        ["simulate", "sample", "-o", "o", "--scheduler", "lifo"],
        ["experiment", "nope", "sample", "-o", "o"],
    ],
)
def test_a_value_outside_the_set_is_one_error_line(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    done = invoke(capsys, *args)
    assert done.is_clean_error("is not one of"), done.stderr


def test_the_repeated_sets_equal_their_owners() -> None:
    from typing import get_args

    from burstlab.bench.backends import Forcing
    from burstlab.bench.config import BenchConfig
    from burstlab.cli import choices
    from burstlab.sim.engine.config import EngineConfig
    from burstlab.sim.experiment import STUDIES
    from burstlab.sim.sweep import EXECUTORS
    from burstlab.trace.schema import LOG_TYPES
    from burstlab.workload.exports import FOREIGN

    def values(tp: Any) -> set[Any]:
        return {v for v in get_args(tp) if v is not type(None)} | {
            w for v in get_args(tp) for w in get_args(v)
        }

    assert set(get_args(choices.Study)) == {*STUDIES, "grid"}
    assert get_args(choices.SweepExecutor) == EXECUTORS
    assert get_args(choices.ForeignFormat) == FOREIGN
    assert get_args(choices.LogType) == LOG_TYPES
    assert set(get_args(choices.Scheduler)) == values(
        EngineConfig.model_fields["scheduler"].annotation
    )
    assert set(get_args(choices.MaxField)) == values(Forcing.model_fields["max_field"].annotation)
    assert set(get_args(choices.PromptMode)) <= values(
        BenchConfig.model_fields["prompt"].annotation
    )
    assert set(get_args(choices.BenchExecutor)) == values(
        BenchConfig.model_fields["executor"].annotation
    )
