"""The run directory on a bad day: a disk that fills mid-record, a path that is a file,
a run that fails or stops early."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from burstlab.core.errors import InputError
from burstlab.results.manifest import Manifest
from burstlab.results.records import Record, RecordWriter, load_records
from burstlab.results.rundir import RESERVE, RunDir
from burstlab.results.summary import summarize


class FillingFile:
    """A raw file that takes ``room`` more bytes, then is full (``ENOSPC``)."""

    def __init__(self, real: object, room: int) -> None:
        self.real = real
        self.room = room
        self.closed = False

    def write(self, data: memoryview) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = min(len(data), self.room)
        self.real.write(bytes(data[:n]))  # type: ignore[attr-defined]
        self.room -= n
        return n

    def fileno(self) -> int:
        return self.real.fileno()  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self.closed = True
        self.real.close()  # type: ignore[attr-defined]


def test_a_disk_that_fills_mid_record_raises_and_leaves_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    writer = RecordWriter(path)
    for i in range(3):
        writer.write(Record(request_id=i, arrival_s=float(i), outcome="ok"))
    writer._fh = FillingFile(writer._fh, room=40)  # type: ignore[assignment]
    with pytest.raises(OSError, match="No space") as info:
        writer.write(Record(request_id=3, arrival_s=3.0, outcome="ok"))
    assert info.value.errno == errno.ENOSPC
    assert writer.count == 3
    writer._fh.close()
    table = load_records(path)  # the torn last line is left out, the rest is intact
    assert table["request_id"].to_list() == [0, 1, 2]


def test_a_file_is_not_a_run_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        RunDir.create(tmp_path / "f")
    assert (tmp_path / "f").read_text() == "x"


def test_disk_is_held_back_while_a_run_is_written(tmp_path: Path) -> None:
    with RunDir.create(tmp_path / "run") as run:
        assert (run.path / RESERVE).is_file()
        run.release_reserve()
        assert not (run.path / RESERVE).exists()
        run.release_reserve()  # twice is fine
    with RunDir.create(tmp_path / "run2") as run:
        pass
    assert not (run.path / RESERVE).exists()


def test_a_failed_run_says_so_and_why(tmp_path: Path) -> None:
    with RunDir.create(tmp_path / "run") as run:
        manifest = Manifest(kind="bench", scheduled=3, status="failed", reason="boom")
        run.write_manifest(manifest)
    saved = RunDir(tmp_path / "run").manifest()
    assert saved is not None
    assert (saved.status, saved.reason) == ("failed", "boom")


def test_an_interrupted_summary_says_what_stopped_it(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    writer = RecordWriter(path)
    writer.write(Record(request_id=0, arrival_s=0.0, run_id="r1"))
    writer.close()
    table = load_records(path)
    assert table["run_id"].to_list() == ["r1"]
    summary = summarize(table, status="interrupted", stopped_by="disk_full")
    again = type(summary).model_validate_json(summary.model_dump_json())
    assert again.stopped_by == "disk_full"
