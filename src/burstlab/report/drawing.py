"""The matplotlib machinery every report figure shares: axes outside pyplot, PNG
bytes, ``data:`` URIs, a legend above the axes, and thinning of scatter points.

Figures are built without pyplot, so matplotlib runs headless with no global
state; each figure function returns PNG bytes (or ``None`` when there is nothing
to draw) that a page inlines with :func:`data_uri`.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

#: At most this many points in a scatter plot; more are thinned evenly (deterministic).
MAX_POINTS = 20_000


def grid(
    rows: int = 1, cols: int = 1, *, height: float = 3.2, width: float = 9.0
) -> tuple[Figure, np.ndarray]:
    """A ``rows`` x ``cols`` figure outside pyplot; axes as a 2-D array.
    ``height`` is inches per row, ``width`` inches in all."""
    fig = Figure(figsize=(width, height * rows))
    return fig, fig.subplots(rows, cols, squeeze=False)


def to_png(fig: Figure) -> bytes:
    """``fig`` laid out tightly as PNG bytes (90 dpi: sharp enough, small inline)."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def data_uri(png: bytes | None) -> str | None:
    """PNG bytes as a ``data:`` URI to inline in a page (``None`` passes through)."""
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode()


def thin(n: int) -> slice:
    """Every k-th of ``n`` points, so at most :data:`MAX_POINTS` are drawn."""
    return slice(None, None, max(1, math.ceil(n / MAX_POINTS)))


def legend_above(ax: Any, handles: list[Any], labels: list[str]) -> None:
    """One row of legend entries above ``ax``, outside the data."""
    ax.legend(
        handles,
        labels,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncols=min(len(labels), 6),
        fontsize=8,
        frameon=False,
        markerscale=3,
        handlelength=1.6,
    )


def log_scale_fits(values: np.ndarray, ratio: float = 50.0) -> bool:
    """Whether ``values`` (all positive) spread over more than ``ratio`` between their
    1st and 99th percentiles, so a log axis reads better."""
    positive = values[values > 0]
    if positive.size < 2 or positive.size < values.size:
        return False
    lo, hi = np.percentile(positive, [1, 99])
    return bool(hi / lo > ratio)
