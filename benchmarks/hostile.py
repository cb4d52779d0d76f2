"""Hostile-user matrices (issue 14): bad inputs, faults classified, records lost.

Measures, it does not assert: prints a table per matrix and its total, and exits 0
whatever the totals are. Everything runs on 127.0.0.1 in a temporary directory.

    .venv/bin/python benchmarks/hostile.py                  # all three (~5-8 min on 2 cores)
    .venv/bin/python benchmarks/hostile.py --only bad -v    # one matrix, every case printed

1. Bad inputs (``--only bad``)
------------------------------
Each case is one ``burstlab ...`` subprocess (the console script beside this
interpreter), in a fresh directory of its own, under an address-space limit
(``--mem-gib``, ``RLIMIT_AS``, default 4 GiB: ``simulate`` alone reserves about
3 GiB of address space) and a timeout. The cases are

- every numeric option of every command, found by walking the typer app
  (``typer.main.get_command(app)``, as ``tests/e2e/test_bad_options.py`` does),
  given ``0``, ``-1``, ``nan``, ``inf`` and ``abc``. ``0`` works for ``--seed``,
  ``generate --day``, ``plan --headroom`` and ``serve --port``; ``0`` and ``inf``
  may work or fail cleanly for ``bench --max-lag/--grace``, ``inf`` for
  ``bench --timeout/--idle-timeout``, and ``0``/``inf`` for an option this
  script does not know; everything else must fail cleanly;
- bad text options (URLs, ports, CR/LF in ``--header``, an unreachable ``--url``,
  durations, SLOs, ``--fixed``, ``--tokenizer``, an API key in the environment
  beside an explicit header or URL credentials, ``-o`` onto existing output);
- bad trace files (RELIABILITY.md 6) read by ``trace info``, ``analyze`` and
  ``bench``: truncated gzip, invalid UTF-8, NUL bytes, a 2 MB single line, a 2 GB
  NUL-padded sparse CSV, wrong or duplicate headers, negative/NaN/inf/text/huge
  numbers, ragged and torn rows, unsorted timestamps, empty and header-only
  files, bad JSONL;
- bad ``engine.yaml`` (invalid UTF-8, a ``!!python`` tag, unknown keys, wrong
  types, ``mfu: 0``), model.json, plan.json, forecast and run directories;
- valid but odd input that must work (constant lengths, one model, one instant,
  duplicate timestamps, BOM + CRLF, a gzip file named ``.csv``, a records file
  with a torn tail, ``--sort``) and secrets that must not reach any file.

A case that must fail is *clean* when the exit status is 2, stderr holds exactly
one line starting with ``error:`` (besides at most one ``hint:`` line and any
``warning:`` lines, as the project's own ``support.inproc.Result.is_clean_error``
allows), there is no ``Traceback``, and the case's directory holds nothing new
(no run directory, no partial output; an existing ``-o`` target is unchanged;
for ``fetch``, no final file and, after a checksum failure, no ``.part``). A case
that must work is clean when it exits 0 with no ``Traceback`` (``serve``: still
serving when the timeout stops it). A secret case is clean only if the secret
appears in no output and no file.

2. Faults classified (``--only faults``)
----------------------------------------
``burstlab bench`` (``--timeout 3 --idle-timeout 1``) runs against the test
suite's fault server (``tests/support/faulty_server.py``: each request's fault is
its request id modulo the fault list, every fault ``--reps`` times, with both
``--api completions`` and ``--api chat``), against a few more faults served here
(a 307 redirect carrying credentials, a stall after 3 events, an SSE-comment
drip, a role-only first chunk, a usage-only final chunk, ``[DONE]`` only, an
invalid chunk size, 5 coalesced events, a 100k-deep JSON event, an error body
with ANSI escapes), against a closed port, with ``https://`` against a plain
port, and against the fixed-timing mock server (``burstlab serve --fixed``, the
control). Each record's label (``ok``, ``ok.<subkind>`` or
``<error_kind>.<error_subkind>``) is compared with what RELIABILITY.md 4 expects
for its fault, plus the detail the bar names where there is one (``retry_after_s``
of a 429, tokens kept after a reset, ``done_missing``, a stripped ``Location``,
the redirect target never hit, a TTFT that skips the role chunk).

3. Records lost (``--only loss``)
---------------------------------
``burstlab bench`` offers ``--requests`` (2,000) requests at ``--rate`` (200/s)
to ``burstlab serve --fixed ttft=0.05,itl=0.01 --log SERVER_LOG``. The server's
log, one flushed line per request it finished (its ``X-Request-Id``,
``RUN_ID-INDEX``, and the wall time), is the oracle.

*Lost* means: a finished request with no complete record. A request is
*finished* when the server logged its end at least ``--margin`` (0.1 s) before
the client stopped (the signal for SIGKILL; the observed exit otherwise), so the
client had seen its end. A record is *complete* when its line ends with a
newline and parses as a JSON object with ``request_id`` and ``outcome`` (matched
on ``run_id`` too when the record carries it). A torn last line therefore counts
as lost only if its request had finished. Per stop:

- SIGKILL (``--kills`` runs, after 200, 500 and 900 records): lost as above.
- SIGTERM after 300 records: lost as above (cut at the observed exit, after
  any grace); the exit status, ``run.json`` status and whether the accounting
  adds up are shown beside it.
- disk full: the run directory is a 1 MiB tmpfs, mounted in a private mount
  namespace (``unshare -m``; ``unshare -rm`` when not root); skipped, with a note,
  where mounting is not permitted. A record that cannot be written on a full disk
  is not lost by the client: lost counts the finished requests with no complete
  record among those that ended before the last request that has one (gaps in
  what was written). Also shown: requests the server still served more than 1 s
  after that (the client should stop sending), tracebacks and the exit status.
- concurrent writer: a second ``bench`` into the same directory, started with
  the first (a race for the lock) and after 300 records. It must be refused
  (exit 2, one error line, no request sent); lost counts finished requests of
  either run with no complete record, and duplicated request ids are shown.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import http.server
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The fault server lives with the tests' support code (it is test code, not part of
# the package): make tests/ importable.
sys.path.insert(0, str(ROOT / "tests"))


def _burstlab() -> list[str]:
    beside = Path(sys.executable).parent / "burstlab"
    if beside.exists():
        return [str(beside)]
    venv = ROOT / ".venv" / "bin" / "burstlab"
    if venv.exists():
        return [str(venv)]
    return [sys.executable, "-c", "from burstlab.cli.app import main; main()"]


BIN = _burstlab()
HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"
AZURE_T = "2023-11-16 18:15:46.6805900"  # 7-digit fractional seconds, as Azure 2023 writes
SECRET = "sk-hostile-canary-7f3a9c"
#: An error message that clears the screen, links, and carries Rich markup (S8).
ANSI = "\x1b[2J\x1b]8;;http://x\x07click\x1b]8;;\x07 [bold]x[/]"

# Sets an address-space limit, then becomes the command: thread-safe, unlike preexec_fn.
LIMITED = (
    "import os, resource, sys\n"
    "n = int(sys.argv[1]) << 30\n"
    "resource.setrlimit(resource.RLIMIT_AS, (n, n))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


# -- subprocesses ------------------------------------------------------------------------------


@dataclass
class Proc:
    rc: int | None  # None: still running at the timeout (then killed)
    stdout: str
    stderr: str
    seconds: float


def run(
    args: list[str],
    cwd: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    mem_gib: int | None = None,
) -> Proc:
    """``args`` as a subprocess in its own session; on timeout its whole group is killed."""
    if mem_gib is not None:
        exe = shutil.which(args[0]) or args[0]
        args = [sys.executable, "-c", LIMITED, str(mem_gib), exe, *args[1:]]
    start = time.monotonic()
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc = None
    return Proc(
        rc, out.decode(errors="replace"), err.decode(errors="replace"), time.monotonic() - start
    )


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BURSTLAB_"))}
    env.update(NO_COLOR="1", TERM="dumb", COLUMNS="120", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def mock_server(
    workdir: Path, fixed: str = "ttft=0.001,itl=0.001", log: Path | None = None
) -> Iterator[str]:
    """``burstlab serve --fixed FIXED --model m`` in a subprocess (bench here names
    model ``m``; another name is a 404); yields its URL."""
    port = free_port()
    args = [*BIN, "serve", "--fixed", fixed, "--port", str(port), "--model", "m"]
    if log is not None:
        args += ["--log", str(log)]
    with (workdir / f"serve-{port}.err").open("wb") as err:
        proc = subprocess.Popen(
            args, cwd=workdir, env=base_env(), stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        if not wait_port(port):
            raise RuntimeError(f"burstlab serve did not start: {args}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def trace_csv(rows: list[tuple[float, str, int, int]]) -> str:
    lines = [HEADER] + [f"{t:g},{m},{i},{o},{i + o},Conversation log" for t, m, i, o in rows]
    return "\n".join(lines) + "\n"


def constant(n: int, rate: float, inp: int = 20, out: int = 8) -> str:
    return trace_csv([(round(k / rate, 6), "ChatGPT", inp, out) for k in range(n)])


# -- 1. bad inputs ---------------------------------------------------------------------------


@dataclass
class Case:
    group: str
    name: str
    args: list[str]
    expect: str = "error"  # error | ok | either | serving
    files: dict[str, bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    needle: str | None = None  # must appear in the error line (ok cases: in stderr)
    allow: tuple[str, ...] = ()  # new paths that are not debris (prefixes)
    timeout: float = 60.0
    secret: str | None = None  # must appear in no output and no file


@dataclass
class Verdict:
    case: Case
    clean: bool
    why: str
    seconds: float


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: a digest for files, ``dir`` for directories."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            out[rel] = "dir"
        elif path.is_file() and path.stat().st_size < 64 << 20:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = f"size {path.stat().st_size}" if path.exists() else "other"
    return out


ALWAYS_ALLOWED = ("cache", "cache/traces", "cache/tables", "home")


def judge(case: Case, proc: Proc, before: dict[str, str], after: dict[str, str], cwd: Path) -> str:
    """Why the case is not clean; empty when it is."""
    err = proc.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    hints = [line for line in lines if line.startswith("hint:")]
    others = [line for line in lines if not line.startswith(("error:", "hint:", "warning:"))]
    first = (errors or lines or [""])[0][:150]
    memory = "MemoryError" in err or "memory allocation of" in err

    if case.secret is not None:
        leaks = [
            rel
            for rel, digest in after.items()
            if digest not in ("dir", "other") and case.secret.encode() in (cwd / rel).read_bytes()
        ]
        if case.secret in proc.stdout + err:
            leaks.append("<console>")
        if leaks:
            return f"secret written to {', '.join(leaks[:4])}"

    def ok_why() -> str:
        if case.args[:1] == ["serve"] and proc.rc is None:
            if "Traceback" not in err and "serving" in proc.stdout:
                return ""
            return "did not say it was serving before the timeout"
        if proc.rc is None:
            return f"timed out after {proc.seconds:.0f} s"
        if proc.rc != 0 or "Traceback" in err:
            tb = "traceback, " if "Traceback" in err else ""
            return f"{tb}exit {proc.rc}: {(lines or [''])[-1][:150]}"
        if case.needle and case.needle not in err:
            return f"no {case.needle!r} on stderr"
        return ""

    def error_why() -> str:
        if proc.rc is None:
            return f"accepted: still running after {proc.seconds:.0f} s"
        if proc.rc < 0 or memory:
            return f"killed ({'out of memory' if memory else f'signal {-proc.rc}'})"
        if "Traceback" in err:
            return f"traceback, exit {proc.rc}: {lines[-1][:150] if lines else ''}"
        if proc.rc == 0:
            return "accepted (exit 0)"
        if proc.rc != 2:
            return f"exit {proc.rc}: {first}"
        if len(errors) != 1 or others or len(hints) > 1:
            box = " (usage box)" if "Usage:" in err or "╭" in err else ""
            return f"stderr is {len(lines)} lines{box}: {first}"
        if case.needle and case.needle not in errors[0]:
            return f"error does not name {case.needle!r}: {first}"
        changed = [rel for rel, digest in before.items() if after.get(rel) != digest]
        if changed:
            return f"changed or removed {', '.join(changed[:3])}"
        allowed = {*ALWAYS_ALLOWED, *case.allow}
        new = [
            rel
            for rel in after
            if rel not in before and rel not in allowed and not rel.startswith("home/")
        ]
        if new:
            return f"debris: {', '.join(sorted(new)[:4])}"
        return ""

    if case.expect in ("ok", "serving"):
        return ok_why()
    if case.expect == "either":
        why_ok, why_err = ok_why(), error_why()
        return "" if not why_ok or not why_err else why_err
    return error_why()


def run_case(case: Case, root: Path, index: int, mem_gib: int) -> Verdict:
    cwd = root / f"case-{index:03d}"
    cwd.mkdir()
    (cwd / "home").mkdir()
    for name, data in case.files.items():
        path = cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    before = snapshot(cwd)
    env = base_env(BURSTLAB_CACHE=str(cwd / "cache"), HOME=str(cwd / "home"), **case.env)
    proc = run([*BIN, *case.args], cwd, env=env, timeout=case.timeout, mem_gib=mem_gib)
    after = snapshot(cwd)
    why = judge(case, proc, before, after, cwd)
    # For --keep: what ran and what it said (written after the debris check).
    log = {"case": case.name, "args": case.args, "rc": proc.rc, "why": why}
    (cwd / "_case.json").write_text(json.dumps(log, indent=1))
    (cwd / "_stdout.txt").write_text(proc.stdout)
    (cwd / "_stderr.txt").write_text(proc.stderr)
    return Verdict(case, not why, why, proc.seconds)


# Shared inputs, made once with burstlab itself.


@dataclass
class Inputs:
    root: Path
    trace: Path  # two days of synthetic requests (CSV)
    model: Path  # model.json fitted to it
    forecast: Path  # a forecast directory made from it
    tiny: Path  # two requests, for bench and simulate
    run: Path  # a finished bench run of 20 requests
    url: str  # a fixed-timing mock server
    sparse: Path  # header + 2 GB of NUL bytes, sparse
    fetch_url: str  # a local HTTP server holding v9/hostile.csv
    problems: list[str] = field(default_factory=list)


def make_inputs(root: Path, url: str, fetch_url: str) -> Inputs:
    root.mkdir()
    problems = []
    trace, model, fc = root / "trace.csv", root / "model.json", root / "fc"
    tiny, runs = root / "tiny.csv", root / "run"
    tiny.write_text(constant(2, 20.0, 10, 4))
    (root / "small.csv").write_text(constant(20, 50.0, 10, 4))
    steps = [
        ["generate", "--synthetic", "--duration", "2d", "--rps", "0.01", "-o", str(trace)],
        ["fit", str(trace), "-o", str(model)],
        [*FORECAST, str(trace), "-o", str(fc)],
        ["bench", str(root / "small.csv"), "--url", url, "-o", str(runs), *QUIET],
    ]
    for args in steps:
        proc = run([*BIN, *args], root, env=base_env(), timeout=180)
        if proc.rc != 0:
            problems.append(f"setup 'burstlab {args[0]}' failed: {proc.stderr.strip()[-200:]}")
    sparse = root / "sparse.csv"
    with sparse.open("wb") as fh:
        fh.write((HEADER + "\n").encode())
        fh.truncate(2 << 30)
    return Inputs(root, trace, model, fc, tiny, runs, url, sparse, fetch_url, problems)


FORECAST = ["forecast", "--granularity", "1h", "--granularities", "1h",
            "--models", "last,moving_average", "--no-plots"]  # fmt: skip
FIXED = ["--fixed", "ttft=0.01,itl=0.01"]
QUIET = ["-q", "--no-report"]
VALUES = ("0", "-1", "nan", "inf", "abc")

#: Options found by the walk when the typer app cannot be imported (a tree mid-edit).
STATIC_OPTIONS = [
    ("analyze", "--seed"), ("bench", "--max-concurrency"), ("bench", "--max-lag"),
    ("bench", "--workers"), ("bench", "--timeout"), ("bench", "--idle-timeout"),
    ("bench", "--grace"), ("bench", "--seed"), ("fit", "--holdout"), ("fit", "--paths"),
    ("fit", "--seed"), ("forecast", "--horizon"), ("forecast", "--lags"),
    ("forecast", "--window"), ("forecast", "--test-fraction"), ("forecast", "--seed"),
    ("generate", "--day"), ("generate", "--limit"), ("generate", "--rps"),
    ("generate", "--speedup"), ("generate", "--burstiness"), ("generate", "--shape"),
    ("generate", "--length-cap"), ("generate", "--seed"), ("generate", "--zipf"),
    ("plan", "--capacity"), ("plan", "--attainment"), ("plan", "--headroom"),
    ("plan", "--min"), ("plan", "--max"), ("serve", "--port"), ("serve", "--time-scale"),
    ("serve", "--max-body"), ("serve", "--max-connections"), ("serve", "--header-timeout"),
    ("simulate", "--num-blocks"),
]  # fmt: skip

#: Options whose expectations this script knows; any other gets 0/inf as "either".
KNOWN = {*STATIC_OPTIONS}
MUST_WORK = {
    *((cmd, "--seed", "0") for cmd in ("analyze", "bench", "fit", "forecast", "generate")),
    ("generate", "--day", "0"),
    ("plan", "--headroom", "0"),
    ("serve", "--port", "0"),
}
EITHER = {
    ("bench", "--timeout", "inf"),
    ("bench", "--idle-timeout", "inf"),
    ("bench", "--max-lag", "0"),
    ("bench", "--max-lag", "inf"),
    ("bench", "--grace", "0"),
    ("bench", "--grace", "inf"),
}


def numeric_options() -> tuple[list[tuple[str, str]], str]:
    """(command, option) for every int or float option, and where the list came from."""
    try:
        import typer.main

        from burstlab.cli.app import app

        def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
            subs = getattr(command, "commands", None)
            if subs:
                for name, sub in sorted(subs.items()):
                    yield from walk(sub, (*path, name))
            else:
                yield " ".join(path), command

        found = []
        for name, command in walk(typer.main.get_command(app)):
            for param in command.params:
                if getattr(param, "param_type_name", None) != "option":
                    continue
                descriptor = getattr(param, "type_descriptor", None)
                annotation = getattr(descriptor, "annotation", None)
                if annotation in (int, float) and not getattr(param, "is_flag", False):
                    opt = next((o for o in param.opts if o.startswith("--")), param.opts[0])
                    found.append((name, opt))
        if found:
            return found, "the typer app"
    except Exception as exc:  # a tree mid-edit: fall back to the list known today
        return STATIC_OPTIONS, f"a static list (the app did not import: {exc!r:.80})"
    return STATIC_OPTIONS, "a static list (the walk found nothing)"


def option_cases(f: Inputs) -> tuple[list[Case], str]:
    base: dict[str, list[str]] = {
        "analyze": ["analyze", str(f.trace), "-o", "out", "--no-plots"],
        "bench": ["bench", str(f.tiny), "--url", f.url, "-o", "run", *QUIET],
        "fit": ["fit", str(f.trace), "-o", "model.json"],
        "generate": ["generate", str(f.trace), "-o", "w.parquet"],
        "simulate": ["simulate", str(f.tiny), "-o", "run", "--no-report"],
        "forecast": [*FORECAST, str(f.trace), "-o", "fc"],
        "plan": ["plan", "--forecast", str(f.forecast), "--capacity", "1", "-o", "plan.json"],
        "serve": ["serve", *FIXED, "--port", "0"],
    }
    sample = ["generate", str(f.model), "--duration", "10m", "-o", "w.parquet"]
    mode: dict[tuple[str, str], list[str]] = {
        **{("generate", o): sample for o in ("--burstiness", "--shape", "--length-cap", "--seed")},
        ("generate", "--zipf"): ["generate", "--duration", "10m", "-o", "w.csv"],
        ("fit", "--seed"): [
            "fit",
            str(f.trace),
            "-o",
            "m.json",
            "--holdout",
            "0.5",
            "--paths",
            "1",
        ],
        ("serve", "--port"): ["serve", *FIXED],
        ("serve", "--time-scale"): ["serve", "--port", "0"],
        ("plan", "--capacity"): ["plan", "--forecast", str(f.forecast), "-o", "plan.json"],
    }
    options, source = numeric_options()
    cases = []
    for command, option in options:
        args = mode.get((command, option)) or base.get(command)
        if args is None:
            cases.append(Case("options: numeric", f"{command} {option} (no base)", [command]))
            continue
        for value in VALUES:
            if (command, option, value) in MUST_WORK:
                expect = "serving" if command == "serve" else "ok"
            elif (command, option, value) in EITHER or (
                (command, option) not in KNOWN and value in ("0", "inf")
            ):
                expect = "either"
            else:
                expect = "error"
            timeout = 12.0 if command == "serve" else 90.0
            name = f"{command} {option} {value}"
            case = Case(
                f"options: {command}", name, [*args, option, value], expect, timeout=timeout
            )
            cases.append(case)
    return cases, source


def text_option_cases(f: Inputs, busy_port: int) -> list[Case]:
    bench = ["bench", str(f.tiny), "-o", "run", *QUIET]
    with_url = [*bench, "--url", f.url]
    port = f.url.rsplit(":", 1)[1]
    cases = [
        Case("bench: url", f"--url {u!r}", [*bench, "--url", u])
        for u in (
            "http://127.0.0.1:99999",
            "ftp://127.0.0.1:1",
            "127.0.0.1:8000",
            "http://",
            "",
            "http://[::1",
            f"http://127.0.0.1:{free_port()}",  # unreachable: refused, nothing listens
        )
    ]
    cases += [
        Case("bench: header", f"--header {h!r}", [*with_url, "--header", h])
        for h in ("X-A: b\r\nX-B: c", "X-A: b\nc", "X-A: b\rc", "NoColon", ": v", "Bad Name: v")
    ]
    cases += [
        Case("bench: options", f"--{o} {v!r}", [*with_url, f"--{o}", v])
        for o, v in (
            ("api", "nope"),
            ("backend", "nope"),
            ("max-field", "nope"),
            ("prompt", "nope"),
            ("slo", "ttft=abc"),
            ("slo", "ttft=-1"),
            ("slo", "nope=1"),
            ("slo", "ttft"),
            ("slo", "ttft=nan"),
        )
    ]
    cases += [
        Case(
            "bench: options",
            "--tokenizer nonexistent (--prompt text)",
            [*with_url, "--prompt", "text", "--tokenizer", str(f.root / "no-such-tokenizer.json")],
        ),
        Case(
            "bench: options", "workload missing", ["bench", "nope.csv", "--url", f.url, "-o", "run"]
        ),
        Case("bench: options", "workload a directory", ["bench", ".", "--url", f.url, "-o", "run"]),
        Case(
            "bench: secrets",
            "OPENAI_API_KEY and --header Authorization",
            [*with_url, "--header", "Authorization: Bearer sk-explicit"],
            env={"OPENAI_API_KEY": SECRET},
            secret=SECRET,
        ),
        Case(
            "bench: secrets",
            "OPENAI_API_KEY and URL credentials",
            [*bench, "--url", f"http://user:pw@127.0.0.1:{port}"],
            env={"OPENAI_API_KEY": SECRET},
            secret=SECRET,
        ),
        Case(
            "bench: secrets",
            "--header Authorization kept out of files",
            [*with_url, "--header", f"Authorization: Bearer {SECRET}"],
            "ok",
            secret=SECRET,
        ),
        Case(
            "bench: secrets",
            "--header X-Api-Key kept out of files",
            [*with_url, "--header", f"X-Api-Key: {SECRET}"],
            "ok",
            secret=SECRET,
        ),
        Case(
            "bench: secrets",
            "OPENAI_API_KEY kept out of files",
            with_url,
            "ok",
            env={"OPENAI_API_KEY": SECRET},
            secret=SECRET,
        ),
        Case(
            "bench: options", "--insecure warns", [*with_url, "--insecure"], "ok", needle="warning"
        ),
    ]
    serve = ["serve", "--port", "0"]
    cases += [
        Case("serve", f"--fixed {v!r}", ["serve", "--fixed", v, "--port", "0"], timeout=12)
        for v in (
            "ttft=abc",
            "ttft=-1,itl=0.01",
            "ttft=0.01,itl=nan",
            "ttft=inf,itl=0.01",
            "garbage",
            "ttft=0.01,itl=0.01,eos=0",
            "ttft=0.01,itl=0.01,eos=-3",
        )
    ]
    cases += [
        Case("serve", "--host 999.1.1.1", [*FIXED_SERVE, "--host", "999.1.1.1"], timeout=12),
        Case("serve", "--host 'not a host'", [*FIXED_SERVE, "--host", "not a host"], timeout=12),
        Case("serve", "--port in use", ["serve", *FIXED, "--port", str(busy_port)], timeout=12),
        Case("serve", "--engine missing", [*serve, "--engine", "nope.yaml"], timeout=12),
        Case(
            "serve",
            "--log in a missing directory",
            [*FIXED_SERVE, "--log", "no/such/dir/log.jsonl"],
            timeout=12,
        ),
        Case("serve", "--log a directory", [*FIXED_SERVE, "--log", "."], timeout=12),
    ]
    durations = [
        ("analyze", "--window", v) for v in ("abc", "0", "-5m")
    ] + [
        ("analyze", "--start", "abc"), ("analyze", "--start", "30d"),
        ("analyze", "--start", "2h", "--end", "1h"), ("analyze", "--origin", "notadate"),
        ("analyze", "--log-type", "nope"), ("analyze", "--model", "NO-SUCH-MODEL"),
        ("analyze", "-f", "nope"), ("analyze", "-f", "generic", "--map", "x=y"),
        ("analyze", "--time-unit", "parsecs"),
        ("generate", "--to", "nope"), ("generate", "--busiest", "abc"),
        ("generate", "--start", "abc"), ("generate", "--start", "30d"),
        ("generate", "--start", "2h", "--end", "1h"), ("generate", "--model", "NO-SUCH-MODEL"),
        ("generate", "--log-type", "nope"), ("generate", "--day", "999"),
        ("generate", "--arrivals", "nope"),
        ("fit", "--window", "abc"), ("fit", "--window", "0"),
        ("forecast", "-g", "abc"), ("forecast", "-g", "0"), ("forecast", "--models", "nope"),
        ("simulate", "--scheduler", "nope"), ("simulate", "--slo", "ttft=abc"),
        ("simulate", "--autoscale", "nope.json"),
        ("plan", "--startup", "abc"), ("plan", "--startup", "-1m"),
        ("plan", "--model", "nope"), ("plan", "--granularity", "7m"),
    ]  # fmt: skip
    bases = {
        "analyze": ["analyze", str(f.trace), "-o", "out", "--no-plots"],
        "generate": ["generate", str(f.trace), "-o", "w.parquet"],
        "fit": ["fit", str(f.trace), "-o", "model.json"],
        "forecast": [*FORECAST[:-1], str(f.trace), "-o", "fc"],
        "simulate": ["simulate", str(f.tiny), "-o", "run", "--no-report"],
        "plan": ["plan", "--forecast", str(f.forecast), "--capacity", "1", "-o", "plan.json"],
    }
    for command, *extra in durations:
        cases.append(Case(f"{command}: text options", " ".join(extra), [*bases[command], *extra]))
    synthetic = ["generate", "-o", "w.parquet"]
    cases += [
        Case("generate: text options", " ".join(a), [*synthetic, *a])
        for a in (
            ("--synthetic", "--duration", "abc"),
            ("--synthetic", "--duration", "0"),
            ("--synthetic", "--duration", "-1h"),
            ("--gamma", "abc", "--duration", "10m"),
            ("--gamma", "-1,2", "--duration", "10m"),
            ("--gamma", "0.5,nan", "--duration", "10m"),
            ("--windows", "nope.json"),
            ("--windows", str(f.model), "--pace", "abc"),
        )
    ]
    t, r = str(f.trace), str(f.run)
    others = [
        (
            "forecast: text options",
            "--granularities ''",
            [*bases["forecast"], "--granularities", ""],
            {},
        ),
        (
            "plan: text options",
            "--forecast missing",
            ["plan", "--forecast", "no", "--capacity", "1", "-o", "p"],
            {},
        ),
        (
            "other commands",
            "trace convert: unknown output suffix",
            ["trace", "convert", t, "out.xyz"],
            {},
        ),
        (
            "other commands",
            "experiment: unknown study",
            ["experiment", "nope", str(f.tiny), "-o", "exp"],
            {},
        ),
        (
            "other commands",
            "calibrate: not a run directory",
            ["calibrate", ".", "-o", "engine.yaml"],
            {},
        ),
        (
            "other commands",
            "calibrate: --gpu unknown",
            ["calibrate", r, "-o", "e.yaml", "--gpu", "NOPE"],
            {},
        ),
        ("other commands", "report: missing run directory", ["report", "nope"], {}),
        ("other commands", "report: empty directory", ["report", "empty"], {"empty/.keep": b""}),
    ]
    cases += [Case(group, name, args, files=files) for group, name, args, files in others]
    fetch = ["fetch", "-q"]
    cases += [
        Case("fetch", "unknown name without --tag", [*fetch, "NoSuch.csv"]),
        Case(
            "fetch",
            "unreachable --base-url",
            [*fetch, "BurstGPT_1.csv", "--base-url", f"http://127.0.0.1:{free_port()}"],
            allow=("cache/traces/BurstGPT_1.csv.part",),
        ),
        Case("fetch", "--sha256 not hex", [*fetch, "hostile.csv", "--tag", "v9", "--sha256", "zz"]),
        Case(
            "fetch",
            "wrong --sha256 (local server)",
            [*fetch, "hostile.csv", "--tag", "v9", "--base-url", f.fetch_url, "--sha256", "0" * 64],
        ),
        Case(
            "fetch",
            "404 (local server)",
            [*fetch, "missing.csv", "--tag", "v9", "--base-url", f.fetch_url],
            allow=("cache/traces/missing.csv.part",),
        ),
    ]
    return cases


FIXED_SERVE = ["serve", *FIXED, "--port", "0"]


def overwrite_cases(f: Inputs) -> list[Case]:
    """``-o`` onto output that exists: refused, and the output unchanged (issue 14 item 11)."""
    old = b"old output\n"
    run_files = {
        f"run/{p.name}": p.read_bytes() for p in sorted(f.run.glob("*")) if p.is_file()
    } or {"run/run.json": b"{}"}
    t, tiny = str(f.trace), str(f.tiny)
    table: list[tuple[str, list[str], dict[str, bytes]]] = [
        ("analyze -o existing file", ["analyze", t, "-o", "x", "--no-plots"], {"x": old}),
        ("analyze -o existing output", ["analyze", t, "-o", "out", "--no-plots"],
         {"out/summary.json": b"{}"}),
        ("generate -o existing file", ["generate", t, "-o", "w.parquet"], {"w.parquet": old}),
        ("fit -o existing file", ["fit", t, "-o", "model.json"], {"model.json": old}),
        ("forecast -o existing output", [*FORECAST, t, "-o", "fc"], {"fc/metrics.json": b"{}"}),
        ("plan -o existing file",
         ["plan", "--forecast", str(f.forecast), "--capacity", "1", "-o", "plan.json"],
         {"plan.json": old}),
        ("simulate -o existing run", ["simulate", tiny, "-o", "run", "--no-report"], run_files),
        ("bench -o existing file", ["bench", tiny, "--url", f.url, "-o", "x", *QUIET], {"x": old}),
        ("bench -o existing run", ["bench", tiny, "--url", f.url, "-o", "run", *QUIET], run_files),
        ("trace convert onto existing file", ["trace", "convert", t, "t.csv"], {"t.csv": old}),
        ("experiment -o existing output", ["experiment", "scheduling", tiny, "-o", "exp"],
         {"exp/experiment.csv": old}),
    ]  # fmt: skip
    return [Case("overwrite", name, args, files=files) for name, args, files in table]


def bad_trace_files() -> dict[str, tuple[bytes, str]]:
    """name -> (content, expect) of trace files; 'ok' marks odd but valid data."""
    head = HEADER + "\n"
    good = [f"{k * 0.01:g},ChatGPT,10,5,15,Conversation log\n" for k in range(20)]
    body = "".join(good)
    whole = (head + body).encode()
    gz = gzip.compress(whole)
    moon = "".join(
        json.dumps({"timestamp": k * 10, "input_length": 10, "output_length": 5, "hash_ids": [k]})
        + "\n"
        for k in range(5)
    )
    long_json = json.dumps(
        {"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": list(range(300_000))}
    )
    azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
    azure_rows = "".join(f"2023-11-16 18:15:{10 + k:02d}.6805900,{10 + k},5\n" for k in range(20))

    def row(t: str, i: str, o: str) -> str:
        return f"{t},ChatGPT,{i},{o},15,Conversation log\n"

    def csv(*rows: str, first: str = "") -> bytes:
        """The header, ``first``, 20 good rows, then ``rows``."""
        return (head + first + body + "".join(rows)).encode()

    def deg(rows: list[tuple[float, str, int, int]]) -> bytes:
        return trace_csv(rows).encode()

    def moon_plus(extra: dict[str, Any]) -> bytes:
        return (moon + json.dumps(extra) + "\n").encode()

    burst_v1 = "Timestamp,Model,Response tokens,Total tokens,Log Type\n1,ChatGPT,5,15,API log\n"
    dup = "Timestamp,Model,Model,Request tokens,Response tokens,Log Type\n1,a,b,1,1,API log\n"
    latin1 = head + body + "20,caf\xe9,10,5,15,Conversation log\n"
    errors: dict[str, bytes] = {
        "truncated.csv.gz": gz[: len(gz) // 2],
        "corrupt.csv.gz": gz[:10] + b"\xff" * 40 + gz[50:],
        "latin1.csv": latin1.encode("latin-1"),
        "nul.csv": whole + b"21,Chat\x00GPT,10,5,15,Conversation log\n",
        "one-line-2mb.csv": b"a" * (2 << 20),
        "long-row.csv": head.encode() + b"1,ChatGPT,10,5,15," + b"x" * (2 << 20) + b"\n",
        "long-line.jsonl": (long_json + "\n").encode(),
        "wrong-header.csv": b"a,b,c\n1,2,3\n",
        "renamed-column.csv": (head.replace("Request tokens", "Request_tokens") + body).encode(),
        "missing-column.csv": burst_v1.encode(),
        "duplicate-header.csv": dup.encode(),
        "negative-tokens.csv": csv(row("1", "10", "-5")),
        "nan-tokens.csv": csv(row("1", "NaN", "5")),
        "inf-tokens.csv": csv(row("1", "inf", "5")),
        "text-tokens.csv": csv(row("1", "abc", "5")),
        "huge-tokens.csv": csv(row("1", "99999999999", "5")),
        "fraction-tokens.csv": csv(row("1", "1.5", "5")),
        "empty-cell.csv": csv(row("1", "", "5")),
        "zero-request.csv": csv(row("1", "0", "5")),
        "negative-time.csv": csv(first=row("-5", "10", "5")),
        "nan-time.csv": csv(row("nan", "10", "5")),
        "inf-time.csv": csv(row("inf", "10", "5")),
        "text-time.csv": csv(row("noon", "10", "5")),
        "too-few-fields.csv": csv("1,ChatGPT,10\n"),
        "too-many-fields.csv": csv("1,ChatGPT,10,5,15,Conversation log,x\n"),
        "torn-last-line.csv": csv("1,Chat"),
        "unsorted.csv": (head + "".join(reversed(good))).encode(),
        "empty.csv": b"",
        "header-only.csv": head.encode(),
        "blank-lines.csv": b"\n\n\n",
        "bad-json.jsonl": (moon + '{"timestamp": 60, "input_length": \n' + moon).encode(),
        "hash-ids-not-int.jsonl": moon_plus(
            {"timestamp": 60, "input_length": 1, "output_length": 1, "hash_ids": ["x"]}
        ),
        "no-timestamp.jsonl": moon_plus({"input_length": 1, "output_length": 1, "hash_ids": [1]}),
        "mixed-tz.csv": (azure + azure_rows + f"{AZURE_T}+00:00,10,5\n").encode(),
        "garbage.parquet": b"PAR1 this is not parquet" * 10,
    }
    valid: dict[str, bytes] = {
        "gzip-named.csv": gz,
        "zero-response.csv": csv(row("1", "10", "0")),
        "duplicate-times.csv": (head + row("1", "10", "5") * 10).encode(),
        "bom-crlf.csv": b"\xef\xbb\xbf" + (head + body).replace("\n", "\r\n").encode(),
        "no-final-newline.csv": (head + body).rstrip("\n").encode(),
        "azure-7-digits.csv": (azure + azure_rows).encode(),
        "mooncake.jsonl": moon.encode(),
        "equal-lengths.csv": deg([(k * 0.01, "ChatGPT", 100, 100) for k in range(120)]),
        "one-input-length.csv": deg([(k * 0.01, "ChatGPT", 64, 5 + k % 40) for k in range(120)]),
        "one-model.csv": deg([(k * 0.01, "GPT-4", 5 + k, 9 + k % 11) for k in range(120)]),
        "one-instant.csv": deg([(0.0, "ChatGPT", 5 + k, 9 + k % 11) for k in range(120)]),
        "one-token.csv": deg([(k * 0.01, "ChatGPT", 1, 1) for k in range(120)]),
        "three-requests.csv": deg([(k * 0.1, "ChatGPT", 10, 10) for k in range(3)]),
    }
    return {
        **{name: (data, "error") for name, data in errors.items()},
        **{name: (data, "ok") for name, data in valid.items()},
    }


def trace_file_cases(f: Inputs) -> list[Case]:
    cases = []
    for name, (data, expect) in bad_trace_files().items():
        group = "trace files: valid" if expect == "ok" else "trace files"
        for cmd, args in (
            ("trace info", ["trace", "info", name]),
            ("analyze", ["analyze", name, "-o", "out", "--no-plots"]),
            ("bench", ["bench", name, "--url", f.url, "-o", "run", *QUIET]),
        ):
            cases.append(Case(group, f"{cmd} {name}", args, expect, files={name: data}))
    unsorted = bad_trace_files()["unsorted.csv"][0]
    cases.append(
        Case("trace files: valid", "trace info --sort unsorted.csv",
             ["trace", "info", "--sort", "u.csv"], "ok", files={"u.csv": unsorted})
    )  # fmt: skip
    for cmd, args in (
        ("trace info", ["trace", "info", str(f.sparse)]),
        ("analyze", ["analyze", str(f.sparse), "-o", "out", "--no-plots"]),
    ):
        cases.append(Case("trace files", f"{cmd} 2 GB of NULs (sparse)", args, timeout=120))
    # A records file whose writer died mid-line: a torn tail is accepted everywhere.
    records = f.run / "records.jsonl"
    if records.exists():
        data = records.read_bytes()
        torn = data + data.splitlines(keepends=True)[0][:40]
        run_files = {f"run/{p.name}": p.read_bytes() for p in f.run.glob("*") if p.is_file()}
        run_files["run/records.jsonl"] = torn
        cases += [
            Case("trace files: valid", "analyze records.jsonl with a torn tail",
                 ["analyze", "records.jsonl", "-o", "out", "--no-plots"], "ok",
                 files={"records.jsonl": torn}),
            Case("trace files: valid", "report a run whose records have a torn tail",
                 ["report", "run", "--no-plots"], "ok", files=run_files),
            Case("trace files", "report a run whose records are garbage mid-file",
                 ["report", "run", "--no-plots"], "error",
                 files={**run_files, "run/records.jsonl": b"{not json\n" + data}),
        ]  # fmt: skip
    return cases


def config_file_cases(f: Inputs) -> list[Case]:
    engines = {
        "invalid UTF-8": (b"tp: 1\n# caf\xe9\ngpu: A100-80G\n", "error", None),
        "!!python tag": (b"tp: !!python/object/apply:os.system ['touch pwned']\n", "error", None),
        "unknown key": (b"tp: 1\nno_such_key: 3\n", "error", None),
        "wrong type": (b"tp: abc\n", "error", None),
        "mfu 0": (b"cost: {kind: roofline, mfu: 0}\n", "error", "mfu"),
        "a list": (b"- 1\n- 2\n", "error", None),
        "unknown gpu": (b"gpu: NO-SUCH-GPU\n", "error", None),
        "not YAML": (b"tp: [1, 2\n", "error", None),
        "NUL bytes": (b"tp: 1\x00\n", "error", None),
        "empty (defaults)": (b"", "either", None),
    }
    cases = []
    for name, (data, expect, needle) in engines.items():
        files = {"engine.yaml": data}
        sim = ["simulate", str(f.tiny), "--engine", "engine.yaml", "-o", "run", "--no-report"]
        cases.append(Case("engine.yaml", f"simulate: {name}", sim, expect, files, needle=needle))
        serve = ["serve", "--engine", "engine.yaml", "--port", "0"]
        expect_serve = "either" if expect == "either" else expect
        cases.append(
            Case("engine.yaml", f"serve: {name}", serve, expect_serve, files, needle=needle,
                 timeout=12)
        )  # fmt: skip
    cases.append(
        Case("engine.yaml", "simulate: missing file",
             ["simulate", str(f.tiny), "--engine", "nope.yaml", "-o", "run", "--no-report"])
    )  # fmt: skip
    sample = ["generate", "model.json", "--duration", "10m", "-o", "w.parquet"]
    for name, data in {
        "invalid JSON": b"{not json",
        "empty object": b"{}",
        "a list": b"[1, 2]",
        "invalid UTF-8": b'{"version": "\xff"}',
    }.items():
        cases.append(Case("model.json", name, sample, files={"model.json": data}))
    autoscale = ["simulate", str(f.tiny), "--autoscale", "plan.json", "-o", "run", "--no-report"]
    for name, data in {"invalid JSON": b"{not json", "empty object": b"{}"}.items():
        cases.append(Case("plan.json", name, autoscale, files={"plan.json": data}))
    plan = ["plan", "--forecast", "fc", "--capacity", "1", "-o", "p.json"]
    cases.append(Case("forecast dir", "empty", plan, files={"fc/.keep": b""}))
    cases.append(Case("forecast dir", "garbage files", plan, files={"fc/metrics.json": b"{x"}))
    return cases


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args: Any) -> None:
        pass


@contextlib.contextmanager
def file_server(root: Path) -> Iterator[str]:
    """A local HTTP server of ``root`` (for ``fetch``); yields its URL."""
    (root / "v9").mkdir(parents=True)
    (root / "v9" / "hostile.csv").write_text(constant(5, 1.0))

    class Handler(_QuietHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def bad_inputs(
    work: Path, *, jobs: int, mem_gib: int, verbose: bool, match: str | None
) -> tuple[int, int]:
    print("== 1. bad inputs: one clean 'error:' line and exit 2 (or exit 0 where valid)")
    work.mkdir()
    with (
        mock_server(work) as url,
        file_server(work / "www") as fetch_url,
        socket.socket() as busy,
    ):
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        inputs = make_inputs(work / "inputs", url, fetch_url)
        for problem in inputs.problems:
            print(f"   note: {problem}")
        options, source = option_cases(inputs)
        cases = [
            *(Case("baseline", " ".join(args[:1]), args, "ok") for args in baselines(inputs)),
            *options,
            *text_option_cases(inputs, busy.getsockname()[1]),
            *overwrite_cases(inputs),
            *trace_file_cases(inputs),
            *config_file_cases(inputs),
        ]
        if match:
            cases = [c for c in cases if match in f"[{c.group}] {c.name}"]
        print(f"   {len(cases)} cases; numeric options from {source}; {jobs} at a time")
        root = work / "cases"
        root.mkdir()
        done = 0
        tty = sys.stdout.isatty()

        def one(item: tuple[int, Case]) -> Verdict:
            nonlocal done
            verdict = run_case(item[1], root, item[0], mem_gib)
            done += 1
            if tty:
                print(f"   {done}/{len(cases)}", end="\r", flush=True)
            return verdict

        with ThreadPoolExecutor(jobs) as pool:
            verdicts = list(pool.map(one, enumerate(cases)))
    by_group: dict[str, list[Verdict]] = defaultdict(list)
    for v in verdicts:
        by_group[v.case.group].append(v)
    print(f"   {'group':<26} {'clean':>5} {'cases':>5}")
    for group, vs in by_group.items():
        print(f"   {group:<26} {sum(v.clean for v in vs):>5} {len(vs):>5}")
    failing = [v for v in verdicts if not v.clean]
    shown = verdicts if verbose else failing
    if shown:
        print("   cases" + ("" if verbose else " that are not clean") + ":")
    for v in shown:
        mark = "ok  " if v.clean else "FAIL"
        what = f"[{v.case.group}] {v.case.name} (expect {v.case.expect})"
        print(f"   {mark} {what}: {v.why or 'clean'}")
    clean = sum(v.clean for v in verdicts)
    print(f"   TOTAL bad inputs: {clean}/{len(verdicts)} clean")
    return clean, len(verdicts)


def baselines(f: Inputs) -> list[list[str]]:
    """One invocation per command that must work: the base the option cases vary."""
    return [
        ["analyze", str(f.trace), "-o", "out", "--no-plots"],
        ["bench", str(f.tiny), "--url", f.url, "-o", "run", *QUIET],
        ["fit", str(f.trace), "-o", "model.json"],
        ["generate", str(f.trace), "-o", "w.parquet"],
        ["simulate", str(f.tiny), "-o", "run", "--no-report"],
        ["plan", "--forecast", str(f.forecast), "--capacity", "1", "-o", "plan.json"],
        ["trace", "info", str(f.trace)],
    ]


# -- 2. faults classified --------------------------------------------------------------------


def label(row: dict[str, Any]) -> str:
    outcome = row.get("outcome")
    kind, sub = row.get("error_kind"), row.get("error_subkind")
    if outcome == "ok":
        return f"ok.{sub}" if sub else "ok"
    if outcome == "failed":
        return f"{kind}.{sub}"
    return str(outcome)


Check = Callable[[dict[str, Any]], str | None]


def _retry_after(lo: float, hi: float) -> Check:
    def check(row: dict[str, Any]) -> str | None:
        value = row.get("retry_after_s")
        ok = isinstance(value, int | float) and lo <= value <= hi
        return None if ok else f"retry_after_s {value} not in [{lo:g}, {hi:g}]"

    return check


def _tokens_kept(n: int) -> Check:
    def check(row: dict[str, Any]) -> str | None:
        got = row.get("output_tokens_achieved")
        return None if got == n and row.get("first_s") is not None else f"tokens {got}, first kept"

    return check


def _done_missing(row: dict[str, Any]) -> str | None:
    return None if row.get("done_missing") else "done_missing not set"


def _ttft_after(seconds: float) -> Check:
    def check(row: dict[str, Any]) -> str | None:
        first, sent = row.get("first_s"), row.get("sent_s")
        if first is None or sent is None:
            return "no first_s"
        return None if first - sent >= seconds else f"TTFT {first - sent:.3f} s < {seconds} s"

    return check


def _usage_tokens(row: dict[str, Any]) -> str | None:
    source = row.get("tokens_source")
    return None if source == "usage" else f"tokens_source {source}"


def _no_control_chars(row: dict[str, Any]) -> str | None:
    text = row.get("error_text") or ""
    return "control characters kept in error_text" if "\x1b" in text else None


def _coalesced(row: dict[str, Any]) -> str | None:
    n = row.get("coalesced_events") or 0
    return None if n >= 4 else f"coalesced_events {n}"


#: fault -> (RELIABILITY.md row, accepted labels, extra check).
EXPECTED: dict[str, tuple[str, set[str], Check | None]] = {
    "ok": ("-", {"ok"}, None),
    "reset_mid_stream": ("F3", {"reset.mid_stream"}, _tokens_kept(2)),
    "reset_before_headers": ("F2", {"reset.before_headers"}, None),
    "fin_mid_chunk": ("F4", {"reset.payload_incomplete"}, None),
    "http_429": ("F11", {"http_429.429"}, _retry_after(2.0, 2.0)),
    "http_500": ("F12", {"http_5xx.500"}, None),
    "http_503": ("F12", {"http_5xx.503"}, None),
    "http_400": ("F12", {"http_4xx.400"}, None),
    "retry_after_date": ("F11", {"http_429.429"}, _retry_after(15.0, 30.0)),
    "stall": ("F7", {"timeout.first_byte"}, None),
    "stall_before_headers": ("F7", {"timeout.first_byte"}, None),
    "malformed_sse": ("F14", {"stream_error.bad_json"}, None),
    # F5 names no_terminal; the stream had tokens, and 2.4 lists after_tokens for that.
    "no_done": ("F5", {"truncated.no_terminal", "truncated.after_tokens"}, None),
    "finish_no_done": ("F6", {"ok"}, _done_missing),
    "oversized_chunk": ("F19", {"stream_error.oversize"}, None),
    "event_1mib": ("F18", {"ok"}, None),
    "empty": ("F32", {"empty.no_tokens"}, None),
    "trickle": ("-", {"ok"}, None),
    "error_event": ("F13", {"stream_error.server_error_event"}, None),
    "split_utf8": ("F15", {"ok"}, None),
    "crlf": ("F16", {"ok"}, None),
    "gzip": ("F20", {"stream_error.bad_encoding"}, None),
    "ignore_max_tokens": ("F23", {"stream_error.overrun"}, None),
    "json_reply": ("F24", {"ok.not_streamed"}, None),
    # served here
    "redirect_307": ("F34", {"http_3xx.307"}, None),  # Location and target hits checked apart
    "stall_after_3": ("F8", {"timeout.idle"}, _tokens_kept(3)),
    "slow_drip": ("F9", {"timeout.total"}, None),
    "role_first": ("F21", {"ok"}, _ttft_after(0.19)),
    "usage_only_final": ("F22", {"ok"}, _usage_tokens),
    "done_only": ("F32", {"empty.no_tokens"}, None),
    "bad_chunk_size": ("2.4", {"stream_error.protocol"}, None),  # after one token
    "coalesced": ("F17", {"ok"}, _coalesced),
    "deep_json": ("S6", {"stream_error.bad_json"}, None),
    "ansi_error_body": ("S8", {"http_5xx.500"}, _no_control_chars),
    "refused": ("F1", {"connect.refused"}, None),
    "https_to_plain": ("F26", {"connect.tls_handshake"}, None),
    "fixed_server": ("-", {"ok"}, None),
}

EXTRA_FAULTS = [
    "redirect_307", "stall_after_3", "slow_drip", "role_first", "usage_only_final",
    "done_only", "bad_chunk_size", "coalesced", "deep_json", "ansi_error_body",
]  # fmt: skip


def extra_app(faults: list[str], target_hits: list[int]) -> tuple[Any, Any, list[int]]:
    """The faults served here (aiohttp), and the redirect's target (counts its hits)."""
    import asyncio

    import orjson
    from aiohttp import web

    def chunk(chat: bool, text: str | None, finish: str | None = None, **extra: Any) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["delta"] = {"role": "assistant"} if text is None else {"content": text}
        else:
            choice["text"] = text or ""
        body = {"id": "x", "object": "chunk", "model": "m", "choices": [choice], **extra}
        return b"data: " + orjson.dumps(body) + b"\n\n"

    usage = {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}

    async def handle(request: web.Request) -> web.StreamResponse:
        rid = request.headers.get("X-Request-Id", "")
        tail = rid.rpartition("-")[2]
        fault = faults[int(tail) % len(faults)] if tail.isdigit() else "coalesced"
        await request.read()
        chat = request.path.endswith("/chat/completions")
        if fault == "redirect_307":
            where = f"http://user:secret@127.0.0.1:{target_port[0]}{request.path}"
            return web.Response(status=307, headers={"Location": where})
        if fault == "ansi_error_body":
            text = json.dumps({"error": {"message": ANSI}})
            return web.Response(status=500, text=text, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the client hung up
            await stream(fault, chat, resp, request.transport)
            await resp.write_eof()
        return resp

    async def stream(fault: str, chat: bool, resp: web.StreamResponse, transport: Any) -> None:
        if fault == "stall_after_3":
            for _ in range(3):
                await resp.write(chunk(chat, "tok "))
            await asyncio.sleep(3600)
        elif fault == "slow_drip":
            for _ in range(100):
                await resp.write(b": ping\n\n")
                await asyncio.sleep(0.5)
        elif fault == "role_first":
            await resp.write(chunk(chat, None if chat else ""))
            await resp.write(chunk(chat, ""))
            await asyncio.sleep(0.2)
            await resp.write(chunk(chat, "tok ", "length"))
            await resp.write(b"data: [DONE]\n\n")
        elif fault == "usage_only_final":
            for k in range(3):
                await resp.write(chunk(chat, "tok ", "length" if k == 2 else None))
            body = {"id": "x", "object": "chunk", "model": "m", "choices": [], "usage": usage}
            await resp.write(b"data: " + orjson.dumps(body) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
        elif fault == "done_only":
            await resp.write(b"data: [DONE]\n\n")
        elif fault == "bad_chunk_size":
            await resp.write(chunk(chat, "tok "))
            await asyncio.sleep(0.05)  # the token is read alone, then the framing breaks
            transport.write(b"zz\r\nnot a chunk\r\n")
            await asyncio.sleep(0.2)
            transport.close()
        elif fault == "coalesced":
            events = [chunk(chat, "tok ", "length" if k == 4 else None) for k in range(5)]
            await resp.write(b"".join(events) + b"data: [DONE]\n\n")
        elif fault == "deep_json":
            await resp.write(b"data: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n")
            await resp.write(chunk(chat, "tok ", "length"))
            await resp.write(b"data: [DONE]\n\n")

    async def target(_request: web.Request) -> web.Response:
        target_hits[0] += 1
        return web.json_response({"error": "the redirect was followed"}, status=418)

    target_port = [0]
    app = web.Application()
    app.router.add_post("/v1/completions", handle)
    app.router.add_post("/v1/chat/completions", handle)
    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", target)
    return app, other, target_port


def read_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Complete records, and the number of lines that are not (torn or garbled)."""
    rows, bad = [], 0
    if not path.exists():
        return rows, bad
    for line in path.read_bytes().splitlines(keepends=True):
        try:
            row = json.loads(line) if line.endswith(b"\n") else None
        except ValueError:
            row = None
        if isinstance(row, dict) and "request_id" in row and "outcome" in row:
            rows.append(row)
        elif line.strip():
            bad += 1
    return rows, bad


def bench_faults(
    work: Path, name: str, url: str, *, faults: list[str], reps: int, extra: list[str]
) -> tuple[list[tuple[str, dict[str, Any] | None]], str]:
    """Run bench; (fault, record or None) per scheduled request, and a problem note."""
    d = work / name
    d.mkdir()
    n = len(faults) * reps
    (d / "w.csv").write_text(constant(n, 50.0, 10, 4))
    args = [*BIN, "bench", "w.csv", "--url", url, "-o", "run", *QUIET, "--model", "m",
            "--timeout", "3", "--idle-timeout", "1", *extra]  # fmt: skip
    proc = run(args, d, env=base_env(), timeout=120)
    rows, _ = read_records(d / "run" / "records.jsonl")
    by_id = {int(r["request_id"]): r for r in rows}
    note = ""
    if proc.rc not in (0,) or "Traceback" in proc.stderr:
        tail = proc.stderr.strip().splitlines()[-1:] or [""]
        note = f"bench {name}: exit {proc.rc}: {tail[0][:160]}"
    return [(faults[i % len(faults)], by_id.get(i)) for i in range(n)], note


def faults_matrix(work: Path, reps: int, verbose: bool) -> tuple[int, int]:
    print("== 2. faults: each record classified as RELIABILITY.md 4 expects")
    work.mkdir()
    from burstlab.server.hosting import serve_in_thread
    from support.faulty_server import FAULTS, FaultyServer

    server_faults = list(FAULTS)
    results: list[tuple[str, dict[str, Any] | None]] = []
    notes: list[str] = []
    hits = [0]
    with FaultyServer(server_faults, tokens=4, trickle_s=0.2) as server:
        for api in ("completions", "chat"):
            got, note = bench_faults(
                work,
                f"faulty-{api}",
                server.url,
                faults=server_faults,
                reps=reps,
                extra=["--api", api],
            )
            results += got
            notes += [note] if note else []
    app, other, target_port = extra_app(EXTRA_FAULTS, hits)
    with serve_in_thread(other, shutdown_timeout=0.2) as other_url:
        target_port[0] = int(other_url.rsplit(":", 1)[1])
        with serve_in_thread(app, shutdown_timeout=0.2) as url:
            for api in ("completions", "chat"):
                got, note = bench_faults(
                    work, f"extra-{api}", url, faults=EXTRA_FAULTS, reps=reps, extra=["--api", api]
                )
                results += got
                notes += [note] if note else []
    closed = f"http://127.0.0.1:{free_port()}"
    got, note = bench_faults(work, "refused", closed, faults=["refused"], reps=reps, extra=[])
    results += got
    notes += [note] if note else []
    with mock_server(work) as url:
        got, note = bench_faults(
            work, "fixed", url, faults=["fixed_server"], reps=4 * reps, extra=[]
        )
        results += got
        notes += [note] if note else []
        tls = url.replace("http://", "https://")
        got, note = bench_faults(
            work, "https-to-plain", tls, faults=["https_to_plain"], reps=reps, extra=[]
        )
        results += got
        notes += [note] if note else []

    per: dict[str, list[tuple[bool, str, str]]] = defaultdict(list)
    by_fault: dict[str, list[tuple[str, dict[str, Any] | None]]] = defaultdict(list)
    for fault, row in results:
        by_fault[fault].append((fault, row))
        if row is None:
            per[fault].append((False, "(no record)", "no record"))
            continue
        ref, accepted, check = EXPECTED.get(fault, ("?", set(), None))
        got_label = label(row)
        detail = ""
        if not accepted:
            detail = "no expectation for this fault in this script"
        elif got_label not in accepted:
            detail = f"got {got_label}"
        elif check is not None:
            detail = check(row) or ""
        if fault == "redirect_307" and not detail:
            location = str(row.get("location") or "")
            if "secret" in location or not location:
                detail = f"Location {location!r}"
        per[fault].append((not detail, got_label, detail))
    print(f"   {'fault':<22} {'ref':<5} {'expected':<46} {'as expected':>11}  seen")
    total = good = 0
    for fault, items in per.items():
        ref, accepted, _ = EXPECTED.get(fault, ("?", set(), None))
        n_ok = sum(ok for ok, _, _ in items)
        seen = Counter(lbl for _, lbl, _ in items)
        details = sorted({d for ok, _, d in items if not ok and d})
        exp = " | ".join(sorted(accepted)) or "?"
        line = f"   {fault:<22} {ref:<5} {exp:<46} {n_ok:>5}/{len(items):<5}"
        seen_text = ", ".join(f"{k} x{v}" for k, v in seen.most_common())
        mark = "" if n_ok == len(items) else "  <-- " + "; ".join(details)[:160]
        print(f"{line}  {seen_text}{mark}")
        if verbose:
            texts = {str(row.get("error_text"))[:150] for _, row in by_fault[fault] if row}
            for text in sorted(texts - {"None"}):
                print(f"{'':<29}error_text: {text}")
        total += len(items)
        good += n_ok
    if hits[0]:
        print(f"   redirect target was hit {hits[0]} times (expected 0: redirects not followed)")
    for note in notes:
        print(f"   note: {note}")
    print(f"   TOTAL faults: {good}/{total} classified as expected")
    return good, total


# -- 3. records lost ---------------------------------------------------------------------------


def server_log(path: Path) -> list[tuple[str, float]]:
    out = []
    if path.exists():
        for line in path.read_bytes().splitlines():
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                out.append((str(row.get("request_id")), float(row.get("t_end"))))
    return out


class LineCounter:
    """Newlines in a growing file, reading only what was appended since the last call."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.lines = path, 0, 0

    def __call__(self) -> int:
        with contextlib.suppress(FileNotFoundError), self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
            self.offset += len(data)
            self.lines += data.count(b"\n")
        return self.lines


def run_id_of(run_dir: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError):
        return str(json.loads((run_dir / "run.json").read_text())["run_id"])
    rows, _ = read_records(run_dir / "records.jsonl")
    return str(rows[0]["run_id"]) if rows and rows[0].get("run_id") else None


def record_keys(rows: list[dict[str, Any]], default_run: str | None) -> Counter[str]:
    return Counter(f"{r.get('run_id') or default_run}-{r['request_id']}" for r in rows)


@dataclass
class Loss:
    scenario: str
    finished: int  # finished (server) before the cut
    records: int  # complete records
    torn: int  # lines that are not complete records
    lost: int
    note: str


def start_bench(d: Path, url: str, err: str = "bench.err") -> subprocess.Popen[bytes]:
    args = [*BIN, "bench", "w.csv", "--url", url, "-o", "run", *QUIET]
    with (d / err).open("wb") as fh:
        return subprocess.Popen(
            args,
            cwd=d,
            env=base_env(),
            stdout=subprocess.DEVNULL,
            stderr=fh,
            start_new_session=True,
        )


def wait_lines(path: Path, n: int, proc: subprocess.Popen[bytes], seconds: float = 60) -> int:
    """Wait until ``path`` holds ``n`` lines (or the process ended); the lines seen."""
    counter = LineCounter(path)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if counter() >= n:
            return counter.lines
        time.sleep(0.01)
    return counter()


def wait_exit(proc: subprocess.Popen[bytes], seconds: float) -> tuple[int | None, float]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc.returncode, time.time()
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return None, time.time()


def judge_loss(scenario: str, d: Path, *, cut: float, margin: float, note: str) -> Loss:
    """Lost, torn and duplicated records of the run in ``d/run``, against ``d/server.jsonl``."""
    log = d / "server.jsonl"
    rows, torn = read_records(d / "run" / "records.jsonl")
    run_id = run_id_of(d / "run")
    have = record_keys(rows, run_id)
    finished = {rid for rid, t in server_log(log) if t <= cut - margin}
    lost = len(finished - set(have))
    dups = sum(c - 1 for c in Counter(r["request_id"] for r in rows).values() if c > 1)
    if dups:
        note = f"{note}; {dups} duplicated request ids".lstrip("; ")
    return Loss(scenario, len(finished), len(rows), torn, lost, note)


def manifest_note(run_dir: Path, rc: int | None) -> str:
    """Exit status, run.json's status and reason, and whether its accounting adds up:
    ok + failed + cancelled + not_sent + lost (records it could not write) = scheduled."""
    try:
        manifest = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return f"exit {rc}, no readable run.json"
    counts = manifest.get("counts") or {}
    parts = [counts.get(k) or 0 for k in ("ok", "failed", "cancelled", "not_sent")]
    unwritten = manifest.get("lost") or 0
    adds = sum(parts) + unwritten == manifest.get("scheduled")
    reason = f" ({manifest['reason']})" if manifest.get("reason") else ""
    return (
        f"exit {rc}, status {manifest.get('status')}{reason}, "
        f"summary {'yes' if (run_dir / 'summary.json').exists() else 'no'}, "
        f"accounting {'adds up' if adds else 'does not add up'}"
        f"{f' ({unwritten} unwritten)' if unwritten else ''}"
    )


def kill_run(
    work: Path, name: str, sig: signal.Signals, *, after: int, n: int, rate: float, margin: float
) -> Loss:
    d = work / name
    d.mkdir()
    (d / "w.csv").write_text(constant(n, rate))
    log = d / "server.jsonl"
    with mock_server(d, "ttft=0.05,itl=0.01", log) as url:
        proc = start_bench(d, url)
        seen = wait_lines(d / "run" / "records.jsonl", after, proc)
        t_sig = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        rc, t_exit = wait_exit(proc, 60)
        time.sleep(0.3)  # let the server log what it finished
    cut = t_sig if sig == signal.SIGKILL else t_exit
    note = f"signalled after {seen} records"
    if sig != signal.SIGKILL:
        note += f"; {manifest_note(d / 'run', rc)}; exited {t_exit - t_sig:.1f} s after"
    return judge_loss(f"{sig.name} after {after}", d, cut=cut, margin=margin, note=note)


def can_mount(work: Path) -> tuple[list[str] | None, str]:
    """The unshare prefix that lets a tmpfs be mounted, or None and why not."""
    probe = work / "probe"
    probe.mkdir()
    if shutil.which("unshare") is None:
        return None, "no unshare command"
    prefixes = [["unshare", "-m"]] if os.geteuid() == 0 else []
    prefixes.append(["unshare", "-rm"])
    why = ""
    for prefix in prefixes:
        cmd = [*prefix, "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$1"', "sh", str(probe)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=20)
        if proc.returncode == 0:
            return prefix, ""
        why = proc.stderr.strip()[:120]
    return None, f"mounting a tmpfs is not permitted here ({why})"


MOUNTED = (
    'd=$1; copy=$2; shift 2; mount -t tmpfs -o size=1m tmpfs "$d" || exit 97; '
    '"$@"; rc=$?; cp -a "$d/run" "$copy" 2>/dev/null; exit $rc'
)


def disk_full_run(work: Path, n: int, rate: float, margin: float) -> Loss | str:
    d = work / "disk-full"
    d.mkdir()
    prefix, why = can_mount(d)
    if prefix is None:
        return f"disk full: skipped: {why}"
    (d / "w.csv").write_text(constant(n, rate))
    (d / "mnt").mkdir()
    log = d / "server.jsonl"
    with mock_server(d, "ttft=0.05,itl=0.01", log) as url:
        args = [*BIN, "bench", str(d / "w.csv"), "--url", url, "-o", str(d / "mnt" / "run"),
                *QUIET]  # fmt: skip
        cmd = [*prefix, "sh", "-c", MOUNTED, "sh", str(d / "mnt"), str(d / "run"), *args]
        proc = run(cmd, d, env=base_env(), timeout=120)
        time.sleep(0.3)
    if proc.rc == 97:
        return "disk full: skipped: the tmpfs could not be mounted"
    rows, torn = read_records(d / "run" / "records.jsonl")
    run_id = run_id_of(d / "run")
    have = set(record_keys(rows, run_id))
    ends = dict(server_log(log))
    written = [ends[k] for k in have if k in ends]
    t_full = max(written) if written else 0.0
    before = {rid for rid, t in ends.items() if t <= t_full - margin}
    after_1s = sum(1 for t in ends.values() if t > t_full + 1.0)
    tracebacks = proc.stderr.count("Traceback")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    note = (
        f"{manifest_note(d / 'run', proc.rc)}; {len(ends)} of {n} served, {after_1s} served "
        f">1 s after the disk filled; stderr {len(lines)} lines, {tracebacks} tracebacks"
    )
    if lines:
        note += f"; first: {lines[0][:100]}"
    return Loss("disk full (1 MiB tmpfs)", len(before), len(rows), torn, len(before - have), note)


def concurrent_run(
    work: Path, name: str, *, after: int, n: int, rate: float, margin: float
) -> Loss:
    """Two benches into one directory: the second started with the first, or after
    ``after`` records. Exactly one must be refused; nothing the other finished lost."""
    d = work / name
    d.mkdir()
    (d / "w.csv").write_text(constant(n, rate))
    log = d / "server.jsonl"
    with mock_server(d, "ttft=0.05,itl=0.01", log) as url:
        procs = [start_bench(d, url, err="a.err")]
        if after:
            wait_lines(d / "run" / "records.jsonl", after, procs[0])
        procs.append(start_bench(d, url, err="b.err"))
        exits = [wait_exit(proc, 120) for proc in procs]
        time.sleep(0.3)
    rows, torn = read_records(d / "run" / "records.jsonl")
    have = record_keys(rows, run_id_of(d / "run"))
    ends = server_log(log)
    t_exit = max(t for _, t in exits)
    finished = {rid for rid, t in ends if t <= t_exit - margin}
    runs = Counter(rid.rpartition("-")[0] for rid, _ in ends)
    refused = []
    for err_name, (rc, _) in zip(("a.err", "b.err"), exits, strict=True):
        lines = [x for x in (d / err_name).read_text(errors="replace").splitlines() if x.strip()]
        clean = rc == 2 and len([x for x in lines if x.startswith("error:")]) == 1
        clean = clean and all(x.startswith(("error:", "hint:", "warning:")) for x in lines)
        refused.append((clean, rc, lines[0][:90] if lines else ""))
    ok = sum(c for c, _, _ in refused) == 1 and len(runs) <= 1
    dups = sum(c - 1 for c in Counter(r["request_id"] for r in rows).values() if c > 1)
    which = "; ".join(
        f"{tag}: exit {rc}{' ' + line if line else ''}"
        for tag, (_, rc, line) in zip("AB", refused, strict=True)
    )
    note = (
        f"{'one refused' if ok else 'NOT one refused'} ({which}); {len(runs)} run(s) reached "
        f"the server; {dups} duplicated ids"
    )
    lost = len(finished - set(have))
    start = "started together" if not after else f"after {after} records"
    return Loss(f"concurrent writer ({start})", len(finished), len(rows), torn, lost, note)


def loss_matrix(
    work: Path, n: int, rate: float, margin: float, kills: int
) -> tuple[int, dict[str, int]]:
    print(
        f"== 3. records lost: bench of {n} requests at {rate:g}/s against a fixed-timing server "
        f"(lost = finished >= {margin:g} s before the stop, no complete record)"
    )
    work.mkdir()
    results: list[Loss] = []
    skipped: list[str] = []
    load: dict[str, Any] = {"n": n, "rate": rate, "margin": margin}
    for k, after in enumerate((200, 500, 900, 300, 700)[:kills]):
        results.append(kill_run(work, f"kill-{k}", signal.SIGKILL, after=after, **load))
    results.append(kill_run(work, "term", signal.SIGTERM, after=300, **load))
    full = disk_full_run(work, n, rate, margin)
    if isinstance(full, str):
        skipped.append(full)
    else:
        results.append(full)
    results.append(concurrent_run(work, "concurrent-race", after=0, **load))
    results.append(concurrent_run(work, "concurrent-late", after=300, **load))
    print(f"   {'stop':<36} {'finished':>8} {'records':>7} {'torn':>4} {'lost':>4}  note")
    totals: dict[str, int] = defaultdict(int)
    for r in results:
        print(
            f"   {r.scenario:<36} {r.finished:>8} {r.records:>7} {r.torn:>4} {r.lost:>4}  {r.note}"
        )
        key = r.scenario.split(" after")[0].split(" (")[0]
        totals[key] += r.lost
    for line in skipped:
        print(f"   note: {line}")
    lost = sum(r.lost for r in results)
    parts = ", ".join(f"{k} {v}" for k, v in totals.items())
    print(f"   TOTAL records lost: {lost} ({parts})")
    return lost, dict(totals)


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", action="append", choices=("bad", "faults", "loss"), help="repeatable"
    )
    parser.add_argument("--jobs", type=int, default=2, help="bad-input cases run at once")
    parser.add_argument("--mem-gib", type=int, default=4, help="RLIMIT_AS of each bad-input case")
    parser.add_argument("--match", help="only bad-input cases whose '[group] name' has this")
    parser.add_argument("--reps", type=int, default=2, help="requests per fault and API")
    parser.add_argument("--requests", type=int, default=2000, help="requests per loss run")
    parser.add_argument("--rate", type=float, default=200.0, help="req/s of the loss runs")
    parser.add_argument("--margin", type=float, default=0.1, help="seconds; see 'lost'")
    parser.add_argument("--kills", type=int, default=3, choices=range(1, 6), help="SIGKILL runs")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = parser.parse_args()
    if args.jobs < 1 or not math.isfinite(args.rate) or args.rate <= 0:
        parser.error("--jobs must be >= 1 and --rate a positive number")
    only = args.only or ["bad", "faults", "loss"]

    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="hostile-", dir=args.keep))
    else:
        work = Path(tempfile.mkdtemp(prefix="hostile-"))
    print(f"burstlab: {' '.join(BIN)}; work dir {work}")
    start = time.monotonic()
    totals = []
    try:
        if "bad" in only:
            clean, n = bad_inputs(
                work / "bad",
                jobs=args.jobs,
                mem_gib=args.mem_gib,
                verbose=args.verbose,
                match=args.match,
            )
            totals.append(f"bad inputs with a clean error: {clean}/{n}")
        if "faults" in only:
            good, n = faults_matrix(work / "faults", args.reps, args.verbose)
            totals.append(f"faults classified as expected: {good}/{n}")
        if "loss" in only:
            lost, per = loss_matrix(
                work / "loss", args.requests, args.rate, args.margin, args.kills
            )
            parts = ", ".join(f"{k} {v}" for k, v in per.items())
            totals.append(f"records lost: {lost} ({parts})")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"== totals ({time.monotonic() - start:.0f} s)")
    for line in totals:
        print(f"   {line}")


if __name__ == "__main__":
    main()
