"""The server's own view during a run: its Prometheus ``/metrics`` polled every few seconds.

A client sees its requests in flight; only the server knows how many of them sit
in its queue, how many hold a slot and how full its KV cache is. With
``--scrape-metrics SECONDS`` bench polls ``URL/metrics`` from a thread of the main
process (off the client's event loop) and appends one JSON line per scrape to
``RUN_DIR/server_metrics.jsonl``: ``t_ns`` (``perf_counter_ns``, the run's clock)
and every sample's value by name (labels kept as ``name{k="v"}``). The text is
parsed with ``prometheus_client``'s parser.

llama.cpp's ``llama-server --metrics`` exposes ``llamacpp:requests_processing``
(slots busy), ``llamacpp:requests_deferred`` (requests waiting for a slot) and
token counters; its KV use is not among them in current versions, so the
scraper also reads ``/slots`` where it answers and adds ``slots:kv_tokens``
(prompt and generated tokens held by busy slots), ``slots:n_ctx`` (their context
in all) and ``slots:busy``. :func:`read_server_metrics` turns the file into a
table on the run's time axis, with ``kv_use`` (a ratio) from whichever source
exists. A scrape that fails is skipped (and counted); it never stops the run.
Each scrape is stamped when its answer arrived: llama-server answers ``/metrics``
from its main loop between batches, so while one long prompt batch runs (a second
or more on one thread) the scrape waits, and the series has a gap there.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import polars as pl

#: The scrapes' file in a run directory.
METRICS_FILE = "server_metrics.jsonl"

#: Server-side series the report shows, in the order shown: (column, label).
SERVER_SERIES: tuple[tuple[str, str], ...] = (
    ("queued", "waiting for a slot (llamacpp:requests_deferred)"),
    ("processing", "holding a slot (llamacpp:requests_processing)"),
    ("kv_use", "KV cache in use (ratio)"),
)


def parse_metrics(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text exposition by name, labels in the name
    (``name{k="v"}``) where it has any."""
    from prometheus_client.parser import (  # noqa: PLC0415 - only a scraping run needs it
        text_string_to_metric_families,
    )

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if sample.labels:
                inner = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                name = f"{name}{{{inner}}}"
            out[name] = float(sample.value)
    return out


def slot_values(slots: Any) -> dict[str, float]:
    """KV use from llama-server's ``/slots`` list: tokens held by busy slots
    (``n_prompt_tokens`` plus ``next_token[0].n_decoded``), the context of every
    slot, and the busy count. An answer that is not a list of slots gives nothing."""
    if not isinstance(slots, list) or not slots:
        return {}
    held = n_ctx = busy = 0
    for slot in slots:
        if not isinstance(slot, dict):
            return {}
        n_ctx += int(slot.get("n_ctx") or 0)
        if slot.get("is_processing"):
            busy += 1
            nxt = slot.get("next_token")
            decoded = nxt[0].get("n_decoded", 0) if isinstance(nxt, list) and nxt else 0
            held += int(slot.get("n_prompt_tokens") or 0) + int(decoded or 0)
    return {"slots:kv_tokens": held, "slots:n_ctx": n_ctx, "slots:busy": busy}


class MetricsScraper:
    """Polls ``url``'s ``/metrics`` (and ``/slots``) every ``interval_s`` seconds into
    ``path`` while in its ``with`` block; the first scrape is at entry, the last at exit."""

    def __init__(
        self,
        url: str,
        path: Path,
        *,
        interval_s: float = 1.0,
        headers: dict[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.base = url.rstrip("/")
        self.path = path
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        self.scrapes = 0
        self.failures = 0
        self._slots = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _get(self, path: str) -> bytes | None:
        req = urllib.request.Request(self.base + path, headers=self.headers)  # noqa: S310 - http(s) checked by bench
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                return bytes(resp.read(16 << 20))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def scrape_once(self) -> dict[str, float] | None:
        """One scrape appended to the file; None (and a failure counted) when
        ``/metrics`` does not answer or is not Prometheus text."""
        raw = self._get("/metrics")
        # The server counts when its loop takes the request (llama-server: between two
        # batches, which on one thread can be a second apart): the answer's arrival is
        # nearer that moment than the ask.
        t_ns = time.perf_counter_ns()
        values: dict[str, float] | None = None
        if raw is not None:
            try:
                values = parse_metrics(raw.decode("utf-8", errors="replace"))
            except ValueError:
                values = None
        if values is None:
            self.failures += 1
            return None
        if self._slots:
            slots = self._get("/slots")
            try:
                extra = slot_values(orjson.loads(slots)) if slots is not None else {}
            except orjson.JSONDecodeError:
                extra = {}
            if not extra:
                self._slots = False  # no /slots here (--no-slots, another server): ask no more
            values.update(extra)
        with self.path.open("ab") as fh:
            fh.write(orjson.dumps({"t_ns": t_ns, "values": values}) + b"\n")
        self.scrapes += 1
        return values

    def _loop(self) -> None:
        self.scrape_once()
        while not self._stop.wait(self.interval_s):
            self.scrape_once()
        self.scrape_once()

    def __enter__(self) -> MetricsScraper:
        self._thread = threading.Thread(target=self._loop, name="metrics-scraper", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s * 3 + 1)


@contextlib.contextmanager
def scraping(
    url: str, path: Path, interval_s: float | None, headers: dict[str, str] | None = None
) -> Iterator[MetricsScraper | None]:
    """A :class:`MetricsScraper` while in the block, or nothing when ``interval_s`` is None."""
    if interval_s is None:
        yield None
        return
    with MetricsScraper(url, path, interval_s=interval_s, headers=headers) as scraper:
        yield scraper


def read_server_metrics(path: Path, t0_perf_ns: int | None) -> pl.DataFrame | None:
    """The scrapes as a table: ``t_s`` (seconds from the run's ``t0``; from the first
    scrape without one), one column per metric, and ``queued``, ``processing`` and
    ``kv_use`` where the server gives them. None without a file or a scrape."""
    if not path.is_file():
        return None
    rows: list[dict[str, Any]] = []
    for line in path.read_bytes().splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn last line
        if isinstance(row, dict) and isinstance(row.get("values"), dict):
            rows.append({"t_ns": int(row["t_ns"]), **row["values"]})
    if not rows:
        return None
    table = pl.from_dicts(rows, infer_schema_length=None).sort("t_ns")
    t0 = t0_perf_ns if t0_perf_ns is not None else int(table["t_ns"][0])
    table = table.with_columns(((pl.col("t_ns") - t0) / 1e9).alias("t_s"))
    derived: list[pl.Expr] = []
    cols = set(table.columns)
    if "llamacpp:requests_deferred" in cols:
        derived.append(pl.col("llamacpp:requests_deferred").alias("queued"))
    if "llamacpp:requests_processing" in cols:
        derived.append(pl.col("llamacpp:requests_processing").alias("processing"))
    if "llamacpp:kv_cache_usage_ratio" in cols:
        derived.append(pl.col("llamacpp:kv_cache_usage_ratio").alias("kv_use"))
    elif {"slots:kv_tokens", "slots:n_ctx"} <= cols:
        derived.append((pl.col("slots:kv_tokens") / pl.col("slots:n_ctx")).alias("kv_use"))
    return table.with_columns(derived) if derived else table
