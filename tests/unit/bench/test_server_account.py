"""The server's own account: timings parsed into records, /metrics and /slots parsed,
token-id prompts of the server's vocabulary, and the gaps between bench and server."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from burstlab.bench.agreement import gap_summary, timing_gaps
from burstlab.bench.client import server_timings
from burstlab.bench.config import BenchConfig
from burstlab.bench.server_metrics import parse_metrics, read_server_metrics, slot_values
from burstlab.bench.server_tokens import ServerTokenSynth
from burstlab.core.errors import InputError
from burstlab.results.records import Record, records_table


def test_timings_fill_the_record_and_the_first_token_chunk_sets_first_ms() -> None:
    rec = Record(request_id=0, arrival_s=0.0)
    server_timings({"prompt_ms": 12.5, "predicted_ms": 3.0, "predicted_n": 2}, rec, first=True)
    server_timings(
        {"prompt_ms": 12.5, "predicted_ms": 40.0, "prompt_n": 30, "cache_n": 2, "predicted_n": 9},
        rec,
    )
    assert (rec.server_prompt_ms, rec.server_predicted_ms) == (12.5, 40.0)
    assert (rec.server_prompt_n, rec.server_cache_n, rec.server_predicted_n) == (30, 2, 9)
    assert rec.server_first_ms == 15.5  # two tokens in when the first was streamed


def test_bad_timing_values_are_left_unset() -> None:
    rec = Record(request_id=0, arrival_s=0.0)
    server_timings({"prompt_ms": "fast", "predicted_ms": float("nan"), "cache_n": True}, rec)
    assert rec.server_prompt_ms is None
    assert rec.server_predicted_ms is None
    assert rec.server_cache_n is None


def test_old_records_read_with_empty_server_columns() -> None:
    row = {"request_id": 0, "arrival_s": 0.0, "outcome": "ok", "input_tokens": 3}
    table = records_table([row])
    assert table["server_prompt_ms"].to_list() == [None]
    assert timing_gaps(table).is_empty()


def test_prometheus_text_and_slots_are_parsed() -> None:
    text = (
        "# HELP llamacpp:requests_deferred Number of requests deferred\n"
        "# TYPE llamacpp:requests_deferred gauge\n"
        "llamacpp:requests_deferred 3\n"
        '# TYPE x_total counter\nx_total{model="m"} 2\n'
    )
    values = parse_metrics(text)
    assert values["llamacpp:requests_deferred"] == 3.0
    assert values['x_total{model="m"}'] == 2.0
    slots = [
        {
            "n_ctx": 100,
            "is_processing": True,
            "n_prompt_tokens": 10,
            "next_token": [{"n_decoded": 5}],
        },
        {"n_ctx": 100, "is_processing": False, "n_prompt_tokens": 50},
    ]
    assert slot_values(slots) == {"slots:kv_tokens": 15, "slots:n_ctx": 200, "slots:busy": 1}
    assert slot_values({"error": "off"}) == {}


def test_scrapes_read_on_the_run_clock(tmp_path: Path) -> None:
    path = tmp_path / "server_metrics.jsonl"
    lines = [
        {
            "t_ns": 2_000_000_000,
            "values": {"llamacpp:requests_deferred": 1, "slots:kv_tokens": 50, "slots:n_ctx": 200},
        },
        {
            "t_ns": 3_000_000_000,
            "values": {"llamacpp:requests_deferred": 0, "slots:kv_tokens": 0, "slots:n_ctx": 200},
        },
    ]
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines) + b'{"t_ns": 4')
    table = read_server_metrics(path, t0_perf_ns=1_000_000_000)
    assert table is not None
    assert table["t_s"].to_list() == [1.0, 2.0]
    assert table["queued"].to_list() == [1, 0]
    assert table["kv_use"].to_list() == [0.25, 0.0]


def test_server_token_prompts_are_exact_and_share_hash_blocks() -> None:
    # A byte vocabulary: every word costs as many ids as it has bytes.
    vocab = [[ord(c) for c in f" w{i}"] for i in range(1000)]
    synth = ServerTokenSynth(vocab, seed=3, block=8)
    for n in (0, 1, 7, 8, 9, 100):
        prompt = synth.build(n, key=5)
        assert prompt.token_ids is not None
        assert len(prompt.token_ids) == n
        assert prompt.exact
    a = synth.build(20, key=1, hash_ids=[7, 9])
    b = synth.build(20, key=2, hash_ids=[7, 9])
    assert a.token_ids is not None
    assert b.token_ids is not None
    assert a.token_ids[:16] == b.token_ids[:16]
    assert a.token_ids[16:] != b.token_ids[16:]
    again = ServerTokenSynth(vocab, seed=3, block=8)
    assert synth.build(30, key=4).token_ids == again.build(30, key=4).token_ids


def test_server_tokenizer_needs_completions() -> None:
    config = BenchConfig(url="http://127.0.0.1:1", api="chat", tokenizer="server")
    with pytest.raises(InputError, match="--api completions"):
        config.prompt_mode()
    assert BenchConfig(url="http://x", backend="llamacpp").prompt_mode() == "ids"


def test_gaps_subtract_the_server_account_and_mark_idle_requests() -> None:
    rows = [
        # alone: 10 ms TTFT of which the server counts 9.5; decode 50 ms vs 49.8
        {
            "request_id": 0,
            "arrival_s": 0.0,
            "outcome": "ok",
            "sent_s": 0.0,
            "first_s": 0.010,
            "end_s": 0.060,
            "server_prompt_ms": 9.5,
            "server_predicted_ms": 49.8,
        },
        # overlaps the next; its first streamed token came 2 ms after the prompt
        {
            "request_id": 1,
            "arrival_s": 1.0,
            "outcome": "ok",
            "sent_s": 1.0,
            "first_s": 1.020,
            "end_s": 1.100,
            "server_prompt_ms": 10.0,
            "server_predicted_ms": 82.0,
            "server_first_ms": 12.0,
        },
        {
            "request_id": 2,
            "arrival_s": 1.01,
            "outcome": "ok",
            "sent_s": 1.01,
            "first_s": 1.05,
            "end_s": 1.2,
            "server_prompt_ms": 10.0,
            "server_predicted_ms": 150.0,
        },
    ]
    gaps = timing_gaps(records_table(rows)).sort("request_id")
    assert gaps["ttft_gap_ms"].to_list() == pytest.approx([0.5, 8.0, 30.0])
    assert gaps["decode_gap_ms"].to_list() == pytest.approx([0.2, 0.0, 0.0], abs=1e-9)
    assert gaps["idle"].to_list() == [True, True, False]
    summary = gap_summary(gaps)
    assert summary["compared"] == 3
    assert summary["idle_ttft_gap_ms"]["n"] == 2
    assert summary["decode_gap_ms"]["abs_median"] == pytest.approx(0.0, abs=1e-9)
