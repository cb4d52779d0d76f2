"""bench against stand-ins of the engines' native generate APIs
(tests/support/native_servers.py): lengths forced, tokens and times recorded from
each protocol's events, failures classified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from burstlab.bench.backends import Forcing
from burstlab.bench.run import BenchConfig, bench
from burstlab.results.records import load_records
from support.frames import workload
from support.native_servers import native_server

PROTOCOLS = ["tgi", "sglang", "lightllm", "vllm"]
OUTPUTS = [1, 2, 3, 5, 8, 13]
#: The server's own count of generated tokens, where the protocol carries one.
SOURCE = {"tgi": "usage", "sglang": "usage", "lightllm": "usage", "vllm": "events"}
STREAM_PATH = {"tgi": "/generate_stream", "sglang": "/generate", "lightllm": "/generate_stream"}


def _workload(outputs: list[int]) -> pl.DataFrame:
    table = workload([0.005 * i for i in range(len(outputs))], input_tokens=24)
    return table.with_columns(pl.Series("output_tokens", outputs, dtype=pl.Int32))


def _run(tmp_path: Path, server: Any, outputs: list[int], **options: Any) -> pl.DataFrame:
    config = BenchConfig(url=server.url, api="generate", backend=server.protocol, **options)
    bench(_workload(outputs), config, tmp_path / "run")
    return load_records(tmp_path / "run").sort("request_id")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_lengths_tokens_and_times_per_protocol(tmp_path: Path, protocol: str) -> None:
    with native_server(protocol, itl_s=0.002, eos_after=1) as server:
        table = _run(tmp_path, server, OUTPUTS)
    assert table["outcome"].to_list() == ["ok"] * len(OUTPUTS)
    # forced past the model's end-of-sequence token (after 1): exact lengths
    if protocol != "tgi":
        assert table["output_tokens_achieved"].to_list() == OUTPUTS
    assert table["tokens_source"].unique().to_list() == [SOURCE[protocol]]
    assert set(server.paths) == {STREAM_PATH.get(protocol, "/generate")}
    for row in table.iter_rows(named=True):
        chunks = row["chunk_s"]
        assert sum(row["chunk_tokens"]) == row["output_tokens_achieved"]
        assert len(chunks) == row["output_tokens_achieved"]  # one token per event here
        assert chunks == sorted(chunks)
        assert row["sent_s"] <= row["first_s"] == chunks[0] <= row["end_s"]
        assert chunks[-1] <= row["end_s"]
        assert row["ttft_s"] == pytest.approx(row["first_s"] - row["sent_s"])
        n = row["output_tokens_achieved"]
        assert len(row["itl_s"] or []) == n - 1
        assert (row["tpot_s"] is None) == (n == 1)
    if protocol in ("sglang", "lightllm"):  # the server counted the prompt
        assert table["input_tokens_achieved"].to_list() == [24] * len(OUTPUTS)
    if protocol == "sglang":  # token-id prompts: exact
        assert all("input_ids" in body for body in server.bodies)


def test_tgi_cannot_ignore_eos_and_the_record_says_so(tmp_path: Path) -> None:
    with native_server("tgi", eos_after=3) as server:
        config = BenchConfig(url=server.url, api="generate", backend="tgi")
        result = bench(_workload(OUTPUTS), config, tmp_path / "run")
    table = load_records(tmp_path / "run").sort("request_id")
    assert table["outcome"].to_list() == ["ok"] * len(OUTPUTS)
    # the server's count (details.generated_tokens), not a guess
    assert table["output_tokens_achieved"].to_list() == [min(n, 3) for n in OUTPUTS]
    assert table["finish_reason"].to_list() == ["eos_token" if n > 3 else "length" for n in OUTPUTS]
    assert result.summary.lengths.output_mismatched_requests == 3
    assert all("ignore_eos" not in body["parameters"] for body in server.bodies)


def test_sglang_forcing_off_lets_the_model_stop(tmp_path: Path) -> None:
    with native_server("sglang", eos_after=2) as server:
        table = _run(tmp_path, server, OUTPUTS, forcing=Forcing())
    assert table["output_tokens_achieved"].to_list() == [min(n, 2) for n in OUTPUTS]
    assert table["finish_reason"].to_list() == ["length", "length"] + ["stop"] * 4


def test_sglang_events_of_several_tokens(tmp_path: Path) -> None:
    with native_server("sglang", interval=3) as server:
        table = _run(tmp_path, server, OUTPUTS)
    assert table["output_tokens_achieved"].to_list() == OUTPUTS
    for row in table.iter_rows(named=True):
        n = row["output_tokens"]
        assert sum(row["chunk_tokens"]) == n
        assert len(row["chunk_s"]) == -(-n // 3)
        assert max(row["chunk_tokens"]) <= 3


def test_vllm_nul_delimited_stream_of_old_releases(tmp_path: Path) -> None:
    with native_server("vllm", delimiter=b"\0") as server:
        table = _run(tmp_path, server, OUTPUTS)
    assert table["outcome"].to_list() == ["ok"] * len(OUTPUTS)
    assert table["output_tokens_achieved"].to_list() == OUTPUTS


#: What each fault is recorded as, by protocol (vLLM's stream has no error event).
FAULTS = {
    "http_400": ("http_4xx", "400"),
    "http_503": ("http_5xx", "503"),
    "truncate": ("truncated", "after_tokens"),
    "drop": ("reset", "payload_incomplete"),
    "error_event": ("stream_error", "server_error_event"),
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_failures_are_classified(tmp_path: Path, protocol: str) -> None:
    faults = [f for f in FAULTS if not (protocol == "vllm" and f == "error_event")]
    outputs = [6] * (len(faults) + 1)
    with native_server(protocol, faults=dict(enumerate(faults))) as server:
        table = _run(tmp_path, server, outputs)
    rows = table.rows_by_key("request_id", named=True, unique=True)
    for i, fault in enumerate(faults):
        row = rows[i]
        assert row["outcome"] == "failed", (fault, row)
        assert (row["error_kind"], row["error_subkind"]) == FAULTS[fault], (fault, row)
        if fault in ("truncate", "drop") and protocol != "vllm":
            assert row["output_tokens_achieved"] == 2  # what came before the cut is kept
    last = rows[len(faults)]
    assert last["outcome"] == "ok"
    assert last["output_tokens_achieved"] == 6


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_not_streamed(tmp_path: Path, protocol: str) -> None:
    with native_server(protocol) as server:
        table = _run(tmp_path, server, OUTPUTS, stream=False)
    assert table["outcome"].to_list() == ["ok"] * len(OUTPUTS)
    assert table["error_subkind"].null_count() == len(OUTPUTS)
    assert set(server.paths) == {"/generate"}
    if protocol == "vllm":  # nothing counted: one token, said as events
        assert table["output_tokens_achieved"].to_list() == [1] * len(OUTPUTS)
        assert table["tokens_source"].unique().to_list() == ["events"]
    else:
        assert table["output_tokens_achieved"].to_list() == OUTPUTS
        assert table["tokens_source"].unique().to_list() == ["usage"]
    assert (table["first_s"] == table["end_s"]).all()


def test_temperature_and_output_cap_reach_the_body(tmp_path: Path) -> None:
    with native_server("lightllm") as server:
        table = _run(tmp_path, server, OUTPUTS, temperature=0.8, max_output_tokens=4)
    asked = sorted(body["parameters"]["max_new_tokens"] for body in server.bodies)
    assert asked == sorted(min(n, 4) for n in OUTPUTS)
    assert {body["parameters"]["temperature"] for body in server.bodies} == {0.8}
    assert {body["parameters"]["do_sample"] for body in server.bodies} == {True}
    assert table["output_tokens"].to_list() == OUTPUTS  # the workload's request, kept
    assert table["output_tokens_cap"].to_list() == [4] * len(OUTPUTS)
    assert table["output_tokens_achieved"].to_list() == [min(n, 4) for n in OUTPUTS]
