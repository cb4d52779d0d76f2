"""``model.json.holdout.html`` for ``burstlab fit --holdout``: statistics and two figures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from burstlab.report import drawing
from burstlab.report.page import write_page

if TYPE_CHECKING:
    from burstlab.workload.fidelity import Fidelity, Stat
    from burstlab.workload.holdout import Holdout

COLORS = {
    "held out": "black",
    "fitted part": "grey",
    "multiscale": "tab:blue",
    "window-gamma": "tab:orange",
}


def idc_curves(check: Holdout) -> bytes | None:
    """IDC against bin width: the held-out part and each model's mean over its paths."""
    if not check.curve_widths_s:
        return None
    curves = {
        name: np.array([np.nan if v is None or v <= 0 else v for v in values])
        for name, values in check.curves.items()
    }
    if not any(np.isfinite(y).any() for y in curves.values()):
        return None
    fig, ((ax,),) = drawing.grid(1, 1, height=3.6)
    widths = np.asarray(check.curve_widths_s)
    for name, y in curves.items():
        style = "--" if name == "fitted part" else "o-"
        ax.plot(widths, y, style, color=COLORS.get(name), label=name, ms=3)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":", label="Poisson")
    ax.set(xscale="log", yscale="log", xlabel="bin width (s)", ylabel="index of dispersion")
    ax.legend(fontsize=8)
    return drawing.to_png(fig)


def gap_cdfs(check: Holdout) -> bytes | None:
    """CDF of gaps over their mean: the held-out part and one path of each model."""
    if not any(q and max(q) > 0 for q in check.gap_quantiles.values()):
        return None
    fig, ((ax,),) = drawing.grid(1, 1, height=3.4)
    for name, q in check.gap_quantiles.items():
        if q and max(q) > 0:
            x = np.maximum(np.asarray(q), 1e-4)
            ax.step(x, np.linspace(0, 1, x.size), where="post", color=COLORS.get(name), label=name)
    ax.set(xscale="log", xlabel="gap / mean gap (gaps below 1e-4 drawn at 1e-4)", ylabel="CDF")
    ax.legend(fontsize=8)
    return drawing.to_png(fig)


def _pick(f: Fidelity, key: str) -> Stat:
    return f.idc[key.removeprefix("idc:")] if key.startswith("idc:") else getattr(f, key)


def render_holdout(path: str | Path, check: Holdout, *, source: str) -> Path:
    """Write the out-of-sample fidelity page for ``check`` to ``path``."""
    first = next(iter(check.models.values()))
    rows = [("mean rate (req/s)", "mean_rps"), ("CV of gaps", "cv")]
    rows += [(f"IDC, {k} bins", f"idc:{k}") for k in first.idc]
    rows += [("KS of gaps", "ks_gaps"), ("KS of per-minute rate", "ks_minute_rate")]
    notes = [
        f"IDC, {k} bins: {s.note}" for k, s in first.idc.items() if s.source is None and s.note
    ]
    made = [
        (
            "Index of dispersion against bin width (trace time, on the source's grid): the "
            "held-out part, the part the models were fitted on (dashed: where the two parts "
            "differ, no model fitted on one can know the other), and each model's mean over "
            "its paths; a Poisson process reads 1",
            idc_curves(check),
        ),
        (
            "Gaps over their mean: the held-out part and one generated path per model",
            gap_cdfs(check),
        ),
    ]
    figures = [(c, uri) for c, png in made if (uri := drawing.data_uri(png)) is not None]
    return write_page(
        path, "holdout.html.j2", check=check, first=first, rows=rows, pick=_pick,
        notes=notes, figures=figures, source=source,
    )  # fmt: skip
