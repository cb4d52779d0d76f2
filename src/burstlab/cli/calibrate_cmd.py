"""``burstlab calibrate RUN_DIR -o engine.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from burstlab.cli.output import Force
from burstlab.cli.steps import Quiet, Stages


def calibrate(
    run_dir: Annotated[
        Path, typer.Argument(help="A 'bench' run directory (or its records.jsonl).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="engine.yaml to write.")],
    gpu: Annotated[
        str, typer.Option("--gpu", help="GPU preset the run used (for KV sizing).")
    ] = "A100-80G",
    model: Annotated[
        str, typer.Option("--model", help="Model preset the run used (for KV sizing).")
    ] = "Llama-2-7B",
    slots: Annotated[
        int | None,
        typer.Option(
            "--slots",
            min=1,
            help="The run was on llama.cpp's llama-server with this many slots (-np): "
            "write a llamacpp engine.",
        ),
    ] = None,
    ctx: Annotated[
        int | None,
        typer.Option("--ctx", min=1, help="llama-server's context size (-c), with --slots."),
    ] = None,
    refine: Annotated[
        bool,
        typer.Option(
            "--refine/--no-refine",
            help="Refine the fit by simulating the run on the engine the file describes.",
        ),
    ] = True,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Fit the simulator's linear cost model to a real benchmark run and write an
    engine.yaml that uses it (least squares of per-request TTFT and TPOT on the
    batch each request met; the server's own prompt times where it reported them),
    then refine it by simulating the run itself on that engine. Refuses a run that
    cannot identify the coefficients.

    Example: burstlab calibrate runs/a -o engine.yaml;
    burstlab calibrate runs/llama -o llama.yaml --slots 4 --ctx 4096
    """
    import yaml

    from burstlab.core.errors import InputError
    from burstlab.core.files import atomic_write, refuse_overwrite
    from burstlab.results.records import load_records
    from burstlab.sim.calibrate import calibrate as fit
    from burstlab.sim.spec import EngineSpec, LlamaCpp

    if ctx is not None and slots is None:
        raise InputError("--ctx is llama-server's context size: give --slots too")
    refuse_overwrite(out, force=force)
    server = None if slots is None else LlamaCpp(slots=slots, ctx=ctx or LlamaCpp().ctx)
    engine = EngineSpec(gpu=gpu, model=model, llamacpp=server).config()  # the presets exist
    fitting = "fitting, then refining by simulating the run" if refine else "fitting"
    with Stages([f"reading {run_dir}", fitting], quiet=quiet) as stage:
        stage()
        records = load_records(run_dir)
        stage()
        fitted, quality = fit(records, engine if refine else None)
    spec = EngineSpec(gpu=gpu, model=model, cost=fitted, llamacpp=server)
    text = yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=False), sort_keys=False)
    simulated = ""
    if "simulated_ttft_median_rel_error" in quality:
        simulated = (
            f"; refined by simulating the run: median relative error TTFT "
            f"{quality['simulated_ttft_median_rel_error']:.1%}, "
            f"TPOT {quality['simulated_tpot_median_rel_error']:.1%}"
        )
    header = (
        f"# calibrated by burstlab from {run_dir} ({quality['samples']} samples; median "
        f"relative error TTFT {quality['ttft_median_rel_error']:.1%}, "
        f"TPOT {quality['tpot_median_rel_error']:.1%}{simulated})\n"
    )
    atomic_write(out, (header + text).encode())
    c = fitted
    typer.echo(
        f"iteration_s = {c.c0:.4g} + {c.c_prefill:.4g}*prefill_tokens + {c.c_attn:.4g}*prefill_attn"
        f" + {c.c_decode:.4g}*decode_seqs + {c.c_ctx:.4g}*decode_ctx"
    )
    typer.echo(
        f"least squares on {quality['samples']} samples: median relative error TTFT "
        f"{quality['ttft_median_rel_error']:.1%}, TPOT {quality['tpot_median_rel_error']:.1%}"
        f"{simulated}"
    )
    typer.echo(f"wrote {out}")
