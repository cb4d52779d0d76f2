"""Real prompts from a ShareGPT-format pool, matched to each request's input length.

BurstGPT-Perf sends real ShareGPT prompts: for each request, the pool prompt whose
token count is nearest the request's input length. This module does the same
with no cap on length (the seed stops at 1,023 tokens) and a pool of the size
the user picks.

Pool files (:func:`read_pool`):

- a JSON list of conversations, as ShareGPT is published
  (``[{"id": ..., "conversations": [{"from": "human", "value": ...}, ...]}]``);
- JSONL, one such conversation per line (``.jsonl`` or ``.ndjson``);
- in either, a record may instead be a plain prompt, ``{"prompt": ...}`` or
  ``{"text": ...}``; a JSON object mapping keys to records (the seed's
  preprocessed ``shareGPT.json``) reads as its values.

As in the seed's preprocessing, each human turn of a conversation gives one
prompt: the conversation up to and including that turn (earlier human and model
messages joined by blank lines), so later turns make long prompts. Messages
``from`` ``human`` or ``user`` are prompts' ends; every other role is context.

:class:`PoolSynth` is a :class:`~burstlab.workload.prompts.PromptSynth`: lengths
sorted once, then one ``searchsorted`` per request (or per batch of requests in
:meth:`PoolSynth.match`). Prompts of equal length are told apart by the request's
key, in an order shuffled by the seed. Token counts leave out special tokens;
``overhead`` adds what the server puts around every prompt (a BOS, a chat
template), so ``Prompt.tokens`` is what the server counts.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import orjson

from burstlab.core.dirs import cache_dir
from burstlab.core.errors import InputError
from burstlab.core.files import atomic_file
from burstlab.workload.prompts import Prompt, count_fallback_tokens

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from tokenizers import Tokenizer

#: Roles whose message ends a prompt (every other role is context before it).
HUMAN_ROLES = frozenset({"human", "user"})
#: Suffixes read as JSONL (one record per line); anything else is one JSON document.
JSONL_SUFFIXES = (".jsonl", ".ndjson")
#: What joins the messages of a conversation into one prompt.
JOIN = "\n\n"


@dataclass(frozen=True, slots=True)
class PoolFile:
    """The prompts of a pool file, in file order, and how many records gave them.

    ``sources[i]`` says where ``texts[i]`` came from: ``RECORD#TURN`` (the
    record's ``id`` when it has one, else its 0-based index; the 0-based index of
    the human message). ``empty`` counts human turns left out because the prompt
    up to them was empty or whitespace.
    """

    path: str
    records: int
    texts: tuple[str, ...]
    sources: tuple[str, ...]
    empty: int


def _bad(path: Path, reason: str, line: int | None = None, column: int | None = None) -> InputError:
    return InputError(reason, path=path, line=line, column=column)


def _record_prompts(
    record: Any, index: int, path: Path, line: int | None
) -> tuple[list[str], list[str], int]:
    """The prompts of one record (see the module docstring), their sources, and
    the human turns left out as empty."""
    where = f"record {index}"
    if not isinstance(record, dict):
        raise _bad(path, f"{where}: expected an object, got {type(record).__name__}", line)
    rid = record.get("id")
    name = str(rid) if isinstance(rid, str | int) and not isinstance(rid, bool) else str(index)
    if "conversations" not in record:
        for key in ("prompt", "text"):
            if key in record:
                value = record[key]
                if not isinstance(value, str):
                    raise _bad(path, f"{where}: {key!r} must be a string", line)
                if not value.strip():
                    return [], [], 1
                return [value], [f"{name}#0"], 0
        raise _bad(path, f"{where}: no 'conversations', 'prompt' or 'text' field", line)
    turns = record["conversations"]
    if not isinstance(turns, list):
        raise _bad(path, f"{where}: 'conversations' must be a list", line)
    texts: list[str] = []
    sources: list[str] = []
    empty = 0
    parts: list[str] = []
    for j, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise _bad(path, f"{where}: conversations[{j}] must be an object", line)
        role, value = turn.get("from", turn.get("role")), turn.get("value", turn.get("content"))
        if not isinstance(role, str):
            raise _bad(path, f"{where}: conversations[{j}].from must be a string", line)
        if not isinstance(value, str):
            raise _bad(path, f"{where}: conversations[{j}].value must be a string", line)
        if value.strip():
            parts.append(value)
        if role.lower() in HUMAN_ROLES:
            if parts and value.strip():
                texts.append(JOIN.join(parts))
                sources.append(f"{name}#{j}")
            else:
                empty += 1
    return texts, sources, empty


def _decode_error(path: Path, exc: orjson.JSONDecodeError, line: int | None = None) -> InputError:
    return _bad(
        path,
        f"not JSON: {exc.msg}",
        line if line is not None else exc.lineno,
        exc.colno,
    )


def read_pool(path: str | Path) -> PoolFile:
    """Read a ShareGPT-format pool (see the module docstring).

    A file that is not JSON raises :class:`InputError` naming its line and
    column; a record of the wrong shape names the record's 0-based index (and
    its line in JSONL) and the field at fault. A pool with no prompt at all is
    an error too.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise _bad(p, "no such file") from None
    except OSError as exc:
        raise _bad(p, f"cannot read it: {exc.strerror or exc}") from None
    texts: list[str] = []
    sources: list[str] = []
    empty = 0
    records = 0
    if p.suffix.lower() in JSONL_SUFFIXES:
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise _decode_error(p, exc, number) from None
            got, where, dropped = _record_prompts(record, records, p, number)
            texts += got
            sources += where
            empty += dropped
            records += 1
    else:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise _decode_error(p, exc) from None
        if isinstance(doc, dict):
            doc = list(doc.values())
        if not isinstance(doc, list):
            raise _bad(
                p,
                "expected a JSON list of conversations (or JSONL, one per line, in a .jsonl file)",
            )
        for index, record in enumerate(doc):
            got, where, dropped = _record_prompts(record, index, p, None)
            texts += got
            sources += where
            empty += dropped
        records = len(doc)
    if not texts:
        raise _bad(p, f"no prompt in {records:,} records (every human turn is empty, or none)")
    return PoolFile(str(p), records, tuple(texts), tuple(sources), empty)


def sample_indices(total: int, pool_size: int | None, seed: int) -> NDArray[np.intp]:
    """Which of ``total`` prompts a pool of ``pool_size`` keeps (all when None or
    larger): a seeded draw without replacement, in file order."""
    if pool_size is None or pool_size >= total:
        return np.arange(total, dtype=np.intp)
    if pool_size < 1:
        raise InputError(f"must be at least 1, got {pool_size}", field="--pool-size")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=pool_size, replace=False)).astype(np.intp)


class TokenCounter(Protocol):
    """Counts the tokens of texts, without special tokens (the server's BOS and
    chat template are its synth's ``overhead``)."""

    #: How tokens are counted, in words (``tokenizer.json``, ``server``, ...).
    name: str
    #: Whether the count is the target's own (else an estimate).
    exact: bool
    #: What names the counter's counts for good (a hash of the tokenizer), so they
    #: may be kept on disk between runs; None: counts are not kept.
    identity: str | None

    def count(self, texts: Sequence[str]) -> NDArray[np.int64]:
        """Tokens of each text."""
        ...


class WordCounter:
    """One token per whitespace-separated word: burstlab's fallback, an estimate
    (exact against ``burstlab serve`` without ``--tokenizer``)."""

    name = "whitespace words (an estimate: no --tokenizer)"
    exact = False
    identity: str | None = None  # as fast to count again as to read

    def count(self, texts: Sequence[str]) -> NDArray[np.int64]:
        return np.fromiter((count_fallback_tokens(t) for t in texts), np.int64, len(texts))


class TokenizerCounter:
    """Counts with a Hugging Face tokenizer (``tokenizers``), batched over its threads."""

    exact = True

    def __init__(self, tokenizer: Tokenizer, name: str) -> None:
        self.tokenizer = tokenizer
        self.name = name
        digest = hashlib.sha256(tokenizer.to_str().encode()).hexdigest()
        self.identity: str | None = f"tokenizer:{digest}"

    def count(self, texts: Sequence[str]) -> NDArray[np.int64]:
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return np.fromiter((len(e.ids) for e in encoded), np.int64, len(encoded))

    def special_overhead(self, probe: str = "hello world") -> int:
        """Tokens the tokenizer adds around a text (a BOS, an EOS), as a server
        that tokenizes a completions prompt with special tokens does."""
        with_special = len(self.tokenizer.encode(probe, add_special_tokens=True).ids)
        return with_special - len(self.tokenizer.encode(probe, add_special_tokens=False).ids)


@dataclass(frozen=True, slots=True)
class PromptPool:
    """The prompts a run draws from: texts and their token counts (no special tokens).

    ``counted_by`` names the counter; ``exact`` says whether the counts are the
    target's own; ``drawn`` is how many prompts the file had before sampling.
    """

    path: str
    texts: tuple[str, ...]
    sources: tuple[str, ...]
    lengths: NDArray[np.int64]
    counted_by: str
    exact: bool
    drawn: int

    @property
    def size(self) -> int:
        return len(self.texts)


def _file_key(path: str | Path) -> tuple[str, int, int]:
    """The file's identity: its path as given, modification time and size."""
    try:
        st = Path(path).stat()
    except OSError:
        return str(path), -1, -1
    return str(path), st.st_mtime_ns, st.st_size


_pools: dict[tuple[Any, ...], PromptPool] = {}


def load_pool(
    path: str | Path,
    counter: TokenCounter,
    *,
    pool_size: int | None = None,
    seed: int = 0,
    cache_key: Any = None,
) -> PromptPool:
    """The pool of ``path``: ``pool_size`` prompts drawn with ``seed`` (all when
    None), counted by ``counter``. Kept per process under the file's identity,
    the draw and ``cache_key`` (what names the counter; None: not kept), so a
    run's several look-ups read and count the file once."""
    key = (_file_key(path), pool_size, seed, cache_key)
    if cache_key is not None and key in _pools:
        return _pools[key]
    if pool_size is not None and pool_size < 1:
        raise InputError(f"must be at least 1, got {pool_size}", field="--pool-size")
    pool_file = read_pool(path)  # not kept: only the drawn pool is (a whole file may be GBs)
    keep = sample_indices(len(pool_file.texts), pool_size, seed)
    texts = tuple(pool_file.texts[i] for i in keep.tolist())
    sources = tuple(pool_file.sources[i] for i in keep.tolist())
    stored = _stored_counts(path, pool_size, seed, counter.identity)
    lengths = _read_counts(stored, len(texts)) if stored is not None else None
    if lengths is None:
        lengths = np.asarray(counter.count(texts), dtype=np.int64)
        if stored is not None:
            _write_counts(stored, lengths)
    pool = PromptPool(
        str(path), texts, sources, lengths, counter.name, counter.exact, len(pool_file.texts)
    )
    if cache_key is not None:
        _pools[key] = pool
    return pool


@dataclass(frozen=True, slots=True)
class _LengthIndex:
    """A pool's prompts sorted by length (equal lengths in a seeded order): the
    distinct lengths, where each starts in ``order`` and how many share it; as
    numpy arrays for batches and as lists for one request at a time."""

    order: NDArray[np.intp]
    unique: NDArray[np.int64]
    first: NDArray[np.intp]
    counts: NDArray[np.intp]
    order_list: list[int]
    unique_list: list[int]
    first_list: list[int]
    counts_list: list[int]

    @classmethod
    def build(cls, lengths: NDArray[np.int64], seed: int) -> _LengthIndex:
        tiebreak = np.random.default_rng(seed).permutation(lengths.size)
        order = np.lexsort((tiebreak, lengths)).astype(np.intp)
        unique, first, counts = np.unique(lengths[order], return_index=True, return_counts=True)
        return cls(
            order,
            unique.astype(np.int64),
            first.astype(np.intp),
            counts.astype(np.intp),
            order.tolist(),
            unique.tolist(),
            first.tolist(),
            counts.tolist(),
        )


#: Where counted pools are kept between runs, under :func:`~burstlab.core.dirs.cache_dir`.
COUNTS_DIR = "pools"


def _stored_counts(
    path: str | Path, pool_size: int | None, seed: int, identity: str | None
) -> Path | None:
    """The cache file of a pool's counts: named by the pool file (resolved path, size,
    modification time), the draw and the counter's identity; None when the counter
    has none. Counting a large pool (ShareGPT's 90k conversations) takes minutes;
    reading the counts back, milliseconds, in every worker and every later run."""
    if identity is None:
        return None
    try:
        st = Path(path).resolve().stat()
    except OSError:
        return None
    key = orjson.dumps(
        [str(Path(path).resolve()), st.st_size, st.st_mtime_ns, pool_size, seed, identity]
    )
    return cache_dir() / COUNTS_DIR / f"{hashlib.sha256(key).hexdigest()[:32]}.npy"


def _read_counts(stored: Path, size: int) -> NDArray[np.int64] | None:
    """Counts kept by :func:`_write_counts`, or None if absent or not of this pool."""
    try:
        lengths = np.load(stored, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if lengths.shape != (size,) or lengths.dtype != np.int64:
        return None
    result: NDArray[np.int64] = lengths
    return result


def _write_counts(stored: Path, lengths: NDArray[np.int64]) -> None:
    """Keep counts for later runs; a cache that cannot be written is skipped."""
    with contextlib.suppress(OSError), atomic_file(stored) as out:
        np.save(out, lengths, allow_pickle=False)


class PoolSynth:
    """Prompts from a :class:`PromptPool`, nearest in length to each request's.

    ``overhead`` is what the server adds to a prompt's count (a BOS for a
    completions prompt; the chat template around a first message): the prompt
    chosen for ``n`` tokens is the one whose count plus ``overhead`` is nearest
    ``n`` (the shorter one on a tie, as the seed does), and ``Prompt.tokens`` is
    that sum, what the server will report. ``followup`` is the same pool with
    the overhead of a later turn of a chat (its history's template tokens).
    ``exact`` says whether the counts are the target's own. ``hash_ids`` are
    ignored: a real prompt cannot share a made-up prefix.
    """

    def __init__(
        self,
        pool: PromptPool,
        *,
        overhead: int = 0,
        followup_overhead: int | None = None,
        exact: bool | None = None,
        seed: int = 0,
        overhead_how: str = "",
        reply_counter: TokenCounter | None = None,
        _index: _LengthIndex | None = None,
    ) -> None:
        if pool.size == 0:
            raise InputError("the prompt pool is empty", path=pool.path)
        self.pool = pool
        self.overhead = overhead
        self.exact = pool.exact if exact is None else exact
        self._followup_overhead = overhead if followup_overhead is None else followup_overhead
        self._index = _index or _LengthIndex.build(pool.lengths, seed)
        self._seed = seed
        self._how = overhead_how
        self._reply_counter = reply_counter
        self._followup: PoolSynth | None = None

    @property
    def followup(self) -> PoolSynth:
        """The synth of a chat's later turns (another template overhead)."""
        if self._followup_overhead == self.overhead:
            return self
        if self._followup is None:
            self._followup = PoolSynth(
                self.pool,
                overhead=self._followup_overhead,
                exact=self.exact,
                seed=self._seed,
                overhead_how=self._how,
                reply_counter=self._reply_counter,
                _index=self._index,
            )
        return self._followup

    def reply_tokens(self, text: str, reported: int) -> int:
        """Tokens a chat reply adds to the next turn's history: ``text`` counted by
        the pool's local tokenizer, else ``reported`` (the server's count of the
        tokens it generated, which the text may re-tokenize to differently)."""
        if self._reply_counter is None:
            return reported
        return int(self._reply_counter.count([text])[0])

    def match(
        self, n_tokens: Sequence[int] | NDArray[Any], keys: Sequence[int] | NDArray[Any]
    ) -> NDArray[np.intp]:
        """Pool indices of the prompts for requests of ``n_tokens`` (each with its
        ``key``): nearest in count plus overhead, shorter on a tie."""
        ix = self._index
        want = np.asarray(n_tokens, dtype=np.int64) - self.overhead
        keys_arr = np.asarray(keys, dtype=np.int64)
        u = ix.unique
        right = np.minimum(np.searchsorted(u, want, side="left"), u.size - 1)
        left = np.maximum(right - 1, 0)
        use_right = np.abs(u[right] - want) < np.abs(want - u[left])
        j = np.where(use_right, right, left)
        offset = ix.first[j] + np.mod(keys_arr, ix.counts[j])
        result: NDArray[np.intp] = ix.order[offset].astype(np.intp)
        return result

    def build(self, n_tokens: int, key: int, hash_ids: Sequence[int] | None = None) -> Prompt:  # noqa: ARG002 - see the class docstring
        """The pool prompt nearest ``n_tokens``; see :meth:`PromptSynth.build`."""
        if n_tokens < 0:
            raise ValueError(f"a prompt cannot have {n_tokens} tokens")
        # One request: the same choice as :meth:`match`, by bisection on plain lists
        # (a few microseconds; numpy's per-call overhead is ten times that).
        ix = self._index
        want = n_tokens - self.overhead
        right = min(bisect.bisect_left(ix.unique_list, want), len(ix.unique_list) - 1)
        left = max(right - 1, 0)
        u = ix.unique_list
        j = right if abs(u[right] - want) < abs(want - u[left]) else left
        i = ix.order_list[ix.first_list[j] + key % ix.counts_list[j]]
        tokens = u[j] + self.overhead
        return Prompt(self.pool.texts[i], None, tokens, exact=self.exact)

    def describe(self) -> str:
        """One line: the pool, its draw, its lengths and how they are counted."""
        pool = self.pool
        lengths = pool.lengths
        drawn = (
            f"{pool.size:,} prompts"
            if pool.size == pool.drawn
            else f"{pool.size:,} of {pool.drawn:,} prompts (seeded draw)"
        )
        unit = "token" if self.overhead == 1 else "tokens"
        extra = f"; +{self.overhead} {unit} per request"
        if self._followup_overhead != self.overhead:
            extra += f", +{self._followup_overhead} per later chat turn"
        if self._how:
            extra += f" ({self._how})"
        return (
            f"prompts: {drawn} from {Path(pool.path).name}, "
            f"{int(lengths.min()):,}-{int(lengths.max()):,} tokens "
            f"(median {int(np.median(lengths)):,}) counted by {pool.counted_by}{extra}"
        )


def local_counter(tokenizer: str | None) -> TokenCounter:
    """The counter of a local ``--tokenizer`` (a ``tokenizer.json``, a folder or a
    hub name), or the word-count fallback when there is none."""
    if tokenizer is None:
        return WordCounter()
    from burstlab.workload.prompts import load_tokenizer  # noqa: PLC0415 - tokenizers is optional

    return TokenizerCounter(load_tokenizer(tokenizer), Path(tokenizer).name or tokenizer)


#: Renders a chat: ``messages`` to the prompt text the server tokenizes.
ChatRenderer = Callable[[list[dict[str, str]]], str]


def chat_template_renderer(tokenizer: str) -> ChatRenderer | None:
    """The chat template beside a local tokenizer (``chat_template`` in the
    ``tokenizer_config.json`` of its folder), rendered with jinja2 the way
    Hugging Face's ``apply_chat_template`` does (``add_generation_prompt``), or
    None when there is none."""
    path = Path(tokenizer)
    folder = path if path.is_dir() else path.parent
    config_path = folder / "tokenizer_config.json"
    if not config_path.is_file():
        return None
    try:
        config = orjson.loads(config_path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InputError(f"cannot read it: {exc}", path=config_path) from None
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):  # named templates: take the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if not isinstance(template, str):
        return None
    from jinja2 import TemplateError  # noqa: PLC0415 - only for chat templates
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: PLC0415

    def special(name: str) -> str:
        value = config.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        return value if isinstance(value, str) else ""

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        compiled = env.from_string(template)
    except TemplateError as exc:
        raise InputError(f"chat_template: {exc}", path=config_path) from None
    bos, eos = special("bos_token"), special("eos_token")

    def render(messages: list[dict[str, str]]) -> str:
        try:
            return compiled.render(
                messages=messages, add_generation_prompt=True, bos_token=bos, eos_token=eos
            )
        except TemplateError as exc:
            raise InputError(f"chat_template: {exc}", path=config_path) from None

    return render
