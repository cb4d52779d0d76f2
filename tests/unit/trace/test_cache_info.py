"""The Parquet cache (hits, invalidation) and trace_info's numbers."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from burstlab import read_trace, trace_info


def test_cache_miss_then_hit_then_invalidated(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes((data_dir / "burstgpt_v3.csv").read_bytes())
    first, r1 = read_trace(path, cache=True)
    second, r2 = read_trace(path, cache=True)
    assert (r1.cache, r2.cache) == ("miss", "hit")
    assert second.equals(first)
    assert r2.rows_read == r1.rows_read
    # other options are another entry
    _, r3 = read_trace(path, cache=True, drop_failed=True)
    assert r3.cache == "miss"
    # same size and mtime but different bytes: the content hash catches it
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[data.index(b"906")] = ord("8")
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    third, r4 = read_trace(path, cache=True)
    assert r4.cache == "miss"
    assert third["input_tokens"][0] == 806


def test_cache_lives_under_burstlab_cache(data_dir: Path) -> None:
    read_trace(data_dir / "burstgpt_v1.csv", cache=True)
    root = Path(os.environ["BURSTLAB_CACHE"]) / "tables"
    assert len(list(root.glob("*.parquet"))) == 1


def test_damaged_cache_entry_is_rebuilt(data_dir: Path) -> None:
    read_trace(data_dir / "burstgpt_v1.csv", cache=True)
    root = Path(os.environ["BURSTLAB_CACHE"]) / "tables"
    next(root.glob("*.parquet")).write_bytes(b"garbage")
    table, report = read_trace(data_dir / "burstgpt_v1.csv", cache=True)
    assert report.cache == "miss"
    assert table.height == 6


def test_trace_info_known_answers(data_dir: Path) -> None:
    table, report = read_trace(data_dir / "burstgpt_v3.csv")
    info = trace_info(table, report)
    assert info.rows == 6
    assert info.span_s == pytest.approx(190.0)
    assert info.mean_rps == pytest.approx(6 / 190)
    assert info.failure_rate == pytest.approx(1 / 6)
    assert info.sessions == 2
    assert info.session_stats is not None
    assert (info.session_stats.turns_max, info.session_stats.single_turn_share) == (3, 0.5)
    # arrivals 0, 51, 82, 120.5, 121, 190: no 1-s bin holds two; 0-60 s and 120-180 s do
    assert info.peak_rps_1s == 1
    assert info.peak_rps_1m == pytest.approx(2 / 60)
    assert info.load is not None
    assert info.load.origin == "19440110.0 s"
    by = {(c.model, c.log_type): c for c in info.breakdown}
    gpt4 = by[("GPT-4", "conversation")]
    assert (gpt4.count, gpt4.input_p50, gpt4.output_p99) == (3, 1400, 446)
    assert by[("ChatGPT", "api")].failure_rate == 0.5
    assert info.load is not None
    assert info.load.rows_read == 6


def test_trace_info_on_sample_matches_polars() -> None:
    table, _ = read_trace("sample")
    info = trace_info(table)
    assert info.rows == 19366
    per_second = table.group_by((pl.col("arrival_s")).floor()).len()["len"].max()
    assert info.peak_rps_1s == per_second
    assert info.sessions == 0
    assert info.session_stats is None


def test_counts_per_bin_matches_a_group_by() -> None:
    from burstlab.trace.info import counts_per_bin

    table, _ = read_trace("sample")
    for width in (1.0, 60.0, 7.5):
        counts = counts_per_bin(table, width)
        expected = table.group_by((pl.col("arrival_s") // width).cast(pl.Int64).alias("b")).len()
        dense = dict(zip(expected["b"].to_list(), expected["len"].to_list(), strict=True))
        assert counts.sum() == table.height
        assert [dense.get(i, 0) for i in range(len(counts))] == counts.tolist()
    with pytest.raises(ValueError, match="positive"):
        counts_per_bin(table, 0)
