"""Named GPUs and models for the cost model, filled in one place.

GPU figures are datasheet peaks: dense (no 2:4 sparsity) BF16/FP16 tensor-core
FLOP/s, memory bandwidth in bytes/s, and memory in bytes as ``nvidia-smi``
reports it (what vLLM's ``gpu_memory_utilization`` multiplies). ``link_bw`` is
the GPU-to-GPU bandwidth in one direction (half the bidirectional NVLink figure).

Model figures are the Hugging Face ``config.json`` values of the
``meta-llama`` checkpoints; parameter counts are exact (the tests recompute them
from the architecture).
"""

from __future__ import annotations

from typing import Any, TypeVar

from burstlab.core.errors import InputError
from burstlab.sim.cost import GPU, ModelSpec, Roofline

MiB = 1 << 20

_T = TypeVar("_T")

GPUS: dict[str, GPU] = {
    # NVIDIA A100 datasheet (SXM4 80GB): 312 TFLOP/s BF16 dense (624 with sparsity),
    # 2,039 GB/s HBM2e, NVLink 600 GB/s bidirectional; nvidia-smi: 81920 MiB.
    "A100-80G": GPU(
        name="A100-80G", flops=312e12, mem_bw=2.039e12, memory=81920 * MiB, link_bw=300e9
    ),
    # NVIDIA H100 SXM5 80GB: 989.4 TFLOP/s BF16 dense (1,979 with sparsity),
    # 3.35 TB/s HBM3, NVLink 900 GB/s bidirectional; nvidia-smi: 81559 MiB.
    "H100-80G": GPU(
        name="H100-80G", flops=989.4e12, mem_bw=3.35e12, memory=81559 * MiB, link_bw=450e9
    ),
    # NVIDIA A800 SXM4 80GB: the A100 with NVLink cut to 400 GB/s bidirectional
    # for export rules; compute and HBM2e unchanged (nvidia-smi: 81920 MiB).
    "A800-80G": GPU(
        name="A800-80G", flops=312e12, mem_bw=2.039e12, memory=81920 * MiB, link_bw=200e9
    ),
    # NVIDIA RTX A6000: 154.8 TFLOP/s FP16/BF16 tensor dense with FP32 accumulate
    # (309.7 with sparsity; 38.7 TFLOP/s non-tensor FP32), 768 GB/s GDDR6, 48 GB
    # (nvidia-smi: 49140 MiB). Assumes PCIe 4.0 x16 between GPUs (32 GB/s one way);
    # a two-card NVLink bridge gives 56 GB/s.
    "A6000": GPU(name="A6000", flops=154.8e12, mem_bw=768e9, memory=49140 * MiB, link_bw=32e9),
}

MODELS: dict[str, ModelSpec] = {
    # meta-llama/Llama-2-7b-hf
    "Llama-2-7B": ModelSpec(
        name="Llama-2-7B",
        layers=32,
        hidden=4096,
        heads=32,
        kv_heads=32,
        head_dim=128,
        intermediate=11008,
        vocab=32000,
        params=6_738_415_616,
    ),
    # meta-llama/Llama-2-13b-hf
    "Llama-2-13B": ModelSpec(
        name="Llama-2-13B",
        layers=40,
        hidden=5120,
        heads=40,
        kv_heads=40,
        head_dim=128,
        intermediate=13824,
        vocab=32000,
        params=13_015_864_320,
    ),
    # meta-llama/Llama-2-70b-hf (grouped-query attention, 8 KV heads)
    "Llama-2-70B": ModelSpec(
        name="Llama-2-70B",
        layers=80,
        hidden=8192,
        heads=64,
        kv_heads=8,
        head_dim=128,
        intermediate=28672,
        vocab=32000,
        params=68_976_648_192,
    ),
    # meta-llama/Meta-Llama-3-8B (grouped-query attention, 8 KV heads)
    "Llama-3-8B": ModelSpec(
        name="Llama-3-8B",
        layers=32,
        hidden=4096,
        heads=32,
        kv_heads=8,
        head_dim=128,
        intermediate=14336,
        vocab=128256,
        params=8_030_261_248,
    ),
}


def _lookup(kind: str, name: str, table: dict[str, _T]) -> _T:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table))
        raise InputError(f"unknown {kind} preset {name!r}; known: {known}") from None


def gpu(name: str) -> GPU:
    """The preset GPU called ``name``; :class:`InputError` listing the known ones."""
    return _lookup("GPU", name, GPUS)


def model(name: str) -> ModelSpec:
    """The preset model called ``name``; :class:`InputError` listing the known ones."""
    return _lookup("model", name, MODELS)


def roofline(gpu_name: str, model_name: str, **overrides: Any) -> Roofline:
    """A :class:`Roofline` for preset ``gpu_name`` and ``model_name``; ``overrides``
    set its other fields (``tp``, ``mfu``, ``overhead_s``, ...)."""
    return Roofline(gpu=gpu(gpu_name), model=model(model_name), **overrides)
