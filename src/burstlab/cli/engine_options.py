"""The engine options a command takes over ``engine.yaml`` (``--scheduler``,
``--num-blocks``, ``--kv-utilization``), and the spec's warnings on stderr."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any

import typer

from burstlab.core.errors import InputError

if TYPE_CHECKING:
    from burstlab.sim.spec import EngineSpec

KvUtilization = Annotated[
    float | None,
    typer.Option(
        "--kv-utilization",
        help="Share of the derived KV blocks to use, in (0, 1]: 0.3 gives the engine 30% of "
        "what the GPU holds (overrides the file's kv_utilization and num_blocks).",
    ),
]


def with_overrides(
    spec: EngineSpec,
    *,
    scheduler: str | None = None,
    num_blocks: int | None = None,
    kv_utilization: float | None = None,
) -> EngineSpec:
    """``spec`` with the command line's engine options over the file's. ``--num-blocks``
    and ``--kv-utilization`` each replace whichever of the two the file sizes the
    cache with; a bad value is an :class:`InputError` naming its option."""
    if num_blocks is not None and kv_utilization is not None:
        raise InputError(
            "--num-blocks and --kv-utilization both size the KV cache; give one",
            field="--kv-utilization",
        )
    if kv_utilization is not None and not (
        math.isfinite(kv_utilization) and 0 < kv_utilization <= 1
    ):
        raise InputError(
            f"a share of the derived KV blocks, in (0, 1], not {kv_utilization:g}",
            field="--kv-utilization",
        )
    engine = dict(spec.engine)
    update: dict[str, Any] = {}
    options = {"scheduler": scheduler, "num_blocks": num_blocks}
    given = {k: v for k, v in options.items() if v is not None}
    engine.update(given)
    if num_blocks is not None:
        update["kv_utilization"] = None
    if kv_utilization is not None:
        engine.pop("num_blocks", None)
        update["kv_utilization"] = kv_utilization
    if not given and not update:
        return spec
    spec = spec.model_copy(update={**update, "engine": engine})
    try:
        spec.config()
    except InputError as exc:  # engine.num_blocks: ... is the option's fault
        for key in given:
            if exc.reason.startswith(f"engine.{key}: "):
                reason = exc.reason.removeprefix(f"engine.{key}: ")
                raise InputError(reason, field="--" + key.replace("_", "-")) from None
        raise
    return spec


def warn(spec: EngineSpec) -> None:
    """The spec's warnings (:meth:`EngineSpec.warnings`), one ``warning:`` line each on
    stderr, so stdout stays the command's own output."""
    for message in spec.warnings():
        typer.echo(f"warning: {message}", err=True)
