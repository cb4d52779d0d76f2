"""``--config FILE``: every option of ``bench`` can be set from a file, the command line
overrides it, and a bad file is one error naming the file, line and column of the key."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from burstlab.cli.app import app
from burstlab.cli.config_file import PARAM, config_keys, load_config
from burstlab.core.errors import InputError
from support.inproc import invoke

REQUIRED = {"workload": "w.parquet", "url": "http://127.0.0.1:9", "out": "runs/a"}


def bench_command() -> Any:
    return typer.main.get_command(app).commands["bench"]  # type: ignore[attr-defined]


def options() -> list[Any]:
    return [p for p in bench_command().params if p.name != PARAM]


def key_of(param: Any) -> str:
    longs = [o for o in param.opts if o.startswith("--")]
    return longs[0][2:] if longs else param.name


def a_value(param: Any) -> tuple[Any, Any]:
    """A value for ``param`` unlike its default, as written in a file and as the
    command receives it."""
    desc = param.type_descriptor
    ann = desc.annotation
    if desc.choices:
        choice = next(c for c in reversed(desc.choices) if c != param.default)
        return choice, choice
    if typing.get_origin(ann) is list:
        return ["X-Test: 1"], ["X-Test: 1"]
    if ann is bool:
        value = not param.default if param.default is not None else True
        return value, value
    if ann in (int, float):
        low = param.min if getattr(param, "min", None) is not None else 0
        high = getattr(param, "max", None)
        value = ann(low) + ann(2) if high is None else ann((low + high) / 2)
        if value == param.default:
            value = value + 1
        return value, value
    if ann is Path:
        return "some/dir", Path("some/dir")
    return "some-text", "some-text"


@pytest.mark.parametrize("param", options(), ids=key_of)
def test_every_bench_option_can_be_set_from_the_file(param: Any, tmp_path: Path) -> None:
    written, received = a_value(param)
    data = {k: v for k, v in REQUIRED.items() if k != param.name} | {key_of(param): written}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    ctx = bench_command().make_context("bench", ["--config", str(path)])
    assert ctx.params[param.name] == received


def test_the_command_line_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(REQUIRED | {"workers": 4, "max_concurrency": 8, "seed": 3}))
    ctx = bench_command().make_context(
        "bench", ["--config", str(path), "--workers", "2", "--url", "http://10.0.0.1:1"]
    )
    assert ctx.params["workers"] == 2
    assert ctx.params["url"] == "http://10.0.0.1:1"
    assert ctx.params["max_concurrency"] == 8  # the '_' spelling is the same key
    assert ctx.params["seed"] == 3


def test_keys_are_long_option_names_in_either_spelling() -> None:
    keys = config_keys(options())
    assert keys["max-concurrency"] == keys["max_concurrency"] == "max_concurrency"
    assert keys["out"] == "out"  # --out/-o: the long name
    assert keys["workload"] == "workload"  # an argument: its name
    assert "config" not in keys
    assert PARAM not in keys


def where(exc: pytest.ExceptionInfo[InputError]) -> tuple[int | None, int | None]:
    return exc.value.line, exc.value.column


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("url: x\n  # c\nwokers: 2\n", 3, 1, ["unknown key 'wokers'"]),
        ("url: x\nworkers: two\n", 2, 1, ["workers:", "integer"]),
        ("workers: true\n", 1, 1, ["workers:", "integer"]),  # a bool is not a number
        ("url: x\n   stream: 1\n", None, None, ["not valid YAML"]),
        ("stream: yes-please\n", 1, 1, ["stream:", "boolean"]),
        ("max-error-rate: 1.5\n", 1, 1, ["max-error-rate:", "1"]),
        ("header: 'X: y'\n", 1, 1, ["header:", "list"]),
        ("url: x\nworkers: 1\nworkers: 2\n", 3, 1, ["'workers' sets 'workers' a second time"]),
        ("url: x\nmax-lag: 1\nmax_lag: 2\n", 3, 1, ["'max_lag' sets 'max-lag'"]),
        ("- url\n- x\n", 1, 1, ["a mapping"]),
        ("url: [1, 2]\n", 1, 1, ["url:", "string"]),
    ],
)
def test_a_bad_file_names_the_key_line_and_column(
    tmp_path: Path, text: str, line: int | None, column: int | None, words: list[str]
) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        load_config(path, options())
    message = caught.value.message
    assert message.startswith(str(path)), message
    if line is not None:
        assert where(caught) == (line, column), message
    for word in words:
        assert word in message, message
    assert "\n" not in message


def test_null_leaves_the_default_and_an_empty_file_sets_nothing(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: null\n")
    assert load_config(path, options()).values == {}
    path.write_text("")
    assert load_config(path, options()).values == {}


def test_json_is_yaml(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"workers": 2, "stream": false}')
    assert load_config(path, options()).values == {"workers": 2, "stream": False}


def test_a_value_only_the_command_can_judge_is_reported_at_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("workload: sample\nurl: http://127.0.0.1:9\nout: o\n\ntimeout: 0\n")
    done = invoke(capsys, "bench", "--config", path)
    assert done.is_clean_error(f"{path}:5:1: timeout:"), done.stderr
    assert not (tmp_path / "o").exists()
    # the same value on the command line is the option's error, not the file's
    done = invoke(capsys, "bench", "--config", path, "--timeout", "-1")
    assert done.is_clean_error("--timeout"), done.stderr
    assert str(path) not in done.stderr


def test_an_unreadable_or_missing_file_is_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = invoke(capsys, "bench", "--config", tmp_path / "none.yaml")
    assert done.is_clean_error("none.yaml"), done.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"url: \xff\n")
    done = invoke(capsys, "bench", "--config", bad)
    assert done.is_clean_error(f"{bad}:1:6: not UTF-8"), done.stderr
