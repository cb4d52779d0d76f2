"""The simulator-timed server with a third-party client (the ``openai`` package) and
with burstlab's own bench: tokens at simulated times, refusals as 429."""

from __future__ import annotations

from pathlib import Path

import pytest

from burstlab.bench.run import BenchConfig, bench
from burstlab.server.engine import make_engine_app
from burstlab.server.hosting import serve_in_thread
from burstlab.sim.engine import Engine
from burstlab.sim.spec import EngineSpec
from support.frames import constant_rate

openai = pytest.importorskip("openai")


def engine(**cfg: object) -> Engine:
    spec = EngineSpec(engine=dict(cfg))
    return spec.build()


def test_openai_client_streams_from_the_engine() -> None:
    with serve_in_thread(make_engine_app(engine(), model="sim", time_scale=2.0)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == ["sim"]
        stream = client.completions.create(
            model="sim", prompt="hello " * 200, max_tokens=12, stream=True,
            extra_body={"ignore_eos": True},
        )  # fmt: skip
        texts = [c.choices[0].text for c in stream if c.choices]
        assert len([t for t in texts if t]) == 12
        chat = client.chat.completions.create(
            model="sim",
            messages=[{"role": "user", "content": "hi " * 50}],
            max_completion_tokens=7,
            extra_body={"ignore_eos": True},
        )
        assert chat.usage is not None
        assert chat.usage.completion_tokens == 7
        assert chat.usage.prompt_tokens == 50


@pytest.mark.slow
def test_bench_sees_the_engine_queue_and_refusals(tmp_path: Path) -> None:
    app = make_engine_app(engine(max_num_seqs=2, queue_cap=3), time_scale=1.0)
    with serve_in_thread(app) as url:
        result = bench(
            constant_rate(30, 60.0, output=40, input_tokens=500),
            BenchConfig(url=url, backend="vllm"),
            tmp_path / "run",
        )
    s = result.summary
    assert s.counts.ok + s.counts.failed == 30
    assert s.failures_by_kind.get("http_429", 0) > 0
    # two run at a time: the rest queue, so TTFT grows far past one 500-token prefill (~40 ms)
    assert s.metrics["ttft_s"].p50 > 0.2
    assert s.metrics["tpot_s"].p50 > 0.005


def test_models_and_tokenize_report_the_engines_context_limit() -> None:
    """A llama.cpp engine's slot context is the limit it refuses requests beyond, and
    the server says so where vLLM does (``max_model_len``)."""
    import urllib.request

    import orjson

    spec = EngineSpec(llamacpp={"slots": 2, "ctx": 2048})
    with serve_in_thread(make_engine_app(spec.engine_only(), model="sim")) as url:
        with urllib.request.urlopen(url + "/v1/models") as resp:
            models = orjson.loads(resp.read())
        req = urllib.request.Request(
            url + "/tokenize",
            data=orjson.dumps({"prompt": "a b c"}),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req) as resp:
            tokenized = orjson.loads(resp.read())
    assert models["data"][0]["max_model_len"] == 1024
    assert tokenized["max_model_len"] == 1024
