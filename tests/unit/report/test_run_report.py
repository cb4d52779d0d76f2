"""The run report: renders for every shape of run, shows the key numbers, and
keeps hostile record text inert."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from burstlab.cli.report_cmd import report
from burstlab.core.errors import InputError
from burstlab.core.files import write_json
from burstlab.report.formatting import fmt_ms
from burstlab.report.run import render_run
from burstlab.report.time_axis import window_for
from burstlab.results.records import Record, RecordWriter, load_records, records_table
from burstlab.results.slo import SLO
from burstlab.results.summary import summarize
from support.records import failed_record, ok_record

HOSTILE = "</script><script>alert(1)</script>"


def unsent_record(i: int, t: float, outcome: str = "not_sent") -> Record:
    rec = Record(request_id=i, arrival_s=t, input_tokens=100, output_tokens=20)
    rec.outcome = outcome  # type: ignore[assignment]
    rec.failed = True
    if outcome == "cancelled":
        rec.dispatched_s = rec.sent_s = t
    return rec


def write_run(
    run_dir: Path,
    records: list[Record],
    *,
    status: str = "complete",
    slo: SLO | None = None,
    health: list[dict[str, Any]] | None = None,
    config: dict[str, Any] | None = None,
    summary: bool = True,
) -> Path:
    """A run directory as ``burstlab bench`` leaves it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = RecordWriter(run_dir / "records.jsonl")
    for rec in records:
        writer.write(rec)
    writer.close()
    cfg = {"url": "http://127.0.0.1:8000", "api": "completions", "backend": "vllm"}
    cfg |= {"model": "llama", "stream": True, "workers": 1, "seed": 0}
    cfg |= {"slo": slo.model_dump() if slo else None} | (config or {})
    manifest: dict[str, Any] = {
        "kind": "bench",
        "run_id": "abc123",
        "status": status if summary else "running",
        "scheduled": len(records),
        "config": cfg,
        "versions": {"burstlab": "0.1.0", "python": "3.11"},
        "host": "bench-host-7",
        "platform": "Linux",
        "started_wall": 1_700_000_000.0,
    }
    write_json(run_dir / "run.json", manifest)
    if summary:
        s = summarize(load_records(run_dir), slo=slo, health=health, status=status)
        write_json(run_dir / "summary.json", s.model_dump(mode="json"))
    return run_dir


def realistic_records(n: int = 2000, seed: int = 7) -> list[Record]:
    """A Poisson stream with a 4x burst in the middle: latency climbs, 429s and 5xx
    appear, the client lags a little, and a few responses stop early."""
    rng = np.random.default_rng(seed)
    seconds = np.arange(400)
    rate = np.where((seconds >= 150) & (seconds < 210), 16.0, 4.0)  # 4x burst for a minute
    per_second = rng.poisson(rate)
    times = np.sort(np.concatenate([s + rng.random(k) for s, k in enumerate(per_second)]))[:n]
    out: list[Record] = []
    for i, t in enumerate(times.tolist()):
        burst = 150 <= t < 210
        load = 1.0 + (6.0 * rng.random() if burst else 0.0)
        u = rng.random()
        if burst and u < 0.08:
            out.append(failed_record(i, t, "http_429", "429", "rate limited", status=429))
            continue
        if u < 0.012:
            text = f"upstream error {rng.integers(1000)}: connection to engine lost"
            out.append(failed_record(i, t, "http_5xx", "503", text, status=503))
            continue
        if u < 0.016:
            out.append(failed_record(i, t, "timeout", "idle", "no data for 60 s"))
            continue
        if u < 0.018:
            out.append(failed_record(i, t, "truncated", "no_done", "stream ended without [DONE]"))
            continue
        want = int(np.clip(rng.lognormal(5.0, 0.8), 2, 2000))
        got = want if rng.random() > 0.04 else int(want * rng.random()) + 1
        lag = float(rng.exponential(0.0003) + (rng.exponential(0.0015) if burst else 0.0))
        out.append(
            ok_record(
                i,
                t,
                lag=lag,
                ttft=float(rng.lognormal(np.log(0.045 * load), 0.35)),
                itl=float(rng.lognormal(np.log(0.012 * (1 + 0.3 * (load - 1))), 0.15)),
                n=got,
                requested=want,
                prompt=int(np.clip(rng.lognormal(6.0, 0.9), 4, 8000)),
            )
        )
    return out


@pytest.fixture
def mixed_run(tmp_path: Path) -> Path:
    return write_run(
        tmp_path / "run",
        [
            *realistic_records()[::5],
            failed_record(5000, 10.0, "http_5xx", "503", "bad gateway", status=503),
            failed_record(5001, 20.0, "timeout", "idle", "no data for 60 s"),
        ],
        slo=SLO(ttft=0.2, tpot=0.05),
        health=[{"loop_lag_max_s": 0.001, "cpu_share_max": 0.3}],
    )


def page(run_dir: Path, *, with_plots: bool = True) -> str:
    path = render_run(run_dir, with_plots=with_plots)
    assert path == run_dir / "report.html"
    return path.read_text(encoding="utf-8")


def assert_safe(html: str) -> None:
    assert "<script" not in html.lower()
    assert "Content-Security-Policy" in html
    assert "default-src 'none'" in html


@pytest.mark.slow
def test_mixed_run_shows_key_numbers_and_figures(mixed_run: Path) -> None:
    html = page(mixed_run)
    assert_safe(html)
    s = summarize(load_records(mixed_run), slo=SLO(ttft=0.2, tpot=0.05))
    m = s.metrics
    for name in ("ttft_s", "ttft_intended_s", "tpot_s", "itl_s", "e2e_s", "e2e_intended_s"):
        assert fmt_ms(m[name].p50) in html
        assert fmt_ms(m[name].p99, like=m[name].p50) in html
    lag = s.schedule_lag_s
    assert fmt_ms(lag.p99, like=lag.p50) in html
    assert f"{s.counts.ok:,}" in html
    assert f"{100 * s.failure_rate:.2f}%" in html
    assert "goodput (from intended)" in html
    assert len(s.failures_by_subkind) >= 2
    for key in s.failures_by_subkind:
        assert f"<td>{key}</td>" in html
    assert "rate limited" in html
    assert "bench-host-7" in html
    assert "2023-11-14 22:13:20 UTC" in html
    assert "CLIENT-BOUND" not in html
    images = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)
    assert len(images) == 5


@pytest.mark.slow
def test_client_bound_banner_lists_reasons(tmp_path: Path) -> None:
    records = [ok_record(i, i * 0.1, lag=0.05) for i in range(30)]
    html = page(write_run(tmp_path / "run", records))
    assert "CLIENT-BOUND RUN" in html
    assert "schedule lag p99 50.0 ms &gt; 10 ms" in html


def test_all_failed_run(tmp_path: Path) -> None:
    records = [
        failed_record(i, i * 0.5, "http_5xx", "503", f"bad gateway {i}", status=503)
        for i in range(12)
    ]
    html = page(write_run(tmp_path / "run", records))
    assert_safe(html)
    assert "100.00%" in html
    assert "http_5xx.503" in html
    assert html.count("bad gateway") == 3  # three examples, no more
    # failures and lag histogram; no latency or lengths without an ok request
    assert html.count("<img ") == 2
    assert "Lengths (ok requests)" not in html


def test_run_with_no_ok_request_interrupted_before_any_finished(tmp_path: Path) -> None:
    records = [unsent_record(i, i * 0.1, "cancelled") for i in range(3)]
    records += [unsent_record(3 + i, 0.3 + i * 0.1) for i in range(5)]
    html = page(write_run(tmp_path / "run", records, status="interrupted"))
    assert_safe(html)
    assert "interrupted" in html
    assert "did not finish" in html
    assert "No request failed." in html


@pytest.mark.slow
def test_interrupted_mixed_run(tmp_path: Path) -> None:
    records = [ok_record(i, i * 0.2) for i in range(20)]
    records.append(failed_record(20, 4.0, "reset", "mid_stream", status=200))
    records += [unsent_record(21, 4.2, "cancelled"), unsent_record(22, 4.4)]
    html = page(write_run(tmp_path / "run", records, status="interrupted"))
    assert "did not finish (interrupted)" in html
    assert "reset.mid_stream" in html
    assert html.count("<img ") == 5


@pytest.mark.slow
def test_run_without_streaming_chunks(tmp_path: Path) -> None:
    records = [ok_record(i, i * 0.3, stream=False) for i in range(10)]
    html = page(write_run(tmp_path / "run", records))
    assert_safe(html)
    assert html.count("<img ") == 4  # no failures figure


@pytest.mark.slow
def test_single_request(tmp_path: Path) -> None:
    html = page(write_run(tmp_path / "run", [ok_record(0, 0.0, n=1)]))
    assert_safe(html)
    assert fmt_ms(0.05) in html


@pytest.mark.slow
def test_killed_run_without_summary_is_reported_from_records(tmp_path: Path) -> None:
    records = [ok_record(i, i * 0.2) for i in range(5)]
    html = page(write_run(tmp_path / "run", records, summary=False))
    assert "summary.json is missing" in html
    assert "incomplete" in html


@pytest.mark.slow
def test_hostile_text_renders_inert(tmp_path: Path) -> None:
    records = [ok_record(i, i * 0.1, model=HOSTILE) for i in range(5)]
    records.append(failed_record(5, 0.5, HOSTILE, HOSTILE, HOSTILE, model=HOSTILE))
    records.append(failed_record(6, 0.6, "http_4xx", "400", '"><img src=x onerror=alert(1)>'))
    config = {"model": HOSTILE, "url": f"http://h/{HOSTILE}", "backend": HOSTILE}
    run_dir = write_run(tmp_path / "run", records, config=config)
    html = page(run_dir)
    assert_safe(html)
    assert HOSTILE not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "onerror=alert(1)&gt;" in html


def test_no_plots_and_cli(tmp_path: Path, mixed_run: Path) -> None:
    app = typer.Typer()
    app.command()(report)
    result = CliRunner().invoke(app, [str(mixed_run), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {mixed_run / 'report.html'}"
    html = (mixed_run / "report.html").read_text()
    assert "<img" not in html
    assert "--no-plots" in html


def test_missing_or_empty_run_dir_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InputError, match=re.escape(str(missing))):
        render_run(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=re.escape(str(empty))):
        render_run(empty)
    (empty / "records.jsonl").touch()  # bench touched it, then died before any request ended
    with pytest.raises(InputError, match="holds no run"):
        render_run(empty)


def test_cli_reports_bad_run_dir(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(report)
    result = CliRunner().invoke(app, [str(tmp_path / "nope")])
    assert isinstance(result.exception, InputError)
    assert str(tmp_path / "nope") in str(result.exception)


def test_corrupt_summary_is_an_input_error(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", [ok_record(0, 0.0)])
    (run_dir / "summary.json").write_text("[1, 2")
    with pytest.raises(InputError, match=r"summary\.json"):
        render_run(run_dir)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0000421, "0.042"), (0.0042, "4.20"), (0.042, "42.0"), (4.2, "4,200"), (None, "-")],
)
def test_milliseconds_are_formatted_by_size(seconds: float | None, text: str) -> None:
    assert fmt_ms(seconds) == text


def test_a_row_shares_the_precision_of_its_median() -> None:
    assert fmt_ms(0.0142, like=0.0004) == "14.200"
    assert fmt_ms(0.0099999, like=0.0099999) == "10.00"


def test_windows_are_round_and_few() -> None:
    records = [ok_record(i, i * 3.0) for i in range(400)]  # 1,197 s
    table = records_table([dataclasses.asdict(r) for r in records])
    assert window_for(table) == 30.0
    assert window_for(table.head(1)) == 0.1
    assert window_for(table.head(12)) == 10.0  # 33 s, 12 requests: five windows at most
