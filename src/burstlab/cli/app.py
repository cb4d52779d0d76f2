"""The typer application and its entry point.

Commands live in small modules beside this one and are registered here, in one
place. ``main`` turns every :class:`~burstlab.core.errors.BurstlabError` into a
one-line ``error: ...`` message on stderr with exit status 2, so bad input never
shows a Python traceback (``--debug`` shows it).
"""

from __future__ import annotations

import sys

import typer

from burstlab.core.errors import BurstlabError

app = typer.Typer(
    name="burstlab",
    help="LLM serving workloads from real traces: read, analyze, generate, benchmark, serve, "
    "simulate, forecast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
trace_app = typer.Typer(help="Inspect traces.", no_args_is_help=True)
app.add_typer(trace_app, name="trace")

_DEBUG = {"on": False}


def _version_callback(value: bool) -> None:
    if value:
        from burstlab.core.version import __version__

        typer.echo(f"burstlab {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(  # noqa: ARG001 - acted on by its eager callback
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    _DEBUG["on"] = debug


def _register() -> None:
    from burstlab.cli import (
        analyze_cmd,
        bench_cmd,
        calibrate_cmd,
        demo,
        experiment_cmd,
        forecast_cmd,
        generate_cmd,
        plan_cmd,
        report_cmd,
        serve_cmd,
        simulate_cmd,
        trace_cmds,
    )
    from burstlab.cli import fetch as fetch_cmd

    trace_app.command("info")(trace_cmds.info)
    trace_app.command("convert")(trace_cmds.convert)
    trace_app.command("schema")(trace_cmds.schema)
    app.command("demo")(demo.demo)
    app.command("analyze")(analyze_cmd.analyze)
    app.command("fit")(generate_cmd.fit)
    app.command("generate")(generate_cmd.generate)
    app.command("fetch")(fetch_cmd.fetch)
    app.command("bench")(bench_cmd.bench)
    app.command("report")(report_cmd.report)
    app.command("serve")(serve_cmd.serve)
    app.command("simulate")(simulate_cmd.simulate)
    app.command("experiment")(experiment_cmd.experiment)
    app.command("calibrate")(calibrate_cmd.calibrate)
    app.command("forecast")(forecast_cmd.forecast)
    app.command("plan")(plan_cmd.plan)


_register()


def main() -> None:
    """Console-script entry point: run the app, mapping user errors to exit 2.

    Usage errors (unknown option, missing argument) are typer's: exit 2 with
    its message. Interrupts exit 130.
    """
    try:
        app()
    except BurstlabError as exc:
        if _DEBUG["on"]:
            raise
        _print_error(exc)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)


def _print_error(exc: BurstlabError) -> None:
    sys.stderr.write(f"error: {_one_line(exc.message)}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {_one_line(exc.hint)}\n")


def _one_line(text: str) -> str:
    """Strip control characters so hostile input cannot drive the terminal."""
    return "".join(ch if ch.isprintable() else " " for ch in text)
