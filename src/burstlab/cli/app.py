"""The typer application and its entry point.

Commands live in small modules beside this one and are registered here, in one
place. ``main`` turns every :class:`~burstlab.core.errors.BurstlabError`, and
every usage error of typer's (a bad option value, an unknown option), into a
one-line ``error: ...`` message on stderr with exit status 2, so bad input never
shows a Python traceback or a usage box (``--debug`` shows the traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer

from burstlab.cli.help_format import App
from burstlab.core.errors import BurstlabError

try:  # typer carries its own copy of click since 0.20 (about)
    from typer._click.exceptions import BadParameter, ClickException, MissingParameter
except ImportError:  # pragma: no cover - a typer built on click itself
    from click.exceptions import (  # type: ignore[assignment]
        BadParameter,
        ClickException,
        MissingParameter,
    )

app = App(
    name="burstlab",
    help="LLM serving workloads from real traces: read, analyze, generate, benchmark, serve, "
    "simulate, forecast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
trace_app = App(help="Inspect traces.", no_args_is_help=True)
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
        llamacpp_cmd,
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
    app.add_typer(llamacpp_cmd.engine_app, name="engine")


_register()


def main() -> None:
    """Console-script entry point: :func:`run` with the process's arguments."""
    sys.exit(run())


def run(argv: Sequence[str] | None = None) -> int:
    """Run the app on ``argv`` (default: the process's arguments); the exit status.

    Every error a user can cause prints one ``error: ...`` line (and perhaps a
    ``hint: ...`` line) on stderr and gives exit status 2: a
    :class:`~burstlab.core.errors.BurstlabError` from a command, and typer's own
    usage errors (an option value of the wrong type or out of range, an unknown
    option, a missing argument), which would otherwise print a usage box.
    ``--debug`` shows the traceback of a ``BurstlabError``. Interrupts exit 130.
    """
    _DEBUG["on"] = False
    try:
        result = app(args=argv, standalone_mode=False, prog_name="burstlab")
    except BurstlabError as exc:
        if _DEBUG["on"]:
            raise
        _print_error(exc)
        return 2
    except ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is printed already
            return exc.exit_code
        _print_error(_usage_error(exc))
        return exc.exit_code
    except typer.Abort:
        sys.stderr.write("aborted\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return result if isinstance(result, int) else 0


def _usage_error(exc: ClickException) -> BurstlabError:
    """typer's usage error as one line naming the option: ``--rps: <reason>``, with a
    hint naming the command's help."""
    ctx = getattr(exc, "ctx", None)
    hint = f"see '{ctx.command_path} --help'" if ctx is not None else None
    param = getattr(exc, "param", None)
    if isinstance(exc, BadParameter) and param is not None:
        name = _param_name(param)
        if isinstance(exc, MissingParameter):
            return BurstlabError(f"missing {param.param_type_name} {name}", hint=hint)
        return BurstlabError(f"{name}: {_sentence(exc.message)}", hint=hint)
    return BurstlabError(_sentence(exc.format_message()), hint=hint)


def _param_name(param: Any) -> str:
    """An option by its long name (``--out``), an argument by its name (``TRACE``)."""
    opts = list(getattr(param, "opts", None) or [])
    if getattr(param, "param_type_name", None) == "option" and opts:
        return str(next((o for o in opts if o.startswith("--")), opts[0]))
    return str(param.name or "argument").upper()


def _sentence(text: str) -> str:
    """``Input should be ...`` as this CLI's errors read: lower case, no final stop."""
    text = text.strip().rstrip(".").removeprefix("Value error, ")
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]
    return text


def _print_error(exc: BurstlabError) -> None:
    sys.stderr.write(f"error: {_one_line(exc.message)}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {_one_line(exc.hint)}\n")


def _one_line(text: str) -> str:
    """Strip control characters so hostile input cannot drive the terminal."""
    return "".join(ch if ch.isprintable() else " " for ch in text)
