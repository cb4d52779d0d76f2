"""cli.reading: the trace options are declared once and reach a command as one TraceOptions."""

from __future__ import annotations

from dataclasses import fields

import pytest
import typer
from typer.testing import CliRunner

from burstlab.cli.reading import TraceOptions, trace_options
from burstlab.core.errors import InputError

runner = CliRunner()
AS_GIVEN = TraceOptions()


def _app(command: object) -> typer.Typer:
    app = typer.Typer()
    app.command()(command)
    return app


def test_all_options_reach_the_command_as_one_object() -> None:
    seen: list[tuple[str, TraceOptions]] = []

    @trace_options()
    def cmd(trace: str, verbose: bool = False, reading: TraceOptions = AS_GIVEN) -> None:
        seen.append((trace, reading))

    args = ["t.csv", "-f", "generic", "--map", "arrival=ts", "--time-unit", "ms", "--sort"]
    result = runner.invoke(_app(cmd), [*args, "--lenient", "--drop-failed", "--cache"])
    assert result.exit_code == 0, result.output
    assert seen == [("t.csv", TraceOptions("generic", "arrival=ts", "ms", True, True, True, True))]
    seen.clear()
    assert runner.invoke(_app(cmd), ["t.csv"]).exit_code == 0
    assert seen == [("t.csv", TraceOptions())]


def test_help_lists_each_chosen_option_with_its_help() -> None:
    @trace_options()
    def cmd(trace: str, reading: TraceOptions = AS_GIVEN) -> None:
        """Read a trace."""

    text = runner.invoke(_app(cmd), ["--help"], env={"COLUMNS": "200"}).output
    for flag in ("--format", "-f", "--map", "--time-unit", "--sort", "--lenient"):
        assert flag in text
    assert "--drop-failed" in text
    assert "Keep a Parquet copy" in text


def test_a_subset_leaves_the_rest_at_their_defaults() -> None:
    seen: list[TraceOptions] = []

    @trace_options("format")
    def cmd(strict: bool = False, reading: TraceOptions = AS_GIVEN) -> None:
        seen.append(reading)

    assert runner.invoke(_app(cmd), ["--format", "azure", "--strict"]).exit_code == 0
    assert seen == [TraceOptions(format="azure")]  # --strict is the command's own option
    assert runner.invoke(_app(cmd), ["--lenient"]).exit_code == 2


def test_misdeclared_commands_fail_at_import() -> None:
    with pytest.raises(TypeError, match="one parameter annotated TraceOptions"):

        @trace_options()
        def no_slot(trace: str) -> None: ...

    with pytest.raises(TypeError, match=r"already has parameters named \['sort'\]"):

        @trace_options("format", "sort")
        def clash(sort: bool = False, reading: TraceOptions = AS_GIVEN) -> None: ...

    with pytest.raises(TypeError, match=r"unknown trace options \['strict'\]"):
        trace_options("format", "strict")  # type: ignore[arg-type]


def test_every_field_is_a_typer_option() -> None:
    assert [f.name for f in fields(TraceOptions)] == [
        "format", "map", "time_unit", "sort", "lenient", "drop_failed", "cache",
    ]  # fmt: skip


def test_load_reads_and_checks_the_time_unit() -> None:
    table, report = TraceOptions(drop_failed=True).load("sample")
    assert table.height == report.rows_kept > 0
    with pytest.raises(InputError, match="--time-unit 'h' is not one of s, ms"):
        TraceOptions(time_unit="h").load("sample")
