"""A run's manifest (``run.json``): what ran, where, with which settings, and how it ended."""

from __future__ import annotations

import platform
import socket
import time
import uuid
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from burstlab.core.version import __version__
from burstlab.results.slo import SLO
from burstlab.results.summary import Counts

#: The manifest format this burstlab writes; version 1 had no ``version`` key.
#: Version 3 added ``cluster`` (a version-2 manifest reads as it is).
MANIFEST_VERSION = 3

Kind = Literal["bench", "simulate"]
#: ``running`` until the run ends; ``complete``; ``interrupted`` (stopped early by a
#: signal or a full disk, with its summary written); ``failed`` (an error ended it: no
#: summary, ``reason`` says why).
RunStatus = Literal["running", "complete", "interrupted", "failed"]


def run_versions(**extra: str) -> dict[str, str]:
    """The versions a run depends on: burstlab, Python, polars, and ``extra``."""
    return {
        "burstlab": __version__,
        "python": platform.python_version(),
        "polars": pl.__version__,
        **extra,
    }


class NodeClock(BaseModel):
    """One Ray node of a run: where it is, which actors ran there, and its clock
    against the driver's, in seconds. ``offset_s`` is the node's wall clock minus the
    driver's, from the probe with the shortest round trip (``rtt_s``), NTP style: it
    is right to within ``rtt_s / 2``. ``drift_s`` is the same offset measured after
    the run minus before. ``start_lag_s`` is how late its actors' first requests went
    out against their intended times (the largest, on the node's own clock)."""

    model_config = ConfigDict(extra="forbid")

    node: str
    node_id: str
    address: str
    hostname: str
    actors: list[int]
    offset_s: float
    rtt_s: float
    drift_s: float | None = None
    start_lag_s: float | None = None


class Cluster(BaseModel):
    """How a Ray run was laid out (``bench --executor ray``). ``address`` is the
    cluster joined (None: a local Ray). The driver sent ``t0`` (its wall clock plus
    each node's offset) ``lead_s`` before it; ``start_margin_s`` is the least time an
    actor had left when it arrived (negative: it arrived late). ``start_spread_s`` is
    how far apart the actors' first sends were against their intended times; the
    clocks themselves agree to within the largest ``rtt_s / 2``. ``lost_actors`` are
    the actors that died, whose unrecorded requests are records of their own
    (``error_subkind`` ``actor_lost``)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = None
    actors: int
    lead_s: float
    start_margin_s: float | None = None
    start_spread_s: float | None = None
    nodes: list[NodeClock]
    lost_actors: list[int] = Field(default_factory=list)


class Manifest(BaseModel):
    """Written before the first request and rewritten when the run ends.

    ``config`` is the bench configuration with every secret redacted, ``engine``
    the simulated engine as the user gave it; wall-clock times are Unix seconds,
    and ``t0_*_ns`` anchor the records' monotonic times to the wall clock.
    """

    model_config = ConfigDict(extra="forbid")

    version: int = MANIFEST_VERSION
    kind: Kind
    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: RunStatus = "running"
    #: Why the run stopped early or failed: ``sigint``, ``sigterm``, ``disk_full``,
    #: ``write_error``, or the error's message; None for a complete run.
    reason: str | None = None
    scheduled: int
    started_wall: float = Field(default_factory=time.time)
    ended_wall: float | None = None
    t0_wall_ns: int | None = None
    t0_perf_ns: int | None = None
    counts: Counts | None = None
    lost: int = 0
    slo: SLO | None = None
    config: dict[str, Any] | None = None
    forcing: dict[str, Any] | None = None
    prompt_mode: str | None = None
    engine: dict[str, Any] | None = None
    #: The Ray executor's placement and clock offsets (``bench --executor ray``).
    cluster: Cluster | None = None
    versions: dict[str, str] = Field(default_factory=run_versions)
    host: str = Field(default_factory=socket.gethostname)
    platform: str = Field(default_factory=platform.platform)
    argv: list[str] = Field(default_factory=list)


def upgrade_manifest(data: dict[str, Any]) -> dict[str, Any]:
    """A saved manifest of an older version in this version's shape (version 1: no
    ``version``; a simulation's had no ``run_id``; the SLO lived in ``config``)."""
    out = dict(data)
    if out.get("version") is None:
        out["version"] = MANIFEST_VERSION
        out.setdefault("run_id", "")
        config = out.get("config")
        if isinstance(config, dict) and isinstance(config.get("slo"), dict):
            out.setdefault("slo", config["slo"])
        out["versions"] = {k: str(v) for k, v in (out.get("versions") or {}).items()}
    return out
