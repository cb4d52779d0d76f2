"""The client against a server that misbehaves on purpose: every fault is recorded
under its class, the run goes on, and nothing recorded is lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from burstlab.bench.client import event_cap
from burstlab.bench.run import BenchConfig, bench
from burstlab.results.records import load_records
from support.faulty_server import RETRY_AFTER_S, FaultyServer
from support.frames import constant_rate

#: fault -> (outcome, error_kind, error_subkind) expected in the record.
EXPECTED: dict[str, tuple[str, str | None, str | None]] = {
    "ok": ("ok", None, None),
    "reset_mid_stream": ("failed", "reset", "mid_stream"),
    "reset_before_headers": ("failed", "reset", "before_headers"),
    "fin_mid_chunk": ("failed", "reset", "payload_incomplete"),
    "http_429": ("failed", "http_429", "429"),
    "http_500": ("failed", "http_5xx", "500"),
    "http_503": ("failed", "http_5xx", "503"),
    "http_400": ("failed", "http_4xx", "400"),
    "retry_after_date": ("failed", "http_429", "429"),
    "stall": ("failed", "timeout", "first_byte"),
    "stall_before_headers": ("failed", "timeout", "first_byte"),
    "malformed_sse": ("failed", "stream_error", "bad_json"),
    "no_done": ("failed", "truncated", "after_tokens"),
    "finish_no_done": ("ok", None, None),
    "oversized_chunk": ("failed", "stream_error", "oversize"),
    "event_1mib": ("ok", None, None),
    "empty": ("failed", "empty", "no_tokens"),
    "trickle": ("ok", None, None),
    "error_event": ("failed", "stream_error", "server_error_event"),
    "split_utf8": ("ok", None, None),
    "crlf": ("ok", None, None),
    "gzip": ("failed", "stream_error", "bad_encoding"),
    "json_reply": ("ok", None, "not_streamed"),
    "ignore_max_tokens": ("failed", "stream_error", "overrun"),
    "bad_chunk_size": ("failed", "stream_error", "protocol"),
}


def workload(n: int, gap: float = 0.02) -> pl.DataFrame:
    return constant_rate(n, 1 / gap)


def config(url: str, **kw: object) -> BenchConfig:
    return BenchConfig(
        url=url, model="m", timeout_s=3.0, idle_timeout_s=1.0, connect_timeout_s=2.0, **kw
    )


@pytest.mark.parametrize("api", ["completions", "chat"])
@pytest.mark.slow
def test_every_fault_is_classified_and_the_run_goes_on(tmp_path: Path, api: str) -> None:
    faults = list(EXPECTED)
    with FaultyServer(faults, tokens=4, trickle_s=0.2, oversize_bytes=5 << 20) as server:
        result = bench(workload(2 * len(faults)), config(server.url, api=api), tmp_path / "run")
    table = load_records(tmp_path / "run").sort("request_id")
    assert table.height == 2 * len(faults)
    for row in table.iter_rows(named=True):
        fault = faults[row["request_id"] % len(faults)]
        got = (row["outcome"], row["error_kind"], row["error_subkind"])
        assert got == EXPECTED[fault], (fault, row["error_text"])
    retry = table.filter(pl.col("request_id") % len(faults) == faults.index("http_429"))
    assert retry["retry_after_s"].to_list() == [2.0, 2.0]
    # An HTTP-date, one-second resolution, RETRY_AFTER_S ahead when the server answered.
    dated = table.filter(pl.col("request_id") % len(faults) == faults.index("retry_after_date"))
    assert all(RETRY_AFTER_S - 10 < s <= RETRY_AFTER_S for s in dated["retry_after_s"].to_list())
    for cut in ("fin_mid_chunk", "reset_mid_stream"):  # partial stamps are kept
        rows = table.filter(pl.col("request_id") % len(faults) == faults.index(cut))
        assert rows["output_tokens_achieved"].to_list() == [2, 2], cut
        assert rows["first_s"].is_not_null().all(), cut
    endless = table.filter(pl.col("request_id") % len(faults) == faults.index("ignore_max_tokens"))
    cap = event_cap(4)  # max(2 x 4, 4 + 64) content events, then cut off
    assert endless["output_tokens_achieved"].to_list() == [cap, cap]
    assert [len(c) for c in endless["chunk_s"].to_list()] == [cap, cap]
    whole = table.filter(pl.col("request_id") % len(faults) == faults.index("json_reply"))
    assert (whole["first_s"] == whole["end_s"]).all()
    assert whole["output_tokens_achieved"].to_list() == [4, 4]
    assert whole["tokens_source"].to_list() == ["usage", "usage"]
    done_missing = table.filter(
        pl.col("request_id") % len(faults) == faults.index("finish_no_done")
    )
    assert done_missing["done_missing"].all()
    counts = result.summary.counts
    assert counts.ok + counts.failed == counts.scheduled == table.height
    assert result.lost == 0


def test_a_server_ignoring_max_tokens_cannot_bloat_the_records(tmp_path: Path) -> None:
    """Ten requests for 16 tokens each against a server that streams for ever: each
    stops after ``event_cap(16)`` content events, and the records stay small."""
    with FaultyServer(["ignore_max_tokens"]) as server:
        result = bench(constant_rate(10, 50.0, output=16), config(server.url), tmp_path / "run")
    table = load_records(tmp_path / "run")
    assert table["error_subkind"].to_list() == ["overrun"] * 10
    assert table["chunk_s"].list.len().max() == event_cap(16)
    assert (tmp_path / "run" / "records.jsonl").stat().st_size < 10 * 8192
    assert result.summary.failures_by_kind == {"stream_error": 10}


def test_a_bad_chunk_size_after_a_token_is_a_protocol_error(tmp_path: Path) -> None:
    """One token, a pause, then an invalid chunk-size line and a close: aiohttp's C
    parser drops the body stream without an error or an end and stops the idle timer,
    so only the client's close watch ends the read. The record is
    ``stream_error.protocol`` (RELIABILITY.md 2.4) with the token kept, long before
    the total deadline (60 s here, so a wait for it cannot pass)."""
    total = 60.0
    with FaultyServer(["bad_chunk_size"], trickle_s=0.3) as server:
        cfg = config(server.url).model_copy(update={"timeout_s": total})
        result = bench(workload(3), cfg, tmp_path / "run")
    table = load_records(tmp_path / "run")
    got = set(zip(table["outcome"], table["error_kind"], table["error_subkind"], strict=True))
    assert got == {("failed", "stream_error", "protocol")}, table["error_text"].to_list()
    assert table["output_tokens_achieved"].to_list() == [1, 1, 1]
    assert table["first_s"].is_not_null().all()
    assert ((table["end_s"] - table["sent_s"]) < total).all()
    assert result.summary.failures_by_kind == {"stream_error": 3}


def test_connection_refused_is_recorded_for_every_request(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = bench(workload(5), config(f"http://127.0.0.1:{port}"), tmp_path / "run")
    table = load_records(tmp_path / "run")
    assert table["error_kind"].to_list() == ["connect"] * 5
    assert set(table["error_subkind"].to_list()) == {"refused"}
    assert result.summary.failures_by_kind == {"connect": 5}


PEAK_RSS_SCRIPT = """
import resource, sys
from pathlib import Path
sys.path[:0] = [sys.argv[3], str(Path(sys.argv[3]).parent)]
from test_bench_faults import config, workload
from burstlab.bench.run import bench
bench(workload(int(sys.argv[2]), gap=0.05), config(sys.argv[1]), Path(sys.argv[4]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kib(url: str, n: int, run_dir: Path) -> int:
    here = str(Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, url, str(n), here, str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(out.stdout.split()[-1])


@pytest.mark.slow
def test_hostile_streams_keep_client_memory_bounded(tmp_path: Path) -> None:
    """Twenty 8 MiB events cost the client no more than one: each is cut off at
    the parser's 4 MiB bound (the client runs in its own process to measure it)."""
    with FaultyServer(["oversized_chunk"], oversize_bytes=8 << 20) as server:
        one = peak_rss_kib(server.url, 1, tmp_path / "one")
        many = peak_rss_kib(server.url, 20, tmp_path / "many")
    table = load_records(tmp_path / "many")
    assert set(table["error_subkind"].to_list()) == {"oversize"}
    assert (many - one) / 1024 < 30
