"""``burstlab plan --forecast DIR (--capacity RPS | --engine FILE --slo ...) -o plan.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from burstlab.cli.output import Force
from burstlab.cli.steps import Quiet


def plan(
    forecast: Annotated[
        Path, typer.Option("--forecast", help="Directory written by 'burstlab forecast'.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="plan.json to write.")],
    capacity: Annotated[
        float | None,
        typer.Option("--capacity", help="Requests/s one instance serves within your SLO."),
    ] = None,
    engine: Annotated[
        Path | None,
        typer.Option(
            "--engine",
            help="engine.yaml: find one instance's capacity under --slo by simulation "
            "(instead of --capacity).",
        ),
    ] = None,
    slo: Annotated[
        str | None,
        typer.Option("--slo", help="With --engine: SLOs in seconds, e.g. ttft=2,e2e=60."),
    ] = None,
    attainment: Annotated[
        float,
        typer.Option("--attainment", help="With --engine: share of requests that must meet it."),
    ] = 0.99,
    workload: Annotated[
        str | None,
        typer.Option(
            "--workload",
            help="With --engine: the requests whose lengths the capacity search uses "
            "(default: the trace the forecast was made from).",
        ),
    ] = None,
    headroom: Annotated[
        float, typer.Option("--headroom", help="Extra capacity share above the forecast.")
    ] = 0.2,
    min_instances: Annotated[int, typer.Option("--min", help="Fewest instances.")] = 1,
    max_instances: Annotated[int | None, typer.Option("--max", help="Most instances.")] = None,
    startup: Annotated[
        str, typer.Option("--startup", help="How long a new instance boots (e.g. 90s, 2m).")
    ] = "2m",
    model: Annotated[
        str | None,
        typer.Option("--model", help="Forecast model to follow (default: the best by NMAE)."),
    ] = None,
    granularity: Annotated[
        str | None,
        typer.Option("--granularity", help="Forecast granularity (default: the primary one)."),
    ] = None,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Turn a request-count forecast into an instance-count schedule (plan.json) with
    headroom and bounds; 'burstlab simulate --autoscale plan.json' tests it.

    Examples: burstlab plan --forecast fc --capacity 2.5 -o plan.json;
    burstlab plan --forecast fc --engine engine.yaml --slo ttft=2,e2e=60 -o plan.json
    """
    import math

    from rich.console import Console

    from burstlab.cli.reading import TraceOptions
    from burstlab.cli.steps import Stages, StepBar
    from burstlab.core.errors import InputError
    from burstlab.core.files import refuse_overwrite, write_json
    from burstlab.core.units import parse_duration
    from burstlab.forecast import load_predictions
    from burstlab.forecast.plan import make_plan
    from burstlab.results.slo import parse_slo
    from burstlab.sim.autoscale import CAPACITY_TRIALS, capacity_rps
    from burstlab.sim.spec import load_spec

    console = Console(stderr=True)
    if (capacity is None) == (engine is None):
        raise InputError("give either --capacity or --engine (with --slo)", field="--capacity")
    if engine is not None and not slo:
        raise InputError("--engine needs --slo to know what capacity means", field="--slo")
    if not 0 < attainment <= 1:
        raise InputError("must be in (0, 1]", field="--attainment")
    if capacity is not None and not 0 < capacity < math.inf:
        raise InputError(f"must be a positive finite number, got {capacity}", field="--capacity")
    if not 0 <= headroom < math.inf:
        raise InputError(f"must be a finite share of 0 or more, got {headroom}", field="--headroom")
    if min_instances < 1:
        raise InputError(f"must be at least 1, got {min_instances}", field="--min")
    refuse_overwrite(out, force=force)
    step = parse_duration(granularity, option="--granularity") if granularity else None
    predictions = load_predictions(
        forecast, series="requests", model=model, granularity_s=int(step) if step else None
    )
    chosen_model = str(predictions["model"][0])
    objectives = parse_slo(slo) if slo else None
    if capacity is None:
        assert engine is not None
        assert objectives is not None
        source = workload or _trace_of(forecast)
        with Stages([f"reading {source}"], console, quiet=quiet) as stage:
            stage()
            table, _ = TraceOptions().load(source)
        capacity_bar = StepBar(
            "finding one instance's capacity", "simulations", console, quiet=quiet
        )
        with capacity_bar as bar:
            bar.start(CAPACITY_TRIALS)
            capacity = capacity_rps(
                load_spec(engine).engine_only(),
                table["input_tokens"].to_numpy(),
                table["output_tokens"].to_numpy(),
                objectives,
                attainment=attainment,
                progress=bar,
            )
        console.print(
            f"one instance serves {capacity:.3g} requests/s with {attainment:.0%} of "
            f"requests within the SLO (simulated, Poisson arrivals, lengths from {source})"
        )
    result = make_plan(
        predictions,
        capacity,
        headroom=headroom,
        min_instances=min_instances,
        max_instances=max_instances,
        startup_s=parse_duration(startup, option="--startup"),
        source={
            "forecast": str(forecast),
            "model": chosen_model,
            "granularity_s": float(predictions["granularity_s"][0]),
        },
    )
    if objectives is not None:
        result = result.model_copy(update={"slo": objectives})
    write_json(out, result.model_dump(mode="json"))
    counts = result.instances
    hours = sum(counts) * result.interval_s / 3600
    peak_hours = max(counts) * len(counts) * result.interval_s / 3600
    typer.echo(
        f"plan: {len(counts)} intervals of {result.interval_s:g} s from "
        f"{result.start_s:,.0f} s, following {chosen_model}; instances min {min(counts)}, "
        f"mean {sum(counts) / len(counts):.2f}, max {max(counts)}"
    )
    typer.echo(
        f"{hours:,.1f} instance-hours planned against {peak_hours:,.1f} for a static "
        f"peak-sized cluster; wrote {out}"
    )


def _trace_of(forecast: Path) -> str:
    """The trace a forecast directory was made from (its forecast.json)."""
    from burstlab.core.errors import InputError
    from burstlab.forecast.run import read_json

    trace = read_json(forecast / "forecast.json").get("source")
    if not isinstance(trace, str) or not trace or trace == "table":
        raise InputError(
            "the forecast does not name its trace; pass --workload", path=forecast / "forecast.json"
        )
    return trace
