"""engine.yaml's KV sizing: the derived block count, a target KV utilisation, and the
warning for more blocks than the GPU holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from burstlab.core.errors import InputError
from burstlab.sim.experiment import variants
from burstlab.sim.spec import EngineSpec, load_spec

#: vLLM 0.2's logged count for Llama-2-7B on an A100-80GB at 0.9 (the default spec).
DERIVED = 7449


def test_the_default_spec_uses_every_derived_block() -> None:
    spec = EngineSpec()
    assert spec.derived_blocks() == DERIVED
    assert spec.config().num_blocks == DERIVED
    assert spec.warnings() == []


@pytest.mark.parametrize(("share", "blocks"), [(0.3, 2234), (1.0, DERIVED), (0.5, 3724)])
def test_kv_utilization_takes_that_share_of_the_derived_blocks(share: float, blocks: int) -> None:
    spec = EngineSpec(kv_utilization=share)
    assert spec.config().num_blocks == blocks == int(DERIVED * share)
    assert spec.describe()["kv_utilization"] == share
    assert spec.describe()["engine"]["num_blocks"] == blocks


def test_kv_utilization_follows_the_hardware_and_block_size() -> None:
    spec = EngineSpec(gpu="H100-80G", model="Llama-3-8B", engine={"block_size": 32})
    half = spec.model_copy(update={"kv_utilization": 0.5})
    assert half.config().num_blocks == spec.derived_blocks() // 2
    assert half.config().block_size == 32


def test_kv_utilization_never_leaves_zero_blocks() -> None:
    assert EngineSpec(kv_utilization=1e-9).config().num_blocks == 1


def test_kv_utilization_in_engine_yaml(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("kv_utilization: 0.3\nengine:\n  scheduler: srf\n")
    spec = load_spec(path)
    assert spec.config().num_blocks == 2234
    # the kv study sweeps around the targeted size, not the whole GPU
    labels = [label for label, _ in variants("kv", spec)]
    assert "2234 blocks (x1)" in labels


@pytest.mark.parametrize("text", ["kv_utilization: 0\n", "kv_utilization: 1.5\n"])
def test_kv_utilization_outside_its_range_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match="kv_utilization"):
        load_spec(path)


def test_kv_utilization_and_num_blocks_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("kv_utilization: 0.3\nengine:\n  num_blocks: 100\n")
    with pytest.raises(InputError, match=r"kv_utilization and engine\.num_blocks"):
        load_spec(path)


def test_more_blocks_than_the_gpu_holds_warn_in_one_line() -> None:
    spec = EngineSpec(engine={"num_blocks": DERIVED + 1})
    (warning,) = spec.warnings()
    assert "\n" not in warning
    assert "7,450" in warning
    assert "7,449" in warning
    assert "Llama-2-7B" in warning
    assert "A100-80G" in warning
    # the simulation still runs with what was asked for
    assert spec.config().num_blocks == DERIVED + 1


def test_blocks_within_the_gpu_do_not_warn() -> None:
    assert EngineSpec(engine={"num_blocks": DERIVED}).warnings() == []
    assert EngineSpec(engine={"num_blocks": 100}).warnings() == []
    assert EngineSpec(kv_utilization=0.3).warnings() == []


def test_the_warning_counts_blocks_of_the_given_size_and_the_model() -> None:
    # 32-token blocks: the GPU holds half as many
    spec = EngineSpec(engine={"block_size": 32, "num_blocks": DERIVED // 2 + 1})
    assert len(spec.warnings()) == 1
    # a 70B model does not fit one A100 at all: any cache is more than it holds
    (warning,) = EngineSpec(model="Llama-2-70B", engine={"num_blocks": 2}).warnings()
    assert "Llama-2-70B" in warning


def test_a_llamacpp_server_is_slots_of_fixed_context() -> None:
    """Four slots of 1,024 tokens each: never more than four run, nothing is ever
    preempted, and a request longer than a slot is refused at its arrival."""
    import numpy as np

    from burstlab.sim.engine import OK, REJECTED

    spec = EngineSpec.model_validate(
        {
            "llamacpp": {"slots": 4, "ctx": 4096},
            "cost": {"kind": "linear", "c0": 0.01, "c_prefill": 5e-4, "c_decode": 2e-3},
        }
    )
    cfg = spec.config()
    assert (cfg.max_num_seqs, cfg.max_model_len, cfg.num_blocks) == (4, 1024, 4)
    rng = np.random.default_rng(0)
    n = 200
    arrivals = np.cumsum(rng.gamma(0.5, 0.2, n))
    prompts, outputs = rng.integers(10, 900, n), rng.integers(1, 300, n)
    result = spec.engine_only().run(arrivals, prompts, outputs)
    too_long = prompts + outputs > 1024
    assert too_long.any()
    assert (result.outcome[too_long] == REJECTED).all()
    assert (result.outcome[~too_long] == OK).all()
    assert result.preemptions.sum() == 0
    assert result.telemetry[:, 5].max() == 4  # running, at most the slots
    assert result.telemetry[:, 6].max() > 0  # and the others waited


def test_llamacpp_decides_its_scheduler_fields() -> None:
    with pytest.raises(Exception, match=r"llamacpp decides engine\.max_num_seqs"):
        EngineSpec.model_validate({"llamacpp": {"slots": 2}, "engine": {"max_num_seqs": 8}})
    unified = EngineSpec.model_validate({"llamacpp": {"slots": 2, "ctx": 4096, "unified": True}})
    assert unified.config().max_model_len == 4096
