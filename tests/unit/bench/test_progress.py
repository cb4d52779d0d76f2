"""The live view: counts and rolling figures from records, drawn without a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from burstlab.bench.progress import LiveProgress
from burstlab.results.records import Record


def test_live_view_shows_counts_rate_lag_and_ttft() -> None:
    out = io.StringIO()
    progress = LiveProgress(Console(file=out, width=120, force_terminal=False))
    progress.start(4)
    for i in range(3):
        progress.sent_one()
        rec = Record(request_id=i, arrival_s=i * 0.5, outcome="ok")
        rec.dispatched_s = i * 0.5 + 0.002
        rec.sent_s = rec.dispatched_s
        rec.first_s = rec.sent_s + 0.05
        rec.end_s = rec.first_s + 0.1
        progress.add(rec)
    failed = Record(request_id=3, arrival_s=1.5)
    failed.fail("http_5xx", "503")
    progress.add(failed)
    progress.refresh()
    progress.stop()
    text = out.getvalue()
    assert "4/4" in text
    assert "50.0 ms" in text  # rolling TTFT p50
    assert "2.0 ms" in text  # lag p99
    assert progress.ok == 3
    assert progress.failed == 1
    assert progress.sent == 3
