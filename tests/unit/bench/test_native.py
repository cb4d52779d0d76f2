"""The native dialects: bodies, readers of each protocol's events, vLLM's framing."""

from __future__ import annotations

import orjson
import pytest

from burstlab.bench.backends import Forcing, default_forcing
from burstlab.bench.native import (
    DIALECTS,
    JsonLines,
    NativeBodyBuilder,
    NativeFormatError,
    Params,
    check_forcing,
    dialect_for,
)
from burstlab.bench.sse import SSEOversizeError
from burstlab.core.errors import InputError


def _body(backend: str, prompt: object, n: int, *, temperature: float = 0.0) -> dict[str, object]:
    dialect = DIALECTS[backend]
    params = Params(default_forcing(backend, "generate"), temperature)
    return orjson.loads(NativeBodyBuilder(dialect, params).body(prompt, n))


def test_tgi_body_has_no_zero_temperature_and_no_ignore_eos() -> None:
    body = _body("tgi", "hello there", 7)
    assert body == {
        "inputs": "hello there",
        "parameters": {"max_new_tokens": 7, "details": True, "do_sample": False},
    }
    warm = _body("tgi", "x", 3, temperature=0.7)
    assert warm["parameters"] == {
        "max_new_tokens": 3,
        "details": True,
        "do_sample": True,
        "temperature": 0.7,
    }


def test_sglang_body_takes_text_or_ids() -> None:
    assert _body("sglang", [5, 6, 7], 4) == {
        "input_ids": [5, 6, 7],
        "sampling_params": {"max_new_tokens": 4, "temperature": 0.0, "ignore_eos": True},
        "stream": True,
    }
    assert _body("sglang", "hi", 4)["text"] == "hi"
    params = Params(Forcing(ignore_eos=True, min_tokens=True), 0.0)
    body = orjson.loads(NativeBodyBuilder(DIALECTS["sglang"], params, stream=False).body("a", 9))
    assert body["sampling_params"]["min_new_tokens"] == 9
    assert body["stream"] is False


def test_lightllm_and_vllm_bodies() -> None:
    assert _body("lightllm", "p", 5, temperature=0.5) == {
        "inputs": "p",
        "parameters": {
            "max_new_tokens": 5,
            "do_sample": True,
            "temperature": 0.5,
            "ignore_eos": True,
        },
    }
    # Only SamplingParams fields beside prompt and stream: no model, no stream_options.
    assert _body("vllm", "p", 5) == {
        "prompt": "p",
        "stream": True,
        "max_tokens": 5,
        "temperature": 0.0,
        "ignore_eos": True,
        "min_tokens": 5,
    }


@pytest.mark.parametrize("backend", ["tgi", "lightllm", "vllm"])
def test_text_only_dialects_refuse_token_ids(backend: str) -> None:
    with pytest.raises(TypeError, match="text prompts only"):
        _body(backend, [1, 2], 3)


def test_dialect_for_and_forcing_checks() -> None:
    assert dialect_for("sglang").ids
    with pytest.raises(InputError) as err:
        dialect_for("openai")
    assert err.value.field == "--backend"
    with pytest.raises(InputError) as err:
        check_forcing(DIALECTS["tgi"], Forcing(ignore_eos=True))
    assert err.value.field == "--ignore-eos"
    with pytest.raises(InputError) as err:
        check_forcing(DIALECTS["tgi"], Forcing(min_tokens=True))
    assert err.value.field == "--min-tokens"
    check_forcing(DIALECTS["vllm"], Forcing(ignore_eos=True, min_tokens=True))


def test_tgi_reader_counts_tokens_and_takes_details() -> None:
    reader = DIALECTS["tgi"].reader()
    first = reader.event({"token": {"id": 1, "text": " a", "special": False}, "details": None})
    assert (first.tokens, first.text, first.done, first.finish_reason) == (1, " a", False, None)
    last = reader.event(
        {
            "token": {"id": 2, "text": "</s>", "special": True},
            "generated_text": " a",
            "details": {"finish_reason": "eos_token", "generated_tokens": 2, "seed": None},
        }
    )
    assert (last.tokens, last.text, last.done) == (1, "", True)
    assert (last.finish_reason, last.completion_tokens) == ("eos_token", 2)
    with pytest.raises(NativeFormatError):
        reader.event({"generated_text": None})
    whole = reader.whole([{"generated_text": "xyz", "details": {"generated_tokens": 3}}])
    assert (whole.text, whole.completion_tokens, whole.done) == ("xyz", 3, True)


def test_sglang_reader_turns_cumulative_text_and_counts_into_deltas() -> None:
    reader = DIALECTS["sglang"].reader()

    def event(text: str, k: int, finish: object = None) -> dict[str, object]:
        meta = {"prompt_tokens": 9, "completion_tokens": k, "finish_reason": finish}
        return {"text": text, "meta_info": meta}

    a = reader.event(event(" w0 w1", 2))
    assert (a.tokens, a.text, a.prompt_tokens, a.completion_tokens) == (2, " w0 w1", 9, 2)
    b = reader.event(event(" w0 w1 w2", 3, {"type": "length", "length": 3}))
    assert (b.tokens, b.text, b.finish_reason, b.done) == (1, " w2", "length", False)
    assert reader.event(event(" w0 w1 w2", 3, "stop")).tokens == 0
    with pytest.raises(NativeFormatError):
        reader.event({"meta_info": {}})
    whole = DIALECTS["sglang"].reader().whole(event(" w0", 1, {"type": "length"}))
    assert (whole.tokens, whole.done, whole.finish_reason) == (1, True, "length")


def test_lightllm_reader_uses_running_counts_and_finished() -> None:
    reader = DIALECTS["lightllm"].reader()

    def event(k: int, finished: bool) -> dict[str, object]:
        token = {"text": f" w{k}", "count_output_tokens": k, "prompt_tokens": 4}
        return {
            "token": token,
            "finished": finished,
            "finish_reason": "length" if finished else None,
        }

    one = reader.event(event(1, False))
    assert (one.tokens, one.completion_tokens, one.prompt_tokens, one.done) == (1, 1, 4, False)
    three = reader.event(event(3, True))  # a skipped count: two tokens in one event
    assert (three.tokens, three.done, three.finish_reason) == (2, True, "length")
    old = DIALECTS["lightllm"].reader().event({"token": {"text": "x"}, "finished": False})
    assert (old.tokens, old.completion_tokens) == (1, None)  # an old build: no counts
    whole = reader.whole(
        {"generated_text": ["abc"], "count_output_tokens": 3, "finish_reason": "length"}
    )
    assert (whole.text, whole.completion_tokens, whole.finish_reason) == ("abc", 3, "length")


def test_vllm_reader_counts_events_and_strips_what_came_before() -> None:
    reader = DIALECTS["vllm"].reader()
    a = reader.event({"text": ["prompt w0"]})
    b = reader.event({"text": ["prompt w0 w1"]})
    assert (a.tokens, b.tokens, b.text, b.completion_tokens, b.done) == (1, 1, " w1", None, False)
    with pytest.raises(NativeFormatError):
        reader.event({"text": "not a list"})
    assert reader.whole({"text": ["p out"]}).done


def test_json_lines_frames_newline_and_nul_delimited_objects() -> None:
    lines = JsonLines()
    assert lines.feed(b'{"text": ["a"]}\n{"te') == [b'{"text": ["a"]}']
    assert lines.pending
    assert lines.feed(b'xt": ["ab"]}\0{"text": ["abc"]}\0') == [
        b'{"text": ["ab"]}',
        b'{"text": ["abc"]}',
    ]
    assert not lines.pending
    assert lines.feed(b"\n\n") == []
    small = JsonLines(max_event_bytes=8)
    with pytest.raises(SSEOversizeError):
        small.feed(b"0123456789")
    with pytest.raises(SSEOversizeError):
        small.feed(b"0123456789\n")


def test_every_dialect_is_a_backend() -> None:
    from burstlab.bench.backends import BACKENDS

    assert set(DIALECTS) <= set(BACKENDS)
    assert default_forcing("lightllm", "generate") == Forcing(ignore_eos=True)
    assert default_forcing("lightllm", "completions") == Forcing()


def test_lightllm_reader_takes_details_on_the_last_event() -> None:
    reader = DIALECTS["lightllm"].reader()
    reader.event({"token": {"text": "a"}, "finished": False})
    last = reader.event(
        {
            "token": {"text": "b"},
            "finished": True,
            "finish_reason": "length",
            "generated_text": "ab",
            "details": {"generated_tokens": 2, "finish_reason": "length"},
        }
    )
    assert (last.tokens, last.done, last.completion_tokens) == (1, True, 2)
