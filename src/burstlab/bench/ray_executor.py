"""``bench --executor ray``: the open-loop client spread over a Ray cluster.

One actor per chosen core (``--workers N``, default one per CPU the cluster
reports), placed by a ``SPREAD`` placement group of one-CPU bundles so the actors
land on as many nodes as there are. Each actor runs exactly what a ``--workers``
process runs (:func:`burstlab.bench.workers.execute`: the same
:class:`~burstlab.bench.runner.Runner` on its own uvloop event loop) on every
``N``-th root of the schedule, so a session stays on one actor.

One absolute schedule: before ``t0`` the driver measures each node's wall clock
against its own (:data:`PROBES` round trips, keeping the one with the shortest
round trip, NTP style), then sends every actor ``t0`` on the driver's wall clock
plus its node's offset; the actor turns it into its own ``perf_counter``. The
offsets, their round trips, their drift over the run and how far apart the
actors' first sends were are kept in ``run.json`` (``cluster``).

Nodes share no file system: an actor keeps its records in memory and the driver
takes them every :data:`POLL_S` seconds and appends them to ``records.jsonl`` as
a process run does, so a crash keeps what reached the driver. Each record names
its ``worker`` (the actor) and its ``node``. An actor that dies is accounted for:
each of its requests with no record becomes one (``error_subkind``
``actor_lost``; ``failed`` when it may have been sent, ``not_sent`` when it could
not have been), so the records still hold every scheduled request once. Ctrl-C
and SIGTERM reach the actors as a stop level, as they reach worker processes.

Ray is imported here only, when a run asks for it (``burstlab[ray]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from burstlab.bench.config import BenchConfig, Prepared
from burstlab.bench.runner import Runner, Schedule, make_schedule, write_failure
from burstlab.bench.stop import StopState
from burstlab.bench.workers import Job, Outcome, execute
from burstlab.core.errors import BurstlabError, InputError
from burstlab.core.version import __version__
from burstlab.results.manifest import Cluster, Manifest, NodeClock
from burstlab.results.records import Record, RecordWriter
from burstlab.results.rundir import RunDir

#: Clock probes per actor; the one with the shortest round trip gives the offset.
PROBES = 16
#: Seconds between the driver's takes of the actors' records.
POLL_S = 0.1
#: Least seconds between sending ``t0`` and ``t0`` (more when round trips are long).
LEAD_S = 0.5
#: Seconds to wait for the cluster to place the actors and for them to get ready.
START_TIMEOUT_S = 180.0
#: The Ray namespace of the actors (``burstlab-<run_id>-<k>``).
NAMESPACE = "burstlab"
#: Seconds a stopped run waits for its actors after cancelling everything in flight.
DRAIN_TIMEOUT_S = 60.0


@dataclass(slots=True)
class RayCluster:
    """The Ray session a run uses and how many actors it places. ``owned``: this
    run started (or joined) Ray itself and shuts it down at the end."""

    address: str | None
    actors: int
    cpus: int
    owned: bool

    def close(self) -> None:
        if self.owned:
            import ray  # noqa: PLC0415 - the optional extra

            ray.shutdown()


def connect(config: BenchConfig) -> RayCluster:
    """Join the Ray cluster of ``config`` (or reuse the session this process already
    has), and check it has a CPU for each actor. Called before the run directory
    exists: a missing Ray, a cluster that cannot be reached or is too small is an
    error that leaves nothing behind."""
    try:
        import ray  # noqa: PLC0415 - the optional extra
    except ImportError:
        raise InputError(
            "ray is not installed", field="--executor", hint="pip install 'burstlab[ray]'"
        ) from None
    owned = not ray.is_initialized()
    if owned:
        address = config.address or os.environ.get("RAY_ADDRESS") or None
        hint = "start it with `ray start --head` and pass --address HOST:6379 (or auto)"
        _check_reachable(address, hint)
        try:
            ray.init(
                address=config.address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            where = address or "a local Ray"
            raise BurstlabError(
                f"cannot join the Ray cluster at {where}: {exc}", hint=hint
            ) from None
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))  # type: ignore[no-untyped-call]
        explicit = "workers" in config.model_fields_set
        actors = config.workers if explicit else max(cpus, 1)
        if actors > cpus:
            raise InputError(
                f"{actors} Ray actors need {actors} CPUs; the cluster has {cpus}",
                field="--workers",
                hint="pass fewer --workers, or add nodes with `ray start --address ...`",
            )
    except BaseException:
        if owned:
            ray.shutdown()
        raise
    return RayCluster(config.address, actors, cpus, owned)


def _check_reachable(address: str | None, hint: str) -> None:
    """Refuse at once a ``HOST:PORT`` (or ``ray://HOST:PORT``) nothing listens on: Ray
    itself would retry for minutes. ``auto`` and a local Ray are left to Ray."""
    if address is None or address == "auto" or address.startswith("local"):
        return
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(
            f"{address!r} is not HOST:PORT, ray://HOST:PORT or auto", field="--address"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BurstlabError(
            f"cannot reach the Ray cluster at {address}: {reason}", hint=hint
        ) from None


# --- the actor ------------------------------------------------------------------------------


class _Level:
    """The stop level the driver asks for (``StopState``'s ``shared``)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class _Stream:
    """The records an actor has not yet handed to the driver (a
    :class:`~burstlab.results.records.RecordSink`): each one serialized as the
    request ends, stamped with the node, and kept until :meth:`take`. It also
    notes the earliest send, for the start spread."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.lines: list[bytes] = []
        self.ids: list[int] = []
        self.lock = threading.Lock()
        self.first: tuple[float, float] | None = None  # (intended, lag) of the earliest send

    def write(self, record: Record) -> None:
        record.node = self.node
        line = orjson.dumps(record) + b"\n"
        if record.dispatched_s is not None and (
            self.first is None or record.arrival_s < self.first[0]
        ):
            self.first = (record.arrival_s, record.dispatched_s - record.arrival_s)
        with self.lock:
            self.lines.append(line)
            self.ids.append(record.request_id)

    def sync(self) -> None:
        """Nothing to do: the driver writes and syncs the file."""

    def close(self) -> None:
        """Nothing to do: what is left goes to the driver with the outcome."""

    def take(self) -> tuple[bytes, list[int]]:
        with self.lock:
            lines, ids = self.lines, self.ids
            self.lines, self.ids = [], []
        return b"".join(lines), ids


class ClientActor:
    """One Ray actor: one share of the schedule on its own event loop (a thread of
    the actor; the other methods answer the driver meanwhile)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.stream = _Stream("")
        self.ready = threading.Event()
        self.started = threading.Event()
        self.t0_perf_ns = 0
        self.level = _Level()
        self.lock = threading.Lock()
        self.runner: Runner | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def where(self) -> dict[str, Any]:
        """Where this actor runs: its Ray node, the node's address and host name, its
        process and the burstlab it imports."""
        import ray  # noqa: PLC0415 - the optional extra

        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "address": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "burstlab": __version__,
        }

    def clock(self) -> int:
        """This node's wall clock, ns (a probe of its offset)."""
        return time.time_ns()

    def run(self, table: pl.DataFrame, node: str) -> tuple[Outcome, bytes, list[int], float | None]:
        """Run this actor's share; return how it ended, the records not yet taken,
        and the lag of its earliest send (s, its own clock)."""
        self.stream.node = node
        stop = StopState(self.level)
        outcome = execute(
            self.job,
            self._await_t0,
            stop,
            (),
            table=table,
            writer=self.stream,
            attach=self._attach,
        )
        lines, ids = self.stream.take()
        first = self.stream.first
        return outcome, lines, ids, first[1] if first is not None else None

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether the actor is ready to start (its share built, its loop up)."""
        return self.ready.wait(timeout_s)

    def start(self, t0_wall_ns: int) -> float:
        """Start at ``t0_wall_ns`` on this node's wall clock; return the seconds left
        until then (negative: the start came late)."""
        wall, perf = time.time_ns(), time.perf_counter_ns()
        self.t0_perf_ns = perf + (t0_wall_ns - wall)
        self.started.set()
        return (t0_wall_ns - wall) / 1e9

    def take(self) -> tuple[bytes, list[int]]:
        """The records that ended since the last take."""
        return self.stream.take()

    def stop(self, level: int, reason: str) -> None:
        """Stop the run as a signal would (1: no new sends, the grace period; 2:
        cancel what is in flight); before the first send it is applied then."""
        with self.lock:
            self.level.value = max(self.level.value, level)
            runner, loop = self.runner, self.loop
        if runner is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
                loop.call_soon_threadsafe(lambda: runner.stop(reason, now=level >= 2))

    def _attach(self, runner: Runner) -> None:
        with self.lock:
            self.runner = runner
            self.loop = asyncio.get_running_loop()

    def _await_t0(self) -> int:
        self.ready.set()
        self.started.wait()
        return self.t0_perf_ns


# --- the driver -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Actor:
    """The driver's view of one actor."""

    k: int
    handle: Any
    node: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    run: Any = None
    recorded: set[int] = field(default_factory=set)
    outcome: Outcome | None = None
    first_lag_s: float | None = None
    lost: str | None = None
    died_at_s: float = 0.0


@dataclass(slots=True)
class _Driver:
    out: RunDir
    ready: Prepared
    run_id: str
    stop: StopState
    progress: Any | None
    notify: Callable[[str], None] | None
    writer: RecordWriter
    actors: list[_Actor] = field(default_factory=list)
    write_error: str | None = None
    #: ``disk_full`` or ``write_error`` once the records could not be written.
    write_failure: str | None = None
    level_sent: int = 0
    t0_perf_ns: int = 0
    synced: float = field(default_factory=time.monotonic)

    def say(self, message: str) -> None:
        if self.notify is not None:
            self.notify(message)

    def forward(self) -> None:
        """Pass a new stop level on to every live actor."""
        level = 2 if self.write_error is not None else self.stop.level
        if level > self.level_sent:
            self.level_sent = level
            reason = self.write_failure or self.stop.reason or "sigint"
            for a in self.actors:
                if a.lost is None:
                    a.handle.stop.remote(level, reason)

    def keep(self, actor: _Actor, lines: bytes, ids: list[int]) -> None:
        """Append an actor's records to the records file (and the live view)."""
        if not ids:
            return
        actor.recorded.update(ids)
        if self.write_error is None:
            try:
                self.writer.write_lines(lines, len(ids))
            except OSError as exc:
                self.failed_write(exc)
        if self.progress is not None:
            for line in lines.splitlines():
                row = orjson.loads(line)
                self.progress.add(Record(**{k: row[k] for k in row if k in Record.__slots__}))
        if time.monotonic() - self.synced >= 1.0 and self.write_error is None:
            self.synced = time.monotonic()
            try:
                self.writer.sync()
            except OSError as exc:
                self.failed_write(exc)

    def failed_write(self, exc: OSError) -> None:
        """The records cannot be written: cancel everything at once, as a process run does."""
        if self.write_error is None:
            self.write_error = exc.strerror or str(exc)
            self.write_failure = write_failure(exc)
            self.forward()

    def lose(self, actor: _Actor, exc: BaseException) -> None:
        if actor.lost is None:
            actor.lost = _reason(exc)
            actor.died_at_s = (time.perf_counter_ns() - self.t0_perf_ns) / 1e9
            self.say(f"Ray actor {actor.k} on {actor.node or '?'} was lost: {actor.lost}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def run_ray(
    *,
    out: RunDir,
    ready: Prepared,
    manifest: Manifest,
    cluster: RayCluster,
    stop: StopState,
    anchor: dict[str, Any],
    progress: Any | None,
    notify: Callable[[str], None] | None = None,
) -> list[Outcome]:
    """Run the schedule on ``cluster.actors`` actors (see the module's docstring);
    return each actor's outcome, its health readings naming its ``node``. ``anchor``
    gets ``t0`` on the driver's clocks and the :class:`Cluster` description (also
    written to ``run.json`` before the first send). A stop before ``t0`` (Ctrl-C
    while the cluster places the actors) ends the run with every request not sent."""
    import ray  # noqa: PLC0415 - the optional extra
    from ray.util.placement_group import placement_group, remove_placement_group  # noqa: PLC0415 - the optional extra

    table = out.schedule()
    assert table is not None, "the schedule is written before the actors start"
    schedule = make_schedule(table)
    n = cluster.actors
    driver = _Driver(out, ready, manifest.run_id, stop, progress, notify, out.records_writer())
    driver.actors = [_Actor(k, None) for k in range(n)]
    group = placement_group([{"CPU": 1}] * n, strategy="SPREAD")
    try:
        try:
            margins, nodes, info = _start(
                ray,
                driver,
                group=group,
                table=table,
                cluster=cluster,
                manifest=manifest,
                anchor=anchor,
            )
        except _StoppedBeforeStartError:
            for a in driver.actors:
                a.lost = a.lost or "the run was stopped before it started"
            _fill(driver, schedule, lost=False)
            return [Outcome(health={"node": a.node}) for a in driver.actors]
        _drain(ray, driver)
        _fill(driver, schedule, lost=True)
        after = _clocks(ray, [a for a in driver.actors if a.lost is None], probes=PROBES // 2)
        anchor["cluster"] = _described(info, driver, nodes, after, margins)
        return [
            Outcome(
                health={**(a.outcome.health if a.outcome else {}), "node": a.node},
                stopped_by=driver.write_failure
                if a.k == 0 and driver.write_failure
                else (a.outcome.stopped_by if a.outcome else None),
                write_error=driver.write_error if a.k == 0 else None,
            )
            for a in driver.actors
        ]
    finally:
        for a in driver.actors:
            if a.handle is not None:
                with contextlib.suppress(Exception):
                    ray.kill(a.handle)
        with contextlib.suppress(Exception):
            remove_placement_group(group)
        driver.writer.close()


class _StoppedBeforeStartError(Exception):
    """A stop came before ``t0``."""


def _start(
    ray: Any,
    driver: _Driver,
    *,
    group: Any,
    table: pl.DataFrame,
    cluster: RayCluster,
    manifest: Manifest,
    anchor: dict[str, Any],
) -> tuple[list[float | None], dict[str, NodeClock], Cluster]:
    """Place the actors, hand them their shares, measure the clocks and send ``t0``;
    the start margins, the node clocks and the cluster description."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy  # noqa: PLC0415 - the optional extra

    ready, stop, n = driver.ready, driver.stop, cluster.actors
    placed = group.ready()
    _wait(lambda: _done(ray, [placed]), stop, f"the Ray cluster to place {n} actors")
    remote = ray.remote(ClientActor)
    config_json = ready.config.model_dump_json()
    for a in driver.actors:
        job = Job(str(driver.out.path), config_json, ready.headers, manifest.run_id, a.k, n)
        a.handle = remote.options(
            num_cpus=1,
            max_concurrency=4,
            max_restarts=0,
            name=f"burstlab-{manifest.run_id}-{a.k}",
            namespace=NAMESPACE,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=a.k
            ),
        ).remote(job)
    _place(ray, driver)
    table_ref = ray.put(table)
    for a in driver.actors:
        a.run = a.handle.run.remote(table_ref, a.node)
    _wait(lambda: _all_ready(ray, driver), stop, "the actors to get ready")
    nodes = _clocks(ray, driver.actors)
    if not nodes:
        raise BurstlabError("no Ray actor answered the clock probe")
    lead = max(LEAD_S, 10 * max(c.rtt_s for c in nodes.values()))
    t0_wall = time.time_ns() + int(lead * 1e9)
    driver.t0_perf_ns = time.perf_counter_ns() + int(lead * 1e9)
    anchor["t0_wall_ns"] = t0_wall
    anchor["t0_perf_ns"] = driver.t0_perf_ns
    info = Cluster(address=cluster.address, actors=n, lead_s=lead, nodes=list(nodes.values()))
    anchor["cluster"] = info
    driver.out.write_manifest(
        manifest.model_copy(
            update={"cluster": info, "t0_wall_ns": t0_wall, "t0_perf_ns": driver.t0_perf_ns}
        )
    )
    driver.forward()  # a stop that came meanwhile: the actors apply it before any send
    offsets = {c.node: int(c.offset_s * 1e9) for c in nodes.values()}
    for a in driver.actors:
        if a.node not in offsets:
            driver.lose(a, ConnectionError(f"no actor on node {a.node} answered the clock probe"))
    starts = [
        a.handle.start.remote(t0_wall + offsets[a.node]) if a.node in offsets else None
        for a in driver.actors
    ]
    return _gather(ray, driver, starts), nodes, info


def _done(ray: Any, refs: list[Any]) -> bool:
    """Whether every one of ``refs`` is ready (waits up to 0.2 s)."""
    finished, _ = ray.wait(refs, num_returns=len(refs), timeout=0.2)
    return len(finished) == len(refs)


def _wait(check: Callable[[], bool], stop: StopState, what: str) -> None:
    """Poll ``check`` until it holds; an error after :data:`START_TIMEOUT_S`. A stop
    (Ctrl-C) ends the wait: the run stops before its first send."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not check():
        if stop.level:
            raise _StoppedBeforeStartError
        if time.monotonic() > deadline:
            raise BurstlabError(
                f"timed out after {START_TIMEOUT_S:g} s waiting for {what}",
                hint="`ray status` shows the cluster's nodes and free CPUs",
            )


def _place(ray: Any, driver: _Driver) -> None:
    """Ask each actor where it runs; name each node by its address (with a piece of
    its Ray id where two nodes share one); refuse a node whose burstlab differs."""
    refs = [a.handle.where.remote() for a in driver.actors]
    _wait(lambda: _done(ray, refs), driver.stop, "the actors to start")
    infos = ray.get(refs)
    ids_by_address: dict[str, set[str]] = {}
    for info in infos:
        ids_by_address.setdefault(info["address"], set()).add(info["node_id"])
    for a, info in zip(driver.actors, infos, strict=True):
        if info["burstlab"] != __version__:
            raise BurstlabError(
                f"Ray node {info['address']} runs burstlab {info['burstlab']}; "
                f"this one is {__version__}",
                hint="install the same burstlab on every node",
            )
        shared = len(ids_by_address[info["address"]]) > 1
        a.info = info
        a.node = f"{info['address']}/{info['node_id'][:8]}" if shared else info["address"]


def _all_ready(ray: Any, driver: _Driver) -> bool:
    """Whether every actor is ready to start; an actor whose run ended before t0 (it
    failed to set up) raises its error."""
    finished, _ = ray.wait([a.run for a in driver.actors], timeout=0)
    for ref in finished:
        ray.get(ref)  # raises the actor's error
        raise BurstlabError("a Ray actor ended before the run started")
    answers = ray.get([a.handle.wait_ready.remote(0.2) for a in driver.actors])
    return all(answers)


def _clocks(ray: Any, actors: list[_Actor], probes: int = PROBES) -> dict[str, NodeClock]:
    """Each node's wall-clock offset from the driver's, asked of one of its actors
    (they share the node's clock): of ``probes`` round trips, the one with the
    shortest, its reply taken as read at the round trip's midpoint (NTP's estimate,
    right to within half the trip). A node none of whose actors answers is left out."""
    out: dict[str, NodeClock] = {}
    for a in actors:
        if a.node in out:
            out[a.node].actors.append(a.k)
            continue
        best: tuple[int, int] | None = None  # (rtt, offset), ns
        try:
            for _ in range(probes):
                sent = time.time_ns()
                remote = ray.get(a.handle.clock.remote())
                back = time.time_ns()
                if best is None or back - sent < best[0]:
                    best = (back - sent, remote - (sent + back) // 2)
        except ray.exceptions.RayActorError:
            continue  # the node's next actor is asked
        assert best is not None
        out[a.node] = NodeClock(
            node=a.node,
            node_id=a.info["node_id"],
            address=a.info["address"],
            hostname=a.info["hostname"],
            actors=[a.k],
            offset_s=best[1] / 1e9,
            rtt_s=best[0] / 1e9,
        )
    return out


def _gather(ray: Any, driver: _Driver, refs: list[Any]) -> list[float | None]:
    """The answers of one call per actor (None: no call); None (and the actor
    marked lost) where the actor died."""
    answers: list[float | None] = []
    for a, ref in zip(driver.actors, refs, strict=True):
        if ref is None:
            answers.append(None)
            continue
        try:
            answers.append(ray.get(ref))
        except ray.exceptions.RayActorError as exc:
            driver.lose(a, exc)
            answers.append(None)
    return answers


def _drain(ray: Any, driver: _Driver) -> None:
    """Until every actor's run has ended (or the actor died): take each one's new
    records every :data:`POLL_S` seconds and append them; pass stops on."""
    errors = (ray.exceptions.RayActorError, ray.exceptions.RayTaskError)
    cancelled_at: float | None = None
    while True:
        live = [a for a in driver.actors if a.lost is None and a.outcome is None]
        if not live:
            return
        done, _ = ray.wait([a.run for a in live], num_returns=len(live), timeout=POLL_S)
        driver.forward()
        ended = set(done)
        takes = [(a, a.handle.take.remote()) for a in live if a.run not in ended]
        for a in live:
            if a.run in ended:
                try:
                    outcome, lines, ids, first = ray.get(a.run)
                except errors as exc:
                    driver.lose(a, exc)
                    continue
                driver.keep(a, lines, ids)
                a.outcome, a.first_lag_s = outcome, first
        for a, ref in takes:
            try:
                lines, ids = ray.get(ref)
            except errors as exc:
                driver.lose(a, exc)
                continue
            driver.keep(a, lines, ids)
        if driver.progress is not None:
            driver.progress.refresh()
        if driver.level_sent >= 2:
            cancelled_at = cancelled_at or time.monotonic()
            if time.monotonic() - cancelled_at > DRAIN_TIMEOUT_S:
                for a in live:
                    driver.lose(a, TimeoutError("did not end after its requests were cancelled"))


def _fill(driver: _Driver, schedule: Schedule, *, lost: bool) -> None:
    """A record for each request of a lost actor that has none. After the start
    (``lost``): ``failed`` (``internal.actor_lost``) if it may have been sent (its
    intended time had come when the actor was lost, or the turn before it had
    ended), else ``not_sent`` (``actor_lost``). Before it: ``not_sent``, as a run
    stopped before its first send."""
    for a in driver.actors:
        if a.lost is None:
            continue
        job = Job("", "", {}, driver.run_id, a.k, len(driver.actors))
        lines: list[bytes] = []
        ids: list[int] = []
        for root in job.roots(schedule):
            i, before_recorded = root, False
            while i >= 0:
                if i not in a.recorded:
                    due = i == root and float(schedule.arrival_s[i]) <= a.died_at_s
                    rec = _lost_record(schedule, i, a, driver.run_id)
                    if not lost:
                        rec.error_subkind = rec.error_text = None
                    elif due or before_recorded:
                        rec.fail("internal", "actor_lost", rec.error_text)
                    lines.append(orjson.dumps(rec) + b"\n")
                    ids.append(i)
                before_recorded = i in a.recorded
                i = schedule.follow[i]
        driver.keep(a, b"".join(lines), ids)
        if lost and ids:
            driver.say(
                f"Ray actor {a.k}: {len(ids)} of its requests had no record; "
                "each is recorded as actor_lost"
            )


def _lost_record(schedule: Schedule, i: int, actor: _Actor, run_id: str) -> Record:
    """Request ``i`` as never sent by ``actor`` (``not_sent``, ``actor_lost``)."""
    return Record(
        request_id=i,
        arrival_s=float(schedule.arrival_s[i]),
        model=schedule.model[i],
        log_type=schedule.log_type[i],
        session_id=schedule.session_id[i],
        turn=schedule.turn[i],
        input_tokens=schedule.input_tokens[i],
        output_tokens=schedule.output_tokens[i],
        failed=True,
        error_subkind="actor_lost",
        error_text=f"the Ray actor running it was lost ({actor.lost})",
        worker=actor.k,
        node=actor.node or None,
        run_id=run_id,
    )


def _described(
    info: Cluster,
    driver: _Driver,
    before: dict[str, NodeClock],
    after: dict[str, NodeClock],
    margins: list[float | None],
) -> Cluster:
    """The cluster description once the run is over: drift, start lags and spread."""
    nodes = []
    for name, clock in before.items():
        lags = [a.first_lag_s for a in driver.actors if a.node == name]
        known = [x for x in lags if x is not None]
        drift = after[name].offset_s - clock.offset_s if name in after else None
        nodes.append(
            clock.model_copy(
                update={"drift_s": drift, "start_lag_s": max(known) if known else None}
            )
        )
    firsts = [a.first_lag_s for a in driver.actors if a.first_lag_s is not None]
    known_margins = [m for m in margins if m is not None]
    return info.model_copy(
        update={
            "nodes": nodes,
            "start_margin_s": min(known_margins) if known_margins else None,
            "start_spread_s": max(firsts) - min(firsts) if firsts else None,
            "lost_actors": [a.k for a in driver.actors if a.lost is not None],
        }
    )
