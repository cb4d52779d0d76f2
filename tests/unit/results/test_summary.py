"""Summary arithmetic on hand-made records: metrics, goodput, censoring, verdict."""

from __future__ import annotations

import pytest

from burstlab.core.errors import InputError
from burstlab.results.records import Record, records_table
from burstlab.results.slo import parse_slo
from burstlab.results.summary import summarize
from support.records import failed_record, ok_record


def ok(i: int, intended: float, lag: float, ttft: float, itl: float, n: int) -> Record:
    return ok_record(i, intended, lag=lag, ttft=ttft, itl=itl, n=n, prompt=10)


def failed(i: int, intended: float, kind: str, sub: str) -> Record:
    return failed_record(i, intended, kind, sub)


def table(records: list[Record]):  # type: ignore[no-untyped-def]
    import dataclasses

    return records_table([dataclasses.asdict(r) for r in records])


def test_metrics_from_sent_and_intended() -> None:
    recs = [ok(i, i * 1.0, 0.002, 0.05, 0.01, 11) for i in range(10)]
    s = summarize(table(recs))
    m = s.metrics
    assert m["ttft_s"].p50 == pytest.approx(0.05)
    assert m["ttft_intended_s"].p50 == pytest.approx(0.052)
    assert m["tpot_s"].mean == pytest.approx(0.01)
    assert m["itl_s"].p99 == pytest.approx(0.01)
    assert m["e2e_s"].max == pytest.approx(0.15)
    assert s.schedule_lag_s.p50 == pytest.approx(0.002)
    assert s.counts.model_dump() == {
        "ok": 10,
        "failed": 0,
        "cancelled": 0,
        "not_sent": 0,
        "scheduled": 10,
    }
    assert s.throughput.output_tokens_per_s == pytest.approx(110 / (9.0 + 0.152 - 0.002))
    assert not s.client.bound
    assert s.jitter_s == pytest.approx(0.0, abs=1e-9)


def test_failures_are_counted_beside_latency_and_censor_percentiles() -> None:
    recs = [ok(i, float(i), 0.0, 0.05, 0.01, 5) for i in range(90)]
    recs += [failed(90 + i, 90.0 + i, "http_5xx", "503") for i in range(8)]
    recs += [failed(98, 98.0, "timeout", "total"), failed(99, 99.0, "reset", "mid_stream")]
    s = summarize(table(recs))
    assert s.counts.failed == 10
    assert s.failure_rate == pytest.approx(0.1)
    assert s.failures_by_kind == {"http_5xx": 8, "reset": 1, "timeout": 1}
    assert s.failures_by_subkind["http_5xx.503"] == 8
    assert s.metrics["ttft_s"].count == 90
    # 10% failed: p95 and p99 over attempts cannot be read from successes
    assert s.attempt_s.censored == ["p95", "p99"]
    windows = s.failures_over_time.windows
    assert sum(w.get("http_5xx", 0) for w in windows.values()) == 8


def test_goodput_and_slo_parsing() -> None:
    recs = [ok(i, float(i), 0.0, 0.05 if i % 2 else 0.8, 0.01, 5) for i in range(10)]
    s = summarize(table(recs), slo=parse_slo("ttft=0.5,tpot=0.05,e2e=10"))
    assert s.goodput is not None
    assert s.goodput.good_requests == 5
    for bad in ("ttft", "ttft=abc", "speed=1", "e2e=-1"):
        with pytest.raises(InputError):
            parse_slo(bad)


def test_late_sends_make_a_client_bound_verdict() -> None:
    recs = [ok(i, float(i), 0.2 if i == 3 else 0.0, 0.05, 0.01, 5) for i in range(10)]
    s = summarize(table(recs))
    assert s.client.bound
    assert any("late" in r for r in s.client.reasons)
