"""``burstlab serve --fixed ttft=0.05,itl=0.01``: an OpenAI-compatible mock server."""

from __future__ import annotations

import ipaddress
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
        str, typer.Option("--model", help="Model id listed at /v1/models and put in responses.")
    ] = "burstlab-fixed",
    log: Annotated[
        Path | None,
        typer.Option(
            "--log",
            help="Append one JSON line per finished request: request_id (the X-Request-Id "
            "header), t_end (Unix seconds), tokens.",
        ),
    ] = None,
) -> None:
    """Serve /v1/completions and /v1/chat/completions with fixed timing until Ctrl-C.

    Token k of every response is sent at ttft + k*itl seconds after the request
    arrived, whatever the load: a target with known latency for 'burstlab bench'.

    Example: burstlab serve --fixed ttft=0.05,itl=0.01 --port 8000
    """
    from burstlab.server.fixed import make_app, parse_fixed, serve_forever

    if fixed is None:
        raise BurstlabError(
            "serve needs --fixed ttft=SECONDS,itl=SECONDS (the simulator-timed server is not "
            "built yet)",
            hint="e.g. burstlab serve --fixed ttft=0.05,itl=0.01",
        )
    timing = parse_fixed(fixed)
    if not _is_loopback(host):
        typer.echo(f"warning: binding {host} exposes the mock server beyond this machine", err=True)
    app = make_app(timing, model=model, log_path=log)

    def ready(url: str) -> None:
        typer.echo(
            f"serving {model} at {url} (fixed ttft={timing.ttft:.3f} s, itl={timing.itl:.3f} s)"
        )

    try:
        serve_forever(app, host, port, on_ready=ready)
    except KeyboardInterrupt:  # where signals cannot be caught by the loop (Windows)
        pass
    except OSError as exc:
        if log is not None and exc.filename is not None:
            raise BurstlabError(f"cannot write --log {log}: {exc.strerror or exc}") from None
        raise BurstlabError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port (0 takes any free one), or stop what is using it",
        ) from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
