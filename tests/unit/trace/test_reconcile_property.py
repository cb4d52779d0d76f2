"""Property: under --lenient every row is kept or dropped under one reason, never lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from burstlab import read_trace

HEAD = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
GOOD = st.one_of(
    st.tuples(st.integers(1, 50_000), st.integers(0, 5_000)).map(
        lambda t: ("good", f"{t[0]},{t[1]},{t[0] + t[1]},API log")
    ),
    st.just(("good", "0,0,0,API log")),  # BurstGPT's zero-token failure: kept, not dropped
)
BAD = st.sampled_from(
    [
        ("negative", "-3,4,1,API log"),
        ("not_a_number", "abc,4,4,API log"),
        ("non_finite", "NaN,4,4,API log"),
        ("zero_input", "0,4,4,API log"),
        ("not_integer", "2.5,4,4,API log"),
        ("missing_value", ",4,4,API log"),
        ("unknown_log_type", "3,4,7,Batch log"),
        ("out_of_range", "3000000,1,1,API log"),
        ("blank_line", None),
    ]
)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.one_of(GOOD, BAD), min_size=1, max_size=40))
def test_counts_reconcile(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str | None]]
) -> None:
    lines = ["" if body is None else f"{i},ChatGPT,{body}" for i, (_, body) in enumerate(rows)]
    path: Path = tmp_path_factory.mktemp("p") / "t.csv"
    path.write_text(HEAD + "\n".join(lines) + "\n")
    expected: dict[str, int] = {}
    for kind, _ in rows:
        if kind != "good":
            expected[kind] = expected.get(kind, 0) + 1
    good = sum(kind == "good" for kind, _ in rows)
    if good == 0:
        return  # nothing left to keep is an error of its own, tested elsewhere
    table, report = read_trace(path, lenient=True)
    assert report.rows_read == len(rows)
    assert report.rows_kept == table.height == good
    assert report.dropped == expected
