"""``burstlab serve --fixed ttft=0.05,itl=0.01``: an OpenAI-compatible mock server."""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path
from typing import Annotated

import typer

from burstlab.core.errors import BurstlabError


def serve(
    fixed: Annotated[
        str | None,
        typer.Option(
            "--fixed",
            help="Fixed timing: ttft=SECONDS,itl=SECONDS[,eos=TOKENS] (times may end in s or "
            "ms); eos is the response length when a request does not force one (default 64).",
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to bind; anything but loopback exposes the server."),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free port).")
    ] = 8000,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model id listed at /v1/models and put in responses."),
    ] = None,
    engine: Annotated[
        Path | None,
        typer.Option(
            "--engine",
            help="engine.yaml of the simulated engine that times the tokens (the default "
            "without --fixed: one Llama-2-7B replica on an A100-80G).",
        ),
    ] = None,
    time_scale: Annotated[
        float,
        typer.Option("--time-scale", help="Simulated seconds per second (2: twice as fast)."),
    ] = 1.0,
    log: Annotated[
        Path | None,
        typer.Option(
            "--log",
            help="Append one JSON line per finished request: request_id (the X-Request-Id "
            "header), t_end (Unix seconds), tokens.",
        ),
    ] = None,
    max_body: Annotated[
        int,
        typer.Option(
            "--max-body",
            metavar="BYTES",
            help="Largest request body: a larger one gets 413 before it is read, and its "
            "connection is closed.",
        ),
    ] = 16 << 20,
    max_connections: Annotated[
        int,
        typer.Option(
            "--max-connections",
            metavar="N",
            help="Open connections at most: past it the oldest idle one is closed, or, if "
            "all are serving, the newcomer gets 503.",
        ),
    ] = 4096,
    header_timeout: Annotated[
        float,
        typer.Option(
            "--header-timeout",
            metavar="SECONDS",
            help="Close a connection that has not sent a request's headers this long after "
            "it opened or after the request's first byte.",
        ),
    ] = 10.0,
    tokenizer: Annotated[
        Path | None,
        typer.Option(
            "--tokenizer",
            metavar="PATH",
            help="A local tokenizer.json (or a folder holding one) to count prompt tokens "
            "exactly; never downloaded. Chat prompts count each message's text content, with "
            "no chat template. Default: one token per whitespace-separated word (stated in "
            "/v1/models).",
        ),
    ] = None,
    output_lengths: Annotated[
        str | None,
        typer.Option(
            "--output-lengths",
            metavar="SPEC",
            help="Response length when a request does not force one, in tokens: fixed:N, "
            "lognormal:MEAN,SD or eos:P (each token ends the response with probability P). "
            "Default: lognormal:256,128 with an engine; eos= of --fixed (64) with --fixed.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --output-lengths draws.")] = 0,
) -> None:
    """Serve /v1/completions and /v1/chat/completions until Ctrl-C, timed by a
    simulated engine (default; --engine engine.yaml) or with fixed timing (--fixed).

    With --fixed, token k of every response is sent at ttft + k*itl seconds after
    the request arrived, whatever the load. With an engine, each token is sent at
    the time the simulated engine produces it: queueing, batching, preemption and
    429/503 refusals as a real server under that load.

    Examples: burstlab serve; burstlab serve --fixed ttft=0.05,itl=0.01 --port 8000
    """
    from burstlab.server.app import make_app
    from burstlab.server.fixed import parse_fixed
    from burstlab.server.hosting import Limits, fd_room, serve_forever
    from burstlab.server.lengths import parse_output_lengths
    from burstlab.server.tokens import FileTokenizer

    if fixed is not None and engine is not None:
        raise BurstlabError("give --fixed or --engine, not both")
    if not 0 < time_scale < float("inf"):
        raise BurstlabError(f"--time-scale must be a positive finite number, got {time_scale}")
    if max_body < 1:
        raise BurstlabError(f"--max-body must be at least 1 byte, got {max_body}")
    if max_connections < 1:
        raise BurstlabError(f"--max-connections must be at least 1, got {max_connections}")
    if not (header_timeout > 0 and math.isfinite(header_timeout)):
        raise BurstlabError(f"--header-timeout must be a positive number, got {header_timeout}")
    counter = FileTokenizer(tokenizer) if tokenizer is not None else None
    lengths = parse_output_lengths(output_lengths, seed) if output_lengths is not None else None
    limits = Limits(max_connections=max_connections, header_timeout_s=header_timeout)
    files = fd_room(max_connections + 64)
    if files < max_connections + 64:
        typer.echo(
            f"warning: this process may open {files} files, too few for --max-connections "
            f"{max_connections}: connections past the limit fail to be accepted",
            err=True,
        )
    if not _is_loopback(host):
        typer.echo(f"warning: binding {host} exposes the mock server beyond this machine", err=True)
    if fixed is not None:
        timing = parse_fixed(fixed)
        if lengths is not None and "eos" in timing.model_fields_set:
            raise BurstlabError("give eos= in --fixed or --output-lengths, not both")
        model = model or "burstlab-fixed"
        app = make_app(
            timing,
            model=model,
            log_path=log,
            max_body=max_body,
            counter=counter,
            lengths=lengths,
        )
        what = f"fixed ttft={timing.ttft:.3f} s, itl={timing.itl:.3f} s"
    else:
        from burstlab.server.engine import make_engine_app
        from burstlab.sim.spec import load_spec

        spec = load_spec(engine)
        gpu, llm = spec.hardware()
        model = model or llm.name
        app = make_engine_app(
            spec.engine_only(),
            model=model,
            time_scale=time_scale,
            log_path=log,
            max_body=max_body,
            counter=counter,
            lengths=lengths or parse_output_lengths(DEFAULT_ENGINE_LENGTHS, seed),
        )
        what = f"simulated {llm.name} on {gpu.name}, time scale {time_scale:g}"

    def ready(url: str) -> None:
        typer.echo(f"serving {model} at {url} ({what})")

    try:
        serve_forever(app, host, port, on_ready=ready, limits=limits)
    except KeyboardInterrupt:  # where signals cannot be caught by the loop (Windows)
        pass
    except OSError as exc:
        if log is not None and exc.filename is not None:
            raise BurstlabError(f"cannot write --log {log}: {exc.strerror or exc}") from None
        raise BurstlabError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port (0 takes any free one), or stop what is using it",
        ) from None


#: Natural response lengths of the engine-timed server by default, in tokens.
DEFAULT_ENGINE_LENGTHS = "lognormal:256,128"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
