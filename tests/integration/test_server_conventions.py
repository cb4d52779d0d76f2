"""The mock server speaks exact tokens and OpenAI's and vLLM's conventions, checked with a
peer client (the ``openai`` package) against a real server on 127.0.0.1: prompt counts equal
the client's own tokenizer's, unsupported parameters are refused by name, unknown models
get vLLM's 404, every error is JSON with ``param``, ``/metrics`` has vLLM's names."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from burstlab.core.errors import InputError
from burstlab.core.version import __version__
from burstlab.server.app import make_app
from burstlab.server.engine import make_engine_app
from burstlab.server.fixed import FixedTiming
from burstlab.server.hosting import serve_in_thread
from burstlab.server.lengths import OutputLengths, parse_output_lengths
from burstlab.server.openai import WORDS, apply_stop
from burstlab.server.tokens import FileTokenizer
from burstlab.sim.engine import Engine
from burstlab.sim.spec import EngineSpec
from support.tiny_tokenizer import write_tiny_tokenizer

openai = pytest.importorskip("openai")
tokenizers = pytest.importorskip("tokenizers")

MODEL = "m-conv"
FAST = FixedTiming(ttft=0.0, itl=0.0, eos=8)


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BPE tokenizer trained on a few sentences, with a BOS that encode() adds."""
    return write_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="module")
def peer(tokenizer_file: Path) -> Any:
    """The client's own copy of the tokenizer, loaded by the client side."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_file))


@pytest.fixture(scope="module")
def url(tokenizer_file: Path) -> Iterator[str]:
    app = make_app(FAST, model=MODEL, counter=FileTokenizer(tokenizer_file), max_body=4096)
    with serve_in_thread(app) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> Any:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def engine(**cfg: object) -> Engine:
    return EngineSpec(engine=dict(cfg)).build()


def call(
    url: str, method: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of one request."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return call(url, "POST", json.dumps(body).encode(), **{"Content-Type": "application/json"})


# --- exact prompt counts ----------------------------------------------------------------


def test_completion_prompt_counts_equal_the_peers_tokenizer(client: Any, peer: Any) -> None:
    prompts = ["the quick brown fox", "serving engines batch bursty requests", "zebra xylophone"]
    for prompt in prompts:
        got = client.completions.create(model=MODEL, prompt=prompt, max_tokens=2)
        assert got.usage.prompt_tokens == len(peer.encode(prompt).ids)
    # the count is the tokenizer's, not the words': BPE splits unseen words, a BOS is added
    assert len(peer.encode(prompts[2]).ids) != len(prompts[2].split())
    batch = client.completions.create(model=MODEL, prompt=prompts, max_tokens=2)
    assert batch.usage.prompt_tokens == sum(len(peer.encode(p).ids) for p in prompts)
    ids = client.completions.create(model=MODEL, prompt=[5, 6, 7, 8, 9], max_tokens=2)
    assert ids.usage.prompt_tokens == 5


def test_chat_prompt_counts_the_contents_without_template(client: Any, peer: Any) -> None:
    messages = [
        {"role": "system", "content": "decode writes one token at a time"},
        {"role": "user", "content": "why is prefill quick?"},
    ]
    for stream in (False, True):
        extra = {"stream_options": {"include_usage": True}} if stream else {}
        got = client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=3, stream=stream, **extra
        )
        usage = got.usage if not stream else [c for c in got if c.usage][-1].usage
        want = sum(len(peer.encode(m["content"], add_special_tokens=False).ids) for m in messages)
        assert usage.prompt_tokens == want


def test_models_state_how_tokens_are_counted(url: str, tokenizer_file: Path) -> None:
    status, body = call(url + "/v1/models", "GET")
    assert status == 200
    assert body["data"][0]["id"] == MODEL
    assert "tokenizer.json" in body["data"][0]["token_count"]
    with serve_in_thread(make_app(FAST, model="words")) as plain:
        _, words = call(plain + "/v1/models", "GET")
    assert words["data"][0]["token_count"].startswith("whitespace-words")


def test_engine_is_timed_on_exact_counts(tokenizer_file: Path, peer: Any) -> None:
    app = make_engine_app(
        engine(), model="sim", time_scale=50.0, counter=FileTokenizer(tokenizer_file)
    )
    prompt = "prefill reads the prompt " * 20
    with serve_in_thread(app) as base:
        cli = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        got = cli.completions.create(
            model="sim", prompt=prompt, max_tokens=3, extra_body={"ignore_eos": True}
        )
        metrics = _scrape(base)
    exact = len(peer.encode(prompt).ids)
    assert got.usage.prompt_tokens == exact
    assert metrics["vllm:prompt_tokens_total"][(("model_name", "sim"),)] == exact


def test_tokenize_and_version(url: str, peer: Any) -> None:
    prompt = "the lazy dog streams tokens"
    status, body = post(url + "/tokenize", {"model": MODEL, "prompt": prompt})
    assert status == 200
    assert body == {"count": len(peer.encode(prompt).ids), "max_model_len": None,
                    "tokens": peer.encode(prompt).ids}  # fmt: skip
    _, bare = post(url + "/tokenize", {"prompt": prompt, "add_special_tokens": False})
    assert bare["tokens"] == peer.encode(prompt, add_special_tokens=False).ids
    _, chat = post(url + "/tokenize", {"messages": [{"role": "user", "content": prompt}]})
    assert chat["count"] == len(peer.encode(prompt, add_special_tokens=False).ids)
    _, ids = post(url + "/tokenize", {"prompt": [3, 4, 5]})
    assert ids["tokens"] == [3, 4, 5]
    status, error = post(url + "/tokenize", {"model": "other", "prompt": prompt})
    assert (status, error["error"]["type"], error["error"]["param"]) == (
        404, "NotFoundError", "model",
    )  # fmt: skip
    status, error = post(url + "/tokenize", {"prompt": "a", "messages": []})
    assert status == 400
    assert error["error"]["param"] is not None
    assert call(url + "/version", "GET") == (200, {"version": __version__})


# --- parameters: implemented or refused by name -----------------------------------------


@pytest.mark.parametrize(
    ("chat", "fields", "param"),
    [
        (False, {"n": 2}, "n"),
        (True, {"n": 3}, "n"),
        (False, {"logprobs": 1}, "logprobs"),
        (True, {"logprobs": True}, "logprobs"),
        (True, {"top_logprobs": 2}, "top_logprobs"),
        (False, {"echo": True}, "echo"),
        (False, {"stream_options": {"include_usage": True}}, "stream_options"),
        (True, {"stream": False, "stream_options": {"include_usage": True}}, "stream_options"),
        (False, {"stop": ""}, "stop"),
    ],
)
def test_unsupported_parameters_are_refused_by_name(
    client: Any, chat: bool, fields: dict[str, Any], param: str
) -> None:
    def send() -> None:
        if chat:
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body=fields
            )
        else:
            client.completions.create(model=MODEL, prompt="hi", extra_body=fields)

    with pytest.raises(openai.BadRequestError) as caught:
        send()
    assert caught.value.status_code == 400
    error = caught.value.body
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert param in error["message"]


def test_accepted_defaults_of_those_parameters(client: Any) -> None:
    got = client.completions.create(
        model=MODEL, prompt="hi", max_tokens=2, n=1, echo=False, logprobs=None
    )
    assert got.usage.completion_tokens == 2
    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2, logprobs=False
    )
    assert chat.usage.completion_tokens == 2


def test_stop_strings_cut_the_text_and_count_the_tokens(client: Any) -> None:
    # responses are WORDS in turn: "the quick brown fox jumps over lazy dog the ..."
    got = client.completions.create(model=MODEL, prompt="hi", max_tokens=30, stop=["fox", "zzz"])
    assert got.choices[0].text == "the quick brown "
    assert got.choices[0].finish_reason == "stop"
    assert got.usage.completion_tokens == 4  # the token that completes "fox" counts
    stream = client.completions.create(
        model=MODEL, prompt="hi", max_tokens=30, stop="own f", stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "the quick br"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 4
    missing = client.completions.create(model=MODEL, prompt="hi", max_tokens=5, stop="zzz")
    assert missing.choices[0].finish_reason == "length"
    assert missing.usage.completion_tokens == 5
    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=30, stop="lazy"
    )
    assert chat.choices[0].message.content == "the quick brown fox jumps over "
    assert chat.usage.completion_tokens == 7


def test_stop_respects_min_tokens() -> None:
    # "fox" ends token 4 and again token 12 (8 words a cycle): min_tokens=5 skips the first
    assert apply_stop(30, "length", ("fox",)) == (4, "stop", len("the quick brown "))
    tokens, finish, end = apply_stop(30, "length", ("fox",), min_tokens=5)
    assert (tokens, finish) == (12, "stop")
    assert end == len("".join(w + " " for w in WORDS)) + len("the quick brown ")
    assert apply_stop(3, "length", ("fox",)) == (3, "length", None)


# --- the model name and error bodies ----------------------------------------------------


def test_unknown_model_is_a_404_as_vllm_says(client: Any) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="gpt-nope", prompt="hi", max_tokens=2)
    assert caught.value.body == {
        "message": "The model `gpt-nope` does not exist.",
        "type": "NotFoundError",
        "param": "model",
        "code": 404,
    }
    ok = client.completions.create(model=MODEL, prompt="hi", max_tokens=1)
    assert ok.model == MODEL


def test_every_error_is_json_with_param(url: str) -> None:
    cases = [
        (call(url + "/v2/nothing", "GET"), 404, None),
        (call(url + "/v1/completions", "GET"), 405, None),
        (call(url + "/v1/models", "POST", b"{}"), 405, None),
        (post(url + "/v1/completions", {"prompt": "x" * 5000}), 413, "body"),
        (post(url + "/v1/completions", {"prompt": 5}), 400, "prompt"),
        (call(url + "/v1/completions", "POST", b"{", **{"Content-Type": "application/json"}),
         400, None),
        (call(url + "/v1/completions", "POST", b"{}", **{"Content-Type": "text/plain"}),
         415, "Content-Type"),
    ]  # fmt: skip
    for (status, body), want_status, want_param in cases:
        assert status == want_status
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert (error["code"], error["param"]) == (want_status, want_param)
        assert error["message"]


def test_refusals_carry_their_error_types() -> None:
    async def main(base: str) -> list[tuple[int, dict[str, Any]]]:
        long = {"prompt": "a " * 100, "max_tokens": 5000, "ignore_eos": True, "stream": True}
        async with aiohttp.ClientSession() as session:
            first = await session.post(base + "/v1/completions", json=long)
            await first.content.readline()  # the first token: it is running

            async def one() -> tuple[int, dict[str, Any]]:
                async with session.post(base + "/v1/completions", json=long) as resp:
                    if resp.status == 200:
                        return 200, {}
                    return resp.status, await resp.json()

            tasks = [asyncio.ensure_future(one()) for _ in range(4)]
            done: list[tuple[int, dict[str, Any]]] = []
            for next_done in asyncio.as_completed(tasks):
                done.append(await next_done)
                if len(done) == 3:  # one waits in the queue until the first ends
                    break
            for task in tasks:
                task.cancel()
            first.close()
            return done

    app = make_engine_app(engine(max_num_seqs=1, queue_cap=1), model="sim", time_scale=1.0)
    with serve_in_thread(app) as base:
        refused = asyncio.run(main(base))
    assert [s for s, _ in refused] == [429, 429, 429]
    assert {b["error"]["type"] for _, b in refused} == {"rate_limit_error"}
    assert all("param" in b["error"] for _, b in refused)

    app = make_engine_app(engine(max_num_seqs=1, queue_timeout_s=0.05), model="sim", time_scale=1.0)

    async def timed_out(base: str) -> tuple[int, dict[str, Any]]:
        long = {"prompt": "a", "max_tokens": 5000, "ignore_eos": True, "stream": True}
        async with aiohttp.ClientSession() as session:
            first = await session.post(base + "/v1/completions", json=long)
            await first.content.readline()
            async with session.post(base + "/v1/completions", json=long) as second:
                body = await second.json()
            first.close()
            return second.status, body

    with serve_in_thread(app) as base:
        status, body = asyncio.run(timed_out(base))
    assert (status, body["error"]["type"], body["error"]["param"]) == (
        503, "service_unavailable_error", None,
    )  # fmt: skip


# --- /metrics -----------------------------------------------------------------------------


def _scrape(base: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(base + "/metrics", timeout=30) as resp:
        text = resp.read().decode()
    assert "# HELP vllm:num_requests_running" in text
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def test_metrics_have_vllms_names_and_labels() -> None:
    app = make_engine_app(engine(), model="sim", time_scale=20.0)
    with serve_in_thread(app) as base:
        cli = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        for n in (3, 5):
            stream = cli.completions.create(
                model="sim", prompt="a b c d", max_tokens=n, stream=True,
                extra_body={"ignore_eos": True},
            )  # fmt: skip
            assert len(list(stream)) == n
        m = _scrape(base)
    label = (("model_name", "sim"),)
    assert m["vllm:request_success_total"][label] == 2
    assert m["vllm:prompt_tokens_total"][label] == 8
    assert m["vllm:generation_tokens_total"][label] == 8
    assert m["vllm:time_to_first_token_seconds_count"][label] == 2
    assert m["vllm:e2e_request_latency_seconds_count"][label] == 2
    assert m["vllm:request_queue_time_seconds_count"][label] == 2
    assert m["vllm:inter_token_latency_seconds_count"][label] == 2 + 4
    assert m["vllm:time_per_output_token_seconds_count"][label] == 2 + 4
    assert m["vllm:num_requests_running"][label] == 0
    assert m["vllm:num_requests_waiting"][label] == 0
    assert 0 <= m["vllm:kv_cache_usage_perc"][label] <= 1
    assert m["vllm:num_preemptions_total"][label] == 0
    ttft_buckets = {dict(k)["le"] for k in m["vllm:time_to_first_token_seconds_bucket"]}
    assert {"0.001", "2560.0", "+Inf"} <= ttft_buckets
    assert m["burstlab_finished_total"][()] == 2


def test_each_app_counts_its_own_metrics() -> None:
    with (
        serve_in_thread(make_app(FAST, model="a")) as one,
        serve_in_thread(make_app(FAST, model="b")) as two,
    ):
        post(one + "/v1/completions", {"prompt": "x", "max_tokens": 2})
        assert _scrape(one)["vllm:request_success_total"][(("model_name", "a"),)] == 1
        assert _scrape(two)["vllm:request_success_total"][(("model_name", "b"),)] == 0


# --- natural output lengths ---------------------------------------------------------------


def test_output_lengths_are_seeded_and_follow_their_distribution() -> None:
    one = parse_output_lengths("lognormal:200,80", seed=7)
    two = parse_output_lengths("lognormal:200,80", seed=7)
    draws = [one.draw() for _ in range(4000)]
    assert draws == [two.draw() for _ in range(4000)]
    mean = sum(draws) / len(draws)
    sd = (sum((d - mean) ** 2 for d in draws) / len(draws)) ** 0.5
    assert 190 < mean < 210
    assert 70 < sd < 90
    assert min(draws) >= 1
    eos = parse_output_lengths("eos:0.02", seed=1)
    eos_draws = [eos.draw() for _ in range(4000)]
    assert 45 < sum(eos_draws) / 4000 < 55
    assert parse_output_lengths("17").draw() == 17
    assert parse_output_lengths("fixed:9").spec == "fixed:9"


@pytest.mark.parametrize(
    "spec", ["lognormal:1", "lognormal:a,b", "gamma:3,4", "eos:0", "eos:1.5", "fixed:0", "2.5",
             "lognormal:0,1", "lognormal:5,-1", "eos:nan"],
)  # fmt: skip
def test_bad_output_length_specs(spec: str) -> None:
    with pytest.raises(InputError, match="--output-lengths"):
        parse_output_lengths(spec)


def test_engine_responses_take_the_drawn_lengths() -> None:
    lengths = OutputLengths("lognormal", (12.0, 6.0), seed=3)
    same = OutputLengths("lognormal", (12.0, 6.0), seed=3)
    want = [same.draw() for _ in range(4)]
    app = make_engine_app(engine(), model="sim", time_scale=50.0, lengths=lengths)
    with serve_in_thread(app) as base:
        cli = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        got = [
            cli.chat.completions.create(model="sim", messages=[{"role": "user", "content": "hi"}])
            for _ in range(4)
        ]
        _, models = call(base + "/v1/models", "GET")
    assert [g.usage.completion_tokens for g in got] == want
    assert {g.choices[0].finish_reason for g in got} == {"stop"}
    assert models["data"][0]["output_lengths"] == "lognormal:12,6"
