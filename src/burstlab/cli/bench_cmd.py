"""``burstlab bench WORKLOAD --url URL -o RUN_DIR`` and ``burstlab report RUN_DIR``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from burstlab.cli.choices import Api, Backend, BenchExecutor, MaxField, PromptMode
from burstlab.cli.config_file import config_file
from burstlab.cli.reading import TraceOptions, trace_options

if TYPE_CHECKING:
    from rich.console import Console

    from burstlab.bench.config import BenchConfig
    from burstlab.results.slo import SLO
    from burstlab.results.summary import RunSummary

#: Exit status of a run that finished but whose numbers measure the client (``--strict``).
EXIT_CLIENT_BOUND = 3
#: Exit status when scheduled requests are missing from the records (a bug: never expected).
EXIT_LOST = 4
#: Exit status when the run directory could not be written (the disk filled): sending stopped.
EXIT_WRITE_FAILED = 5
#: Exit status when more requests failed than ``--max-error-rate`` allows (by default,
#: when every request sent failed).
EXIT_ERRORS = 6
#: Exit status after Ctrl-C (128 + SIGINT) and after SIGTERM (128 + SIGTERM).
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def failed_beyond(summary: RunSummary, max_error_rate: float | None) -> str | None:
    """Why the run counts as failed: a larger share of the requests sent failed than
    ``max_error_rate`` (None: only when every one did); None when it does not."""
    counts = summary.counts
    ended = counts.ok + counts.failed
    if ended == 0:
        return None
    share = counts.failed / ended
    if max_error_rate is None:
        if counts.ok == 0:
            return f"every request sent failed ({counts.failed:,})"
        return None
    if share > max_error_rate:
        return (
            f"{share:.1%} of the requests sent failed ({counts.failed:,} of {ended:,}), "
            f"more than --max-error-rate {max_error_rate:g}"
        )
    return None


@config_file
@trace_options("format")
def bench(
    workload: Annotated[
        str, typer.Argument(help="Workload or trace file (any format burstlab reads), or 'sample'.")
    ],
    url: Annotated[str, typer.Option("--url", help="Server base URL, e.g. http://127.0.0.1:8000.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (must not hold a run).")],
    api: Annotated[
        Api,
        typer.Option(
            "--api",
            help="completions or chat (OpenAI /v1), or generate: the backend's native "
            "streaming API (tgi, sglang, lightllm or vllm's legacy server).",
        ),
    ] = "completions",
    backend: Annotated[
        Backend,
        typer.Option(
            "--backend",
            help="vllm, sglang, llamacpp, tgi, lightllm, openai or generic: which "
            "length-forcing fields to send (with --api generate: whose native API).",
        ),
    ] = "generic",
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model name to request (default: first of /v1/models)."),
    ] = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="Stream with SSE.")] = True,
    ignore_eos: Annotated[
        bool | None,
        typer.Option("--ignore-eos/--no-ignore-eos", help="Send ignore_eos (backend default)."),
    ] = None,
    min_tokens: Annotated[
        bool | None,
        typer.Option("--min-tokens/--no-min-tokens", help="Send min_tokens (backend default)."),
    ] = None,
    max_field: Annotated[
        MaxField | None,
        typer.Option("--max-field", help="max_tokens or max_completion_tokens (backend default)."),
    ] = None,
    prompt: Annotated[
        PromptMode | None,
        typer.Option("--prompt", help="ids (token-id prompts, completions only) or text."),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            help="tokenizer.json path or hub name for exact text prompts; 'server': token-id "
            "prompts exact under the target's own /tokenize (llamacpp's default).",
        ),
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            help="ShareGPT-format prompt pool (.json list of conversations, or .jsonl): "
            "send each request the real prompt nearest its input length, counted with "
            "--tokenizer (default: synthetic prompts of the exact length).",
        ),
    ] = None,
    pool_size: Annotated[
        int | None,
        typer.Option(
            "--pool-size",
            min=1,
            help="With --prompts: draw this many of the pool's prompts (seeded by --seed; "
            "default: all).",
        ),
    ] = None,
    temperature: Annotated[
        float,
        typer.Option("--temperature", help="Sampling temperature sent with every request."),
    ] = 0.0,
    max_output_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-output-tokens",
            help="Ask for at most this many output tokens (records keep the requested "
            "length and the cap).",
        ),
    ] = None,
    scrape_metrics: Annotated[
        float | None,
        typer.Option(
            "--scrape-metrics",
            help="Poll the server's /metrics every this many seconds into server_metrics.jsonl.",
        ),
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option("--max-concurrency", help="Cap on requests in flight.")
    ] = None,
    max_lag: Annotated[
        float | None,
        typer.Option("--max-lag", help="Do not send requests more than this many seconds late."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Client processes (default 1); with --executor ray, actors (default: one "
            "per CPU of the cluster).",
        ),
    ] = None,
    executor: Annotated[
        BenchExecutor,
        typer.Option(
            "--executor",
            help="process (this machine) or ray (actors spread over a Ray cluster; needs "
            "burstlab\\[ray]).",
        ),
    ] = "process",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="With --executor ray: the cluster to join (auto, HOST:6379 or "
            "ray://HOST:10001; default: $RAY_ADDRESS, else a local Ray).",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds per request, total.")
    ] = 600.0,
    idle_timeout: Annotated[
        float, typer.Option("--idle-timeout", help="Seconds without data before giving up.")
    ] = 60.0,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            help="After a first Ctrl-C or SIGTERM: seconds requests in flight may finish.",
        ),
    ] = 5.0,
    api_key_env: Annotated[
        str, typer.Option("--api-key-env", help="Environment variable holding the API key.")
    ] = "OPENAI_API_KEY",
    header: Annotated[
        list[str] | None, typer.Option("--header", help="Extra header 'Name: value' (repeatable).")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Do not verify TLS certificates.")
    ] = False,
    slo: Annotated[
        str | None,
        typer.Option("--slo", help="Goodput SLOs in seconds: ttft=0.5,tpot=0.05,e2e=10."),
    ] = None,
    goodput: Annotated[
        str | None,
        typer.Option(
            "--goodput",
            help="Goodput SLOs in milliseconds, as vLLM and AIPerf write them: "
            "ttft:500,tpot:50,e2e:10000 (instead of --slo).",
        ),
    ] = None,
    warmup: Annotated[
        int,
        typer.Option(
            "--warmup",
            min=0,
            help="Send this many requests (shaped like the workload's first) before t0, "
            "wait for them, keep them out of the metrics (warmup.jsonl).",
        ),
    ] = 0,
    wait_ready: Annotated[
        float | None,
        typer.Option(
            "--wait-ready",
            help="Before the run, poll /health then /v1/models until one answers 200, "
            "for up to this many seconds.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the prompt synthesizer.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live display.")] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 3 when the client was the bottleneck.")
    ] = False,
    max_error_rate: Annotated[
        float | None,
        typer.Option(
            "--max-error-rate",
            min=0.0,
            max=1.0,
            help="Exit 6 when a larger share of the requests sent failed (default: exit 6 "
            "only when all failed).",
        ),
    ] = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Also write report.html.")
    ] = True,
    reading: TraceOptions = TraceOptions(),
) -> None:
    """Fire a workload at an OpenAI-compatible server at its intended times (open loop)
    and record every request.

    Example: burstlab bench w.parquet --url http://127.0.0.1:8000 -o runs/a
    """
    from rich.console import Console

    from burstlab.bench.backends import APIS, Forcing, default_forcing
    from burstlab.bench.progress import LiveProgress
    from burstlab.bench.run import BenchConfig, RunWriteError, bench
    from burstlab.core.errors import InputError

    console = Console(stderr=True)
    if api not in APIS:
        raise InputError(f"--api {api!r} is not one of {', '.join(APIS)}", field="--api")
    forcing = default_forcing(backend, api)
    changes: dict[str, Any] = {}
    if ignore_eos is not None:
        changes["ignore_eos"] = ignore_eos
    if min_tokens is not None:
        changes["min_tokens"] = min_tokens
    if max_field is not None and api == "generate":
        raise InputError("native APIs name their own length field", field="--max-field")
    if max_field is not None:
        changes["max_field"] = max_field
    config = BenchConfig.from_options(
        url=url,
        api=api,
        backend=backend,
        model=model,
        stream=stream,
        forcing=Forcing.model_validate(forcing.model_dump() | changes),
        prompt=prompt,
        tokenizer=tokenizer,
        prompts=str(prompts) if prompts is not None else None,
        pool_size=pool_size,
        seed=seed,
        max_concurrency=max_concurrency,
        max_lag_s=max_lag,
        **({"workers": workers} if workers is not None else {}),
        executor=executor,
        address=address,
        timeout_s=timeout,
        idle_timeout_s=idle_timeout,
        grace_s=grace,
        api_key_env=api_key_env,
        headers=_headers(header or []),
        insecure=insecure,
        slo=_slo(slo, goodput),
        warmup=warmup,
        wait_ready_s=wait_ready,
        scrape_metrics_s=scrape_metrics,
        temperature=temperature,
        max_output_tokens=max_output_tokens,
    )
    if insecure:
        typer.echo("warning: --insecure: TLS certificates are not verified", err=True)
    with console.status(f"reading {workload}"):
        table, _ = reading.load(workload)
    try:
        result = bench(
            table,
            config,
            out,
            progress=None if quiet else LiveProgress(console),
            notify=_notice,
        )
    except RunWriteError as exc:
        _error(exc.message)
        if exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
        raise typer.Exit(EXIT_WRITE_FAILED) from None
    summary = result.summary
    print_summary(summary, Console())
    if config.executor == "ray":
        _print_cluster(out)
    if config.prompts is not None:
        _print_pool(config, out)
    if result.write_error is not None:
        # The disk is full: no report (it could not be written either), one error line.
        _error(f"{result.write_error} ({_counts_line(summary)})")
        raise typer.Exit(EXIT_WRITE_FAILED)
    if summary.stopped_by == "sigterm":
        # SIGTERM comes with a deadline (a container's stop, `timeout`): the summary is
        # written; the report, which takes seconds, is left to `burstlab report`.
        typer.echo(f"wrote the run to {out}; `burstlab report {out}` writes its report")
    elif report:
        from burstlab.report.run import render_run

        html = render_run(out)
        typer.echo(f"wrote the run to {out} and its report to {html}")
    if summary.status == "interrupted":
        raise typer.Exit(EXIT_SIGTERM if summary.stopped_by == "sigterm" else EXIT_SIGINT)
    if result.lost:
        raise typer.Exit(EXIT_LOST)
    too_many = failed_beyond(summary, max_error_rate)
    if too_many is not None:
        _error(too_many)
        raise typer.Exit(EXIT_ERRORS)
    if strict and summary.client.bound:
        raise typer.Exit(EXIT_CLIENT_BOUND)


def _slo(slo: str | None, goodput: str | None) -> SLO | None:
    """The SLO of ``--slo`` (seconds) or ``--goodput`` (milliseconds); not both."""
    from burstlab.core.errors import InputError
    from burstlab.results.slo import parse_goodput, parse_slo

    if slo is not None and goodput is not None:
        raise InputError(
            "give --slo (seconds) or --goodput (milliseconds), not both", field="--goodput"
        )
    if goodput is not None:
        return parse_goodput(goodput)
    return parse_slo(slo) if slo else None


def _print_cluster(out: Path) -> None:
    """The Ray run's nodes: actors, clock offset (and how well it is known), drift,
    how late the first sends were; and the spread of the actors' starts."""
    from burstlab.results.rundir import RunDir

    manifest = RunDir(out).manifest()
    cluster = manifest.cluster if manifest is not None else None
    if cluster is None:
        return
    for n in cluster.nodes:
        drift = f", drift {n.drift_s * 1e3:+.3f} ms" if n.drift_s is not None else ""
        late = ""
        if n.start_lag_s is not None:
            late = f", first send {n.start_lag_s * 1e3:.2f} ms late"
        actors = ",".join(map(str, n.actors))
        typer.echo(
            f"Ray node {n.node} (actors {actors}): clock offset {n.offset_s * 1e3:+.3f} ms "
            f"± {n.rtt_s / 2 * 1e3:.3f} ms{drift}{late}"
        )
    if cluster.start_spread_s is not None:
        typer.echo(f"Ray actors' starts spread over {cluster.start_spread_s * 1e3:.2f} ms")
    if cluster.lost_actors:
        typer.echo(f"Ray actors lost: {', '.join(map(str, cluster.lost_actors))}")


def _notice(message: str) -> None:
    """A line on stderr from a signal handler: one unbuffered write, no locks."""
    os.write(2, (message + "\n").encode(errors="replace"))


def _error(message: str) -> None:
    """One ``error:`` line on stderr, control characters stripped."""
    text = "".join(ch if ch.isprintable() else " " for ch in message)
    typer.echo(f"error: {text}", err=True)


def _counts_line(summary: RunSummary) -> str:
    recorded = summary.counts.scheduled
    counts = f"{recorded} of {recorded + summary.lost} requests recorded"
    if summary.stopped_by in ("disk_full", "write_error"):
        return f"sending stopped at once; {counts}; summary.json: stopped_by {summary.stopped_by}"
    return counts


def _print_pool(config: BenchConfig, out: Path) -> None:
    """The prompt pool's line (draw, lengths, counter, template tokens) and how far
    the prompts sent were from the workload's lengths."""
    from burstlab.bench.pool_tokens import describe_pool, length_gap_line
    from burstlab.results.records import load_records

    for line in (describe_pool(config), length_gap_line(load_records(out))):
        if line is not None:
            typer.echo(line)


def _headers(values: list[str]) -> dict[str, str]:
    """``--header 'Name: value'`` options as a dict; a bad name, or a value with CR, LF
    or another control character, is an error (the value is never repeated)."""
    from burstlab.bench.config import check_header
    from burstlab.core.errors import InputError

    out: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise InputError("expected 'Name: value'", field="--header")
        name, rest = name.strip(), rest.strip(" \t")
        check_header(name, rest)
        out[name] = rest
    return out


#: Why a run stopped early, for the console.
_STOPPED = {
    "sigint": "stopped by Ctrl-C (SIGINT)",
    "sigterm": "stopped by SIGTERM",
    "disk_full": "the disk is full: records could not be written",
    "write_error": "records could not be written",
}


def _ms(value: float | None) -> str:
    """Milliseconds, or seconds (with an ``s``) from 100 s up, so columns stay narrow."""
    if value is None:
        return "-"
    return f"{value * 1e3:.1f}" if abs(value) < 100 else f"{value:.1f} s"


def print_summary(summary: RunSummary, console: Console) -> None:
    """The summary as a rich table: the verdict first, then latency from sent and
    from intended, then counts, throughput and failures by kind."""
    from rich.markup import escape
    from rich.table import Table

    if summary.client.bound:
        console.print(
            "[bold red]CLIENT-BOUND RUN: these numbers measure the load generator, "
            "not the server.[/]"
        )
        for reason in summary.client.reasons:
            console.print(f"[red]  - {escape(reason)}[/]")
    for node, verdict in (summary.client_by_node or {}).items():
        if verdict.bound:
            why = escape("; ".join(verdict.reasons))
            console.print(f"[red]client on node {escape(node)}: CLIENT-BOUND ({why})[/]")
        else:
            console.print(f"client on node {escape(node)}: not client-bound")
    if summary.stopped_by is not None:
        console.print(f"[yellow]interrupted: {_STOPPED[summary.stopped_by]}[/]")
    table = Table(title="latency (ms), ok requests", header_style="bold")
    table.add_column("metric", no_wrap=True)
    stats = ("mean", "p50", "p90", "p95", "p99", "max")
    for col in (*stats, "n"):
        table.add_column(col, justify="right")
    rows = [*summary.metrics.items(), ("schedule_lag_s", summary.schedule_lag_s)]
    for name, dist in rows:
        values = dist.model_dump()
        table.add_row(name.removesuffix("_s"), *(_ms(values[k]) for k in stats), str(dist.count))
    console.print(table)
    c, t = summary.counts, summary.throughput
    console.print(
        f"scheduled {c.scheduled}: ok {c.ok}, failed {c.failed}, cancelled "
        f"{c.cancelled}, not sent {c.not_sent}  |  {t.requests_per_s:.2f} req/s, "
        f"{t.output_tokens_per_s:.1f} output tok/s over {summary.duration_s:.1f} s"
    )
    if summary.failures_by_subkind:
        kinds = ", ".join(f"{escape(str(k))} {v}" for k, v in summary.failures_by_subkind.items())
        console.print(f"failures: {kinds}")
    if summary.goodput is not None:
        g = summary.goodput
        console.print(
            f"goodput: {g.requests_per_s:.2f} req/s meet the SLO from sent "
            f"({g.good_requests} requests), {g.requests_per_s_intended:.2f} from intended"
        )
