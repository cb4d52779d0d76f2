"""``burstlab calibrate RUN_DIR -o engine.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from burstlab.cli.output import Force


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
    force: Force = False,
) -> None:
    """Fit the simulator's linear cost model to a real benchmark run and write an
    engine.yaml that uses it (least squares of per-request TTFT and TPOT on the
    batch each request met).

    Example: burstlab calibrate runs/a -o engine.yaml
    """
    import yaml

    from burstlab.core.files import atomic_write, refuse_overwrite
    from burstlab.results.records import load_records
    from burstlab.sim.calibrate import calibrate as fit
    from burstlab.sim.spec import EngineSpec

    refuse_overwrite(out, force=force)
    fitted, quality = fit(load_records(run_dir))
    spec = EngineSpec(gpu=gpu, model=model, cost=fitted)
    spec.config()  # the presets exist
    text = yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=False), sort_keys=False)
    header = (
        f"# calibrated by burstlab from {run_dir} ({quality['samples']} samples; median "
        f"relative error TTFT {quality['ttft_median_rel_error']:.1%}, "
        f"TPOT {quality['tpot_median_rel_error']:.1%})\n"
    )
    atomic_write(out, (header + text).encode())
    c = fitted
    typer.echo(
        f"iteration_s = {c.c0:.4g} + {c.c_prefill:.4g}*prefill_tokens + {c.c_attn:.4g}*prefill_attn"
        f" + {c.c_decode:.4g}*decode_seqs + {c.c_ctx:.4g}*decode_ctx"
    )
    typer.echo(
        f"fit on {quality['samples']} samples: median relative error TTFT "
        f"{quality['ttft_median_rel_error']:.1%}, TPOT {quality['tpot_median_rel_error']:.1%}"
    )
    typer.echo(f"wrote {out}")
