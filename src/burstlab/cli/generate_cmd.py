"""``burstlab generate TRACE -o WORKLOAD``: replay a window of a trace at any rate."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from burstlab.cli.choices import ForeignFormat, LogType
from burstlab.cli.output import Force
from burstlab.cli.reading import TraceOptions, trace_options
from burstlab.cli.steps import Quiet, Stages

if TYPE_CHECKING:
    import polars as pl

    from burstlab.workload.fidelity import Fidelity, Reference, Stat


class ArrivalOpt(StrEnum):
    """The arrival models a fitted model can sample."""

    multiscale = "multiscale"
    window_gamma = "window-gamma"


@trace_options("format", "map", "time_unit", "sort", "lenient", "cache")
def generate(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Workload file: .parquet, .csv, .jsonl (or any name with --to)."
        ),
    ],
    trace: Annotated[
        str | None,
        typer.Argument(
            help="Source trace (file or 'sample'), or a model.json from 'fit' "
            "(also accepted as --model model.json)."
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--start", help="Window start (90, 30m, 2h, 3d) from the trace's start."),
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="Window end (same units).")] = None,
    day: Annotated[
        int | None, typer.Option("--day", help="Calendar day N of the trace (0 = first).")
    ] = None,
    busiest: Annotated[
        str | None, typer.Option("--busiest", help="The densest window of this length, e.g. 30m.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Only this LLM (e.g. GPT-4); or, with no TRACE, a fitted model.json to sample.",
        ),
    ] = None,
    log_type: Annotated[
        LogType | None, typer.Option("--log-type", help="Only conversation or api.")
    ] = None,
    drop_failed: Annotated[
        bool, typer.Option("--drop-failed", help="Leave out failed requests.")
    ] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="At most N requests.")] = None,
    rps: Annotated[
        float | None, typer.Option("--rps", help="Scale time so the mean rate is exactly X req/s.")
    ] = None,
    speedup: Annotated[
        float | None, typer.Option("--speedup", help="Play K times as fast (2 = twice).")
    ] = None,
    to: Annotated[
        ForeignFormat | None,
        typer.Option(
            "--to",
            help="Foreign format: burstgpt (CSV); mooncake (AIPerf mooncake_trace JSONL, with "
            "session_id and delay for sessions); vllm-timed (vllm bench serve --dataset-name "
            "timed_trace); vllm-custom (--dataset-name custom: prompts, no timing); guidellm "
            "(prompts with prompt_tokens_count, output_tokens_count and relative_timestamp for "
            "its replay profile). Failed requests ask for 1 token and keep a failed field. "
            "README 'Replaying an export in other tools' has each tool's command line.",
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            help="vllm-custom, guidellm: make prompts exact under this tokenizer.json (or "
            "folder, or hub name; needs the tokenizers extra); without it a word is counted "
            "as a token.",
        ),
    ] = None,
    duration: Annotated[
        str | None, typer.Option("--duration", help="Model: how long a workload (e.g. 1h).")
    ] = None,
    burstiness: Annotated[
        float,
        typer.Option(
            "--burstiness",
            help="Model: divide every Gamma shape by this (2 = burstier at the same rate).",
        ),
    ] = 1.0,
    shape: Annotated[
        float | None,
        typer.Option("--shape", help="Model: one Gamma shape for the gaps inside the rate."),
    ] = None,
    length_cap: Annotated[
        int | None, typer.Option("--length-cap", help="Model: cap request/response tokens.")
    ] = None,
    arrivals: Annotated[
        ArrivalOpt | None,
        typer.Option(
            "--arrivals",
            help="Model: multiscale (default: rate moving at every time scale, fitted to the "
            "trace's burstiness from 1 s to hours) or window-gamma (the BurstGPT paper's "
            "per-window Gamma, for comparison).",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Model or --synthetic: random seed.")
    ] = 0,
    synthetic: Annotated[
        bool,
        typer.Option(
            "--synthetic",
            help="No TRACE: draw a multi-day trace with daily and weekly cycles plus noise "
            "(--duration, default 30d; --rps, default 1; --seed), e.g. to try 'forecast'.",
        ),
    ] = False,
    gamma: Annotated[
        str | None,
        typer.Option(
            "--gamma",
            help="No TRACE: Gamma inter-arrival gaps SHAPE,SCALE (scale in s; default 0.5,2 "
            "when only --zipf is given); with --duration, --rps, --seed, --length-cap.",
        ),
    ] = None,
    zipf: Annotated[
        float | None,
        typer.Option(
            "--zipf",
            help="No TRACE: Zipf exponent of request and response tokens (default 1.1 when "
            "only --gamma or --windows is given); lengths 1..--length-cap (default 1023).",
        ),
    ] = None,
    windows: Annotated[
        str | None,
        typer.Option(
            "--windows",
            help="No TRACE: take per-window Gamma rates and shapes from a model.json of 'fit'.",
        ),
    ] = None,
    pace: Annotated[
        str | None,
        typer.Option(
            "--pace",
            help="With --windows: play each window for this long (e.g. 60) instead of its "
            "real length, as BurstGPT-Perf steps through its tables.",
        ),
    ] = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="Each session turn's input includes the earlier "
            "turns' tokens (exercises prefix caching).",
        ),
    ] = False,
    force: Force = False,
    quiet: Quiet = False,
    reading: TraceOptions = TraceOptions(),
) -> None:
    """Replay a window of a trace at any rate, or sample a fitted model; report fidelity.

    Examples: burstlab generate sample --busiest 10m --rps 20 -o w.parquet;
    burstlab generate --model model.json --duration 1h --rps 50 -o w.parquet;
    burstlab generate --synthetic --duration 30d --rps 1 -o trace.parquet
    """
    import math

    import polars as pl
    from pydantic import ValidationError

    from burstlab.analyze.periodicity import clock_of
    from burstlab.core.errors import InputError, invalid
    from burstlab.core.files import refuse_overwrite
    from burstlab.core.units import parse_duration
    from burstlab.workload.fidelity import reference
    from burstlab.workload.model import load_model
    from burstlab.workload.replay import ReplaySpec, replay, speedup_for

    def replay_options() -> list[str]:
        """The options given that only a trace replay takes."""
        replay_only = {
            "--start": start,
            "--end": end,
            "--day": day,
            "--busiest": busiest,
            "--model": model,
            "--log-type": log_type,
            "--limit": limit,
        }
        return [name for name, value in replay_only.items() if value is not None]

    if gamma is not None or zipf is not None or windows is not None or pace is not None:
        flags = (
            ("TRACE", trace is not None), ("--drop-failed", drop_failed),
            ("--speedup", speedup is not None), ("--synthetic", synthetic),
            ("--burstiness", burstiness != 1), ("--shape", shape is not None),
            ("--history", history),
        )  # fmt: skip
        unused = [*replay_options(), *(name for name, on in flags if on)]
        with Stages(["drawing the workload", f"writing {out}"], quiet=quiet) as stage:
            _parametric(
                out, to, tokenizer, gamma=gamma, zipf=zipf, windows=windows, pace=pace,
                duration=duration, rps=rps, length_cap=length_cap, seed=seed, unused=unused,
                force=force, stage=stage,
            )  # fmt: skip
        return
    if synthetic:
        given = replay_options()
        if trace is not None or given or drop_failed or speedup is not None:
            what = ", ".join(given or ["TRACE" if trace is not None else "--speedup"])
            raise InputError(f"{what}: not with --synthetic (it draws its own trace)")
        with Stages(["drawing the trace", f"writing {out}"], quiet=quiet) as stage:
            _synthetic(
                out, to, duration or "30d", rps if rps is not None else 1.0, seed, force, stage
            )
        return
    if trace is None:
        if model is None or load_model(model) is None:
            raise InputError("give a TRACE, or a fitted model as TRACE or --model model.json")
        trace, model = model, None

    def seconds(text: str | None, option: str) -> float | None:
        return None if text is None else parse_duration(text, option=option)

    try:
        spec = ReplaySpec(
            start_s=seconds(start, "--start"), end_s=seconds(end, "--end"), day=day,
            busiest_s=seconds(busiest, "--busiest"), model=model, log_type=log_type,
            drop_failed=drop_failed, limit=limit, rps=rps, speedup=speedup,
        )  # fmt: skip
    except ValidationError as exc:
        raise invalid(exc, as_options=True) from None
    for name, value in (
        ("--burstiness", burstiness),
        ("--shape", shape),
        ("--length-cap", length_cap),
    ):
        if value is not None and not 0 < value < math.inf:
            raise InputError(f"{name} must be positive and finite, got {value}")
    fitted = load_model(trace)
    if fitted is not None:
        given = replay_options()
        if given or drop_failed:
            raise InputError(
                f"{', '.join(given or ['--drop-failed'])}: only for a trace, not for a fitted model"
            )
        target = (
            rps if rps is not None else (speedup * fitted.mean_rps if speedup is not None else None)
        )
        duration_s = seconds(duration, "--duration")
        if duration_s is not None and duration_s <= 0:
            raise InputError("--duration must be positive")
        refuse_overwrite(out, force=force)
        planned = ["sampling the model", "judging fidelity", f"writing {out}"]
        with Stages(planned, quiet=quiet) as stage:
            stage()
            workload = fitted.sample(
                duration_s=duration_s, rps=target, seed=seed, burstiness=burstiness,
                shape=shape, length_cap=length_cap, arrivals=arrivals.value if arrivals else None,
            )  # fmt: skip
            typer.echo(f"arrivals: {arrivals.value if arrivals else fitted.default_arrivals}")
            if workload.height < 2:
                raise InputError("the model produced fewer than 2 requests: raise --duration")
            scale = target / fitted.mean_rps if target is not None else 1.0
            _finish(
                workload, fitted.reference, scale, out, to, history=history,
                tokenizer=tokenizer, stage=stage,
            )  # fmt: skip
        return
    if (
        duration is not None or shape is not None or length_cap is not None
        or burstiness != 1 or arrivals is not None
    ):  # fmt: skip
        raise InputError(
            "--duration, --burstiness, --shape, --length-cap and --arrivals apply to a "
            "fitted model (see 'burstlab fit')"
        )
    refuse_overwrite(out, force=force)
    planned = [f"reading {trace}", "replaying", "judging fidelity", f"writing {out}"]
    with Stages(planned, quiet=quiet) as stage:
        stage()
        table, report = reading.load(trace)
        stage()
        offset, _ = clock_of(report)
        unscaled = replay(
            table, spec.model_copy(update={"rps": None, "speedup": None}), day_offset_s=offset
        )
        time_scale = speedup_for(unscaled, spec)
        workload = unscaled.with_columns(pl.col("arrival_s") / time_scale)
        _finish(
            workload, reference(unscaled), time_scale, out, to, history=history,
            tokenizer=tokenizer, stage=stage,
        )  # fmt: skip


def _parametric(
    out: Path,
    to: str | None,
    tokenizer: str | None,
    *,
    gamma: str | None,
    zipf: float | None,
    windows: str | None,
    pace: str | None,
    duration: str | None,
    rps: float | None,
    length_cap: int | None,
    seed: int,
    unused: list[str],
    force: bool,
    stage: Stages,
) -> None:
    """Write a Gamma/Zipf workload drawn from parameters alone (see
    :mod:`burstlab.workload.parametric`)."""
    from burstlab.core.errors import InputError
    from burstlab.core.files import refuse_overwrite
    from burstlab.core.units import parse_duration
    from burstlab.workload import parametric as pm
    from burstlab.workload.exports import export
    from burstlab.workload.model import load_model

    if unused:
        raise InputError(
            f"{', '.join(unused)}: not with --gamma, --zipf or --windows "
            "(they draw a workload from parameters alone)"
        )
    if pace is not None and windows is None:
        raise InputError("--pace steps through the windows of --windows model.json")
    duration_s = None if duration is None else parse_duration(duration, option="--duration")
    pace_s = None if pace is None else parse_duration(pace, option="--pace")
    shape_scale = pm.parse_gamma(gamma) if gamma is not None else None
    theta = pm.DEFAULT_ZIPF if zipf is None else zipf
    cap = pm.DEFAULT_MAX_TOKENS if length_cap is None else length_cap
    plan = None
    if windows is not None:
        if shape_scale is not None:
            raise InputError("--gamma and --windows cannot be combined: the windows set the gaps")
        fitted = load_model(windows)
        if fitted is None:
            raise InputError("not a model.json written by 'burstlab fit'", path=windows)
        table = fitted.window_gamma
        rows = [(w.rate_rps, w.shape, w.scale) for w in table.windows]
        plan = pm.windows_from_table(rows, table.window_s, pace_s=pace_s)
        played = sum(w.length_s for w in plan)
        arrivals = f"{len(plan):,} windows of {table.window_s:g} s from {windows}" + (
            f" at {pace_s:g} s each" if pace_s is not None else ""
        )
        if duration_s is not None and duration_s > played:
            arrivals += ", repeated"
    else:
        k, scale = shape_scale or pm.DEFAULT_GAMMA
        scale = 1.0 / (rps * k) if rps is not None and rps > 0 else scale
        arrivals = f"Gamma shape {k:g}, scale {scale:.4g} s"
    refuse_overwrite(out, force=force)
    stage()
    workload = pm.parametric_workload(
        duration_s=duration_s, gamma=shape_scale, zipf=theta, windows=plan,
        rps=rps, max_tokens=cap, seed=seed,
    )  # fmt: skip
    if workload.height == 0:
        raise InputError("no requests were drawn: raise --duration or --rps")
    span = duration_s if duration_s is not None else sum(w.length_s for w in plan or [])
    stage()
    path = export(workload, out, to, tokenizer=tokenizer)
    stage.close()
    say_failed_rewritten(workload, to)
    typer.echo(
        f"wrote {workload.height:,} requests over {span:g} s (mean "
        f"{workload.height / span:.4g} req/s; {arrivals}; Zipf {theta:g} lengths 1-{cap}; "
        f"seed {seed}) to {path}"
    )


def _synthetic(
    out: Path, to: str | None, duration: str, rps: float, seed: int, force: bool, stage: Stages
) -> None:
    """Write a seeded synthetic trace (see :mod:`burstlab.workload.synthetic`)."""
    from burstlab.core.errors import InputError
    from burstlab.core.files import refuse_overwrite
    from burstlab.core.units import parse_duration
    from burstlab.workload.exports import export
    from burstlab.workload.synthetic import synthetic_trace

    duration_s = parse_duration(duration, option="--duration")
    if not duration_s > 0:
        raise InputError("--duration must be positive")
    if not rps > 0:
        raise InputError(f"--rps must be positive, got {rps}")
    if duration_s * rps > 200_000_000:
        raise InputError(
            f"--duration x --rps asks for {duration_s * rps:,.0f} requests; at most 200M"
        )
    refuse_overwrite(out, force=force)
    stage()
    table = synthetic_trace(duration_s, rps=rps, seed=seed)
    stage()
    path = export(table, out, to)
    stage.close()
    say_failed_rewritten(table, to)
    typer.echo(
        f"wrote {table.height:,} requests over {duration_s / 86_400:.1f} days "
        f"(mean {rps:g} req/s, daily and weekly cycles, seed {seed}) to {path}"
    )


def _finish(
    workload: pl.DataFrame,
    ref: Reference,
    time_scale: float,
    out: Path,
    to: str | None,
    *,
    history: bool,
    tokenizer: str | None = None,
    stage: Stages,
) -> None:
    """Write the workload and its fidelity report (printed and saved beside it).

    Fidelity is judged before ``--history`` grows the inputs, since the source's
    lengths are per-turn tokens.
    """
    from burstlab.core.files import atomic_write
    from burstlab.workload.exports import export
    from burstlab.workload.fidelity import fidelity
    from burstlab.workload.sessions import with_history

    stage()
    result = fidelity(ref, workload, time_scale=time_scale)
    stage()
    path = export(with_history(workload) if history else workload, out, to, tokenizer=tokenizer)
    say_failed_rewritten(workload, to)
    side = atomic_write(
        out.with_name(out.name + ".fidelity.json"), result.model_dump_json(indent=2).encode()
    )
    stage.close()
    print_fidelity(
        {"workload": result}, f"fidelity (workload runs {time_scale:.4g}x the trace's speed)"
    )
    sessions = workload["session_id"].n_unique() - (workload["session_id"].null_count() > 0)
    grown = "; inputs include earlier turns (--history)" if history and sessions else ""
    typer.echo(
        f"wrote {workload.height:,} requests in {sessions:,} sessions to {path} "
        f"(fidelity: {side}){grown}"
    )


def say_failed_rewritten(table: pl.DataFrame, to: str | None) -> None:
    """One line when a foreign export asked for 1 token where the table has 0 (failures)."""
    from burstlab.workload.exports import FAILED_FIELD, zero_output_rows

    if to is None:
        return
    rewritten = zero_output_rows(table)
    if rewritten:
        field, readers = FAILED_FIELD[to]
        typer.echo(
            f"{rewritten:,} failed requests (0 output tokens) are written as requests for 1 "
            f"token, since servers reject 0; '{field}' marks them (not read by {readers})"
        )


def _idc_getter(key: str) -> Callable[[Fidelity], Stat]:
    return lambda f: f.idc[key]


def print_fidelity(columns: dict[str, Fidelity], title: str) -> None:
    """Fidelity reports side by side as a rich table: the source, then one column each."""
    from rich.console import Console
    from rich.table import Table

    def fmt(v: float | None) -> str:
        if v is None:
            return "-"
        return f"{int(v):,}" if float(v).is_integer() and abs(v) < 1e15 else f"{v:,.4g}"

    def cell(stat: Stat) -> str:
        if stat.workload is None:
            return "-"
        spread = f" [{fmt(stat.lo)}, {fmt(stat.hi)}]" if stat.lo is not None else ""
        return fmt(stat.workload) + spread

    first = next(iter(columns.values()))
    table = Table(title=f"{title}; trace time, {first.resolution} timestamps", title_justify="left")
    table.add_column("statistic")
    for name in ("source", *columns):
        table.add_column(name, justify="right")
    rows: list[tuple[str, Callable[[Fidelity], Stat]]] = [
        ("requests", lambda f: f.requests),
        ("mean rate (req/s)", lambda f: f.mean_rps),
        ("CV of gaps", lambda f: f.cv),
    ]
    rows += [(f"IDC, {k} bins", _idc_getter(k)) for k in first.idc]
    rows += [
        ("KS of gaps", lambda f: f.ks_gaps),
        ("KS of per-minute rate", lambda f: f.ks_minute_rate),
    ]
    notes = []
    for name, get in rows:
        stat = get(first)
        source = fmt(stat.source) if name[:2] != "KS" else ""
        if stat.note and stat.source is None:
            source = "not judged"
            notes.append(f"{name}: {stat.note}")
        table.add_row(name, source, *(cell(get(f)) for f in columns.values()))
    console = Console(highlight=False)
    console.print(table)
    for note in notes:
        console.print(f"  not judged: {note}")
    for name, f in columns.items():
        window = (
            f"per-window rate error {fmt(f.window_rate_error)} ({f.window_s:g}-s windows); "
            if f.window_rate_error is not None
            else ""
        )
        console.print(
            f"{name}: {window}length KS request {f.ks_input_tokens:.4f}, response "
            f"{f.ks_output_tokens:.4f}; {f.verdict}"
        )


@trace_options("format", "map", "time_unit", "sort", "lenient", "cache")
def fit(
    trace: Annotated[str, typer.Argument(help="Trace to fit (file or 'sample').")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write model.json.")],
    window: Annotated[
        str, typer.Option("--window", help="Window of the per-window Gamma (window-gamma).")
    ] = "20m",
    holdout: Annotated[
        float | None,
        typer.Option(
            "--holdout",
            help="Fit on the first 1-F of the span only, generate the rest's length and "
            "compare it with the held-out part (writes model.json.holdout.json).",
        ),
    ] = None,
    paths: Annotated[
        int, typer.Option("--paths", help="--holdout: generated paths averaged per model.")
    ] = 8,
    seed: Annotated[int, typer.Option("--seed", min=0, help="--holdout: first seed.")] = 0,
    force: Force = False,
    quiet: Quiet = False,
    reading: TraceOptions = TraceOptions(),
) -> None:
    """Fit a workload model: multi-scale arrivals (and the paper's per-window Gamma),
    class mix, lengths, failures, sessions.

    Examples: burstlab fit sample -o model.json;
    burstlab fit sample -o model.json --holdout 0.5
    """
    import math

    from burstlab.core.errors import InputError
    from burstlab.core.files import atomic_write, refuse_overwrite
    from burstlab.core.units import parse_duration
    from burstlab.workload.holdout import holdout as run_holdout
    from burstlab.workload.model import fit as fit_model
    from burstlab.workload.model import save_model

    window_s = parse_duration(window, option="--window")
    if not window_s > 0:
        raise InputError("--window must be positive")
    if holdout is not None and not (math.isfinite(holdout) and 0 < holdout < 1):
        raise InputError(f"--holdout must lie between 0 and 1 (exclusive), got {holdout}")
    if not 1 <= paths <= 1000:
        raise InputError(f"--paths must lie in 1..1000, got {paths}")
    refuse_overwrite(out, force=force)
    fitting = (
        "fitting"
        if holdout is None
        else f"fitting on the first {1 - holdout:.0%}, generating {paths} paths"
    )
    with Stages([f"reading {trace}", fitting, f"writing {out}"], quiet=quiet) as stage:
        stage()
        table, report = reading.load(trace)
        stage()
        if holdout is None:
            fitted = fit_model(table, window_s=window_s, source=report.source)
        else:
            try:
                fitted, check = run_holdout(
                    table, fraction=holdout, window_s=window_s, paths=paths, seed=seed,
                    source=report.source,
                )  # fmt: skip
            except ValueError as exc:
                raise InputError(f"--holdout {holdout}: {exc}") from None
        stage()
        save_model(fitted, out)
    kinds = ", ".join(
        f"{c.model or '-'}/{c.log_type or '-'} {c.share:.1%} ({c.request.kind})"
        for c in fitted.classes
    )
    arrivals = fitted.arrivals
    parts = []
    if arrivals is not None:
        parts.append(f"gap shape {arrivals.gap_shape:.3g}")
        if arrivals.tau_s:
            pairs = zip(arrivals.tau_s, arrivals.variance, strict=True)
            parts.append(
                "log-rate variance at " + ", ".join(f"{t:.3g} s: {v:.3g}" for t, v in pairs)
            )
        if arrivals.cluster_mean > 1:
            parts.append(
                f"bursts of {arrivals.cluster_mean:.3g} requests within "
                f"{arrivals.cluster_spread_s:.3g} s"
            )
        if arrivals.on_share < 1:
            parts.append(
                f"on {arrivals.on_share:.0%} of the time (switching every "
                f"~{arrivals.on_off_s:.3g} s, {arrivals.off_level:.0%} of the rate when off)"
            )
        if arrivals.profile is not None:
            parts.append("a daily cycle")
    typer.echo(
        f"fitted mean rate {fitted.mean_rps:.4g} req/s, multiscale arrivals "
        f"({'; '.join(parts) or 'Poisson'}); classes: {kinds}"
    )
    if holdout is not None:
        side = out.with_name(out.name + ".holdout.json")
        atomic_write(side, check.model_dump_json(indent=2).encode())
        print_fidelity(
            check.models,
            f"held out: the last {holdout:.0%} ({check.held_out_requests:,} requests over "
            f"{check.held_out_span_s:,.0f} s); generated at the fitted rate, mean of "
            f"{paths} paths [range]",
        )
        from burstlab.report.holdout import render_holdout

        page = render_holdout(
            out.with_name(out.name + ".holdout.html"), check, source=report.source
        )
        typer.echo(f"wrote {out}, {side} and {page}")
        return
    typer.echo(f"wrote {out}")
