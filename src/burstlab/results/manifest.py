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
MANIFEST_VERSION = 2

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
