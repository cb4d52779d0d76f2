"""No text trace can make a reader allocate without bound (RELIABILITY.md B25, issue 14 item 4).

A NUL byte or a line longer than 1 MiB is an early ``InputError`` naming the
line, found while the file is checked a block at a time, so memory is bounded
by the block and the cap, not by the file.
"""

from __future__ import annotations

import gzip
import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from burstlab import InputError, read_trace
from burstlab.trace.source import MAX_LINE_BYTES, TextCheck, TextProblem

WriteFile = Callable[[str, str | bytes], Path]
HEAD = b"Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
ROW = b"1,ChatGPT,10,5,15,API log\n"
MOONCAKE = b'{"timestamp": 0, "input_length": 3, "output_length": 4}\n'
LATER = MOONCAKE.replace(b"0", b"2")

#: A generous bound: the faults below ran to 8.7 GB and 642 MB before the check.
PEAK_BYTES = 1 << 30
#: Also generous: the check stops after one block (milliseconds); this is a busy machine.
SECONDS = 20.0

_MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    # a safety net: a reader that does allocate without bound fails here, not the machine
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    from burstlab import InputError, read_trace
    started = time.perf_counter()
    try:
        read_trace(sys.argv[1])
        outcome = {"error": None}
    except InputError as exc:
        outcome = {"error": str(exc), "line": exc.line, "column": exc.column}
    outcome["seconds"] = time.perf_counter() - started
    outcome["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(outcome))
    """
)


class Measured(NamedTuple):
    error: str
    line: int | None
    column: int | None
    seconds: float
    maxrss: int


def measured_read(path: Path) -> Measured:
    """Read ``path`` in a fresh interpreter: the error, its time and its peak RSS."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    got = json.loads(done.stdout)
    assert got["error"] is not None, "read without an error"
    return Measured(got["error"], got["line"], got["column"], got["seconds"], got["maxrss"])


def test_sparse_2gb_csv_of_nuls_is_refused_at_once_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "zeros.csv"
    with path.open("wb") as fh:
        fh.write(HEAD + ROW)
        fh.truncate(2 * 1024**3)  # sparse: 2 GB of NULs that take no disk
    got = measured_read(path)
    assert got.error.startswith(f"{path}:3:1: NUL byte")
    assert (got.line, got.column) == (3, 1)
    assert got.seconds < SECONDS
    assert got.maxrss < PEAK_BYTES


def test_jsonl_with_a_100mb_line_is_line_too_long_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    chunk = b"a" * (1 << 20)
    with path.open("wb") as fh:
        fh.write(MOONCAKE)
        fh.write(b'{"timestamp": 1, "input_length": 3, "output_length": 4, "x": "')
        for _ in range(100):
            fh.write(chunk)
        fh.write(b'"}\n')
    got = measured_read(path)
    assert "line_too_long" in got.error
    assert (got.line, got.column) == (2, MAX_LINE_BYTES + 1)
    assert got.seconds < SECONDS
    assert got.maxrss < PEAK_BYTES


def test_gzip_of_nuls_is_refused_before_it_is_inflated_whole(tmp_path: Path) -> None:
    path = tmp_path / "zeros.csv.gz"
    zeros = gzip.compress(bytes(1 << 24))
    with path.open("wb") as fh:  # gzip members one after another are one stream
        fh.write(gzip.compress(HEAD + ROW))
        for _ in range(128):  # 2 GiB once inflated, 2 MB on disk
            fh.write(zeros)
    got = measured_read(path)
    assert "NUL byte" in got.error
    assert (got.line, got.column) == (3, 1)
    assert got.seconds < SECONDS
    assert got.maxrss < PEAK_BYTES


def test_a_nul_inside_a_row_names_its_line_and_column(write_file: WriteFile) -> None:
    path = write_file("nul.csv", HEAD + ROW + b"2,Chat\x00GPT,10,5,15,API log\n" + ROW)
    with pytest.raises(InputError, match="NUL byte") as info:
        read_trace(path)
    assert (info.value.line, info.value.column) == (3, 7)


def test_a_nul_in_a_gzip_jsonl_names_its_line(write_file: WriteFile) -> None:
    path = write_file("nul.jsonl.gz", gzip.compress(MOONCAKE * 3 + b"\x00\n"))
    with pytest.raises(InputError, match="NUL byte") as info:
        read_trace(path)
    assert info.value.line == 4


def test_a_line_of_exactly_the_cap_is_read(write_file: WriteFile) -> None:
    start = b'{"timestamp": 1, "input_length": 3, "output_length": 4, "x": "'
    line = start + b"a" * (MAX_LINE_BYTES - len(start) - 2) + b'"}'
    assert len(line) == MAX_LINE_BYTES
    table, report = read_trace(write_file("cap.jsonl", MOONCAKE + line + b"\n" + LATER))
    assert report.rows_kept == table.height == 3
    with pytest.raises(InputError, match="line_too_long") as info:
        read_trace(write_file("over.jsonl", MOONCAKE + line + b" \n" + LATER))
    assert info.value.line == 2


def test_a_csv_without_newlines_after_the_header_is_line_too_long(write_file: WriteFile) -> None:
    path = write_file("run.csv.gz", gzip.compress(HEAD + b"9" * (3 * MAX_LINE_BYTES)))
    with pytest.raises(InputError, match="line_too_long") as info:
        read_trace(path)
    assert (info.value.line, info.value.column) == (2, MAX_LINE_BYTES + 1)


def _naive(text: bytes, cap: int) -> TextProblem | None:
    """The first problem by the definition: a NUL, or a line longer than ``cap`` bytes."""
    start = 0
    for i, byte in enumerate(text):
        if byte == 0:
            return TextProblem("nul", i)
        if i - start >= cap and byte != ord("\n"):
            return TextProblem("line_too_long", start + cap)
        if byte == ord("\n"):
            start = i + 1
    return None


@given(
    text=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"defgh", b"\x00", b"\r\n"]), max_size=80),
    cuts=st.lists(st.integers(0, 200), max_size=6),
    cap=st.integers(1, 9),
)
@settings(max_examples=400, deadline=None)
def test_text_check_finds_the_first_problem_across_any_block_split(
    text: list[bytes], cuts: list[int], cap: int
) -> None:
    data = b"".join(text)
    check = TextCheck(cap)
    found = None
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    for lo, hi in itertools.pairwise(bounds):
        block = bytearray(data[lo:hi]) + b"junk past n"  # only the first n bytes count
        found = check.feed(block, hi - lo)
        if found is not None:
            break
    assert found == _naive(data, cap)
    if found is None:
        assert check.size == len(data)
        assert check.line_start == data.rfind(b"\n") + 1
