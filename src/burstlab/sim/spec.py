"""``engine.yaml``: what replica to simulate, in one file a person can read and edit.

Every field has a default, so an empty file (or no file) is the documented
default preset: one Llama-2-7B replica on an A100-80G, vLLM-like scheduler
settings, the roofline cost model, and as many KV blocks as vLLM would find at
90% memory utilisation (7,449 blocks of 16 tokens)::

    gpu: A100-80G              # preset name, or a mapping of GPU fields
    model: Llama-2-7B          # preset name, or a mapping of model fields
    tp: 1
    gpu_memory_utilization: 0.9
    kv_utilization: 0.3        # optional: use 30% of the derived KV blocks
    cost:                      # optional; default: the roofline of gpu x model
      kind: roofline           # or: kind: linear, c0: ..., c_prefill: ... (from calibrate)
      mfu: 0.6
    cluster: {replicas: 1, router: round_robin}   # or least_outstanding, kv_aware
    pd: {prefill: 1, decode: 3, link_bandwidth: 25e9}   # optional: disaggregated pools
    llamacpp: {slots: 4, ctx: 4096, n_batch: 2048}     # optional: llama.cpp's server instead
    engine:                    # scheduler and memory (EngineConfig); num_blocks derived
      max_num_seqs: 256
      max_batched_tokens: 8192
      scheduler: fcfs          # fcfs | srf | lrf
      preemption: recompute    # recompute | swap
      queue_cap: 1000
      queue_timeout_s: 60      # failure limits, all optional (EngineConfig)
      client_timeout_s: 600
      max_preemptions: 3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from burstlab.core.errors import InputError, invalid
from burstlab.sim import presets
from burstlab.sim.cluster import Cluster, ClusterConfig
from burstlab.sim.cost import GPU, CostSpec, ModelSpec, Roofline, kv_blocks, kv_bytes_per_token
from burstlab.sim.engine import Engine, EngineConfig
from burstlab.sim.pd import PDCluster, PDConfig


class LlamaCpp(BaseModel):
    """llama.cpp's ``llama-server`` scheduler, as an engine kind.

    ``slots`` parallel sequences (``-np``) share ``ctx`` tokens of context (``-c``):
    each slot owns ``ctx / slots`` of it (no paging), or, ``unified``
    (``--kv-unified``), all slots draw on the whole of it. A request waits while
    every slot is busy (first come, first served); one whose prompt plus output
    exceeds a slot's context is refused at arrival, as the server refuses it.
    Prompts are processed in chunks of at most ``n_batch`` tokens (``-b``) in the
    same decode calls as the other slots' next tokens (continuous batching).
    Prefix-cache hits are not modelled: a request prefills its whole prompt.
    """

    model_config = ConfigDict(extra="forbid")

    slots: int = Field(4, ge=1)
    ctx: int = Field(4096, ge=1)
    n_batch: int = Field(2048, ge=1)
    unified: bool = False

    def engine(self) -> dict[str, Any]:
        """The scheduler settings (EngineConfig fields) this kind means."""
        per_slot = self.ctx if self.unified else self.ctx // self.slots
        if per_slot < 1:
            raise InputError(f"llamacpp: ctx {self.ctx} gives no context to {self.slots} slots")
        paged = {"block_size": 16, "num_blocks": max(1, self.ctx // 16)}
        # Without unified KV each slot is one block of its whole context: a running
        # request holds exactly one, so nothing is ever preempted.
        own = {"block_size": per_slot, "num_blocks": self.slots}
        return {
            "max_num_seqs": self.slots,
            "max_batched_tokens": self.n_batch,
            "chunked_prefill": True,
            "scheduler": "fcfs",
            "max_model_len": per_slot,
            **(paged if self.unified else own),
        }


#: EngineConfig fields a ``llamacpp`` section decides.
LLAMACPP_FIELDS = frozenset(LlamaCpp().engine())


class EngineSpec(BaseModel):
    """A replica: hardware, model, cost model and scheduler settings."""

    model_config = ConfigDict(extra="forbid")

    gpu: str | GPU = "A100-80G"
    model: str | ModelSpec = "Llama-2-7B"
    tp: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    #: The share of the derived KV blocks the engine may use (0 < x <= 1), the
    #: BurstGPT demo's "KV cache utilisation": ``num_blocks`` becomes
    #: ``floor(derived x kv_utilization)``, at least 1. ``None``: all of them.
    #: A file gives this or ``engine.num_blocks`` (the count itself), not both.
    kv_utilization: float | None = Field(None, gt=0, le=1)
    cost: CostSpec | None = None
    engine: dict[str, Any] = Field(default_factory=dict)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    #: Prefill/decode disaggregation (pool sizes, KV link); replaces ``cluster``.
    pd: PDConfig | None = None
    #: A llama.cpp server instead of a vLLM-like engine (slots, context, batch).
    llamacpp: LlamaCpp | None = None

    @model_validator(mode="before")
    @classmethod
    def _roofline_of_this_replica(cls, data: Any) -> Any:
        """A ``cost: {kind: roofline, ...}`` without ``gpu``, ``model`` or ``tp`` is the
        roofline of this spec's hardware, as the default cost is: only its
        efficiencies (``mfu``, ``mbu``, ...) need be written. Its ``gpu`` and
        ``model`` may be preset names, as the spec's own are."""
        if not isinstance(data, dict) or not isinstance(data.get("cost"), dict):
            return data
        cost = dict(data["cost"])
        if cost.get("kind") != "roofline":
            return data
        fields = cls.model_fields
        gpu = cost.get("gpu", data.get("gpu", fields["gpu"].default))
        model = cost.get("model", data.get("model", fields["model"].default))
        cost["gpu"] = presets.gpu(gpu) if isinstance(gpu, str) else gpu
        cost["model"] = presets.model(model) if isinstance(model, str) else model
        cost.setdefault("tp", data.get("tp", fields["tp"].default))
        return {**data, "cost": cost}

    @model_validator(mode="after")
    def _one_block_count(self) -> EngineSpec:
        if self.kv_utilization is not None and "num_blocks" in self.engine:
            raise ValueError(
                "kv_utilization and engine.num_blocks both size the KV cache; give one"
            )
        if self.llamacpp is not None:
            both = sorted(LLAMACPP_FIELDS & set(self.engine))
            if both:
                raise ValueError(
                    f"llamacpp decides engine.{', engine.'.join(both)}; remove them or llamacpp"
                )
            if self.kv_utilization is not None:
                raise ValueError("llamacpp sizes its context itself (ctx); remove kv_utilization")
        return self

    def hardware(self) -> tuple[GPU, ModelSpec]:
        g = presets.gpu(self.gpu) if isinstance(self.gpu, str) else self.gpu
        m = presets.model(self.model) if isinstance(self.model, str) else self.model
        return g, m

    def derived_blocks(self) -> int:
        """The KV blocks (of ``engine.block_size`` tokens) the GPU holds for the model,
        at least 1: what vLLM finds after the weights at ``gpu_memory_utilization``
        (:func:`~burstlab.sim.cost.kv_blocks`)."""
        g, m = self.hardware()
        block = int(self.engine.get("block_size", 16))
        return max(
            1,
            kv_blocks(g, m, block, gpu_memory_utilization=self.gpu_memory_utilization, tp=self.tp),
        )

    def config(self) -> EngineConfig:
        """The scheduler settings, with the KV block count (the derived blocks, times
        ``kv_utilization`` when set) and bytes per token derived from the hardware
        unless given. A given ``engine.num_blocks`` wins over ``kv_utilization``
        (a spec copied with both, as a study's variants are)."""
        _, m = self.hardware()
        values = dict(self.engine)
        if self.llamacpp is not None:
            values.update(self.llamacpp.engine())
        if "num_blocks" not in values:
            derived = self.derived_blocks()
            share = self.kv_utilization
            values["num_blocks"] = derived if share is None else max(1, int(derived * share))
        values.setdefault("kv_bytes_per_token", kv_bytes_per_token(m, self.tp))
        try:
            return EngineConfig(**values)
        except ValidationError as exc:
            raise invalid(exc, prefix="engine.") from None

    def warnings(self) -> list[str]:
        """What to know before trusting this spec's results, one line each (the CLI
        prints them on stderr): an ``engine.num_blocks`` above the blocks the GPU
        holds for the model simulates memory that is not there."""
        out: list[str] = []
        blocks = self.engine.get("num_blocks")
        if isinstance(blocks, int) and blocks > (derived := self.derived_blocks()):
            g, m = self.hardware()
            out.append(
                f"engine.num_blocks {blocks:,} is more than the GPU holds: {derived:,} KV "
                f"blocks fit beside {m.name} on {g.name} x{self.tp} at gpu_memory_utilization "
                f"{self.gpu_memory_utilization:g}; the simulation assumes memory that is not there"
            )
        return out

    def engine_only(self) -> Engine:
        """One replica of this spec (the live server runs one)."""
        g, m = self.hardware()
        cost = self.cost or Roofline(gpu=g, model=m, tp=self.tp)
        return Engine(self.config(), cost)

    def build(self) -> Engine | Cluster | PDCluster:
        """The engine; a cluster of its replicas when ``cluster.replicas`` > 1; or
        disaggregated prefill and decode pools when ``pd`` is given."""
        engine = self.engine_only()
        if self.pd is not None:
            return PDCluster(engine, self.pd)
        return Cluster(engine, self.cluster) if self.cluster.replicas > 1 else engine

    def describe(self) -> dict[str, Any]:
        """The spec with everything resolved, for ``run.json``."""
        g, m = self.hardware()
        cost = self.cost or Roofline(gpu=g, model=m, tp=self.tp)
        return {
            "gpu": g.model_dump(),
            "model": m.model_dump(),
            "tp": self.tp,
            "kv_utilization": self.kv_utilization,
            "cost": cost.model_dump(),
            "engine": self.config().model_dump(),
            "cluster": self.cluster.model_dump(),
            "pd": self.pd.model_dump() if self.pd is not None else None,
            "llamacpp": self.llamacpp.model_dump() if self.llamacpp is not None else None,
        }


def load_spec(path: str | Path | None) -> EngineSpec:
    """The spec in ``path`` (YAML or JSON; ``None``: the default preset)."""
    if path is None:
        return EngineSpec()
    p = Path(path)
    try:
        raw = p.read_bytes()
        data = yaml.safe_load(raw.decode("utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read the engine file: {exc.strerror}", path=p) from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}",
            path=p,
            line=raw.count(b"\n", 0, exc.start) + 1,
            column=exc.start - raw.rfind(b"\n", 0, exc.start),
            hint="save the engine file as UTF-8",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        raise InputError(f"not valid YAML: {exc}", path=p, line=line, column=column) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError("an engine file is a mapping of fields", path=p)
    try:
        spec = EngineSpec.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, path=p, model=EngineSpec) from None
    spec.config()  # engine settings are checked now, with the file named
    return spec
