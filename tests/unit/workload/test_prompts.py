"""Prompt synthesis: exact lengths, determinism, per-request uniqueness, shared hash blocks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from burstlab.core.errors import InputError
from burstlab.workload.prompts import (
    ID_MARGIN,
    FallbackTextSynth,
    Prompt,
    TokenIdSynth,
    count_fallback_tokens,
    fallback_words,
    load_tokenizer,
    make_synth,
)


def ids(prompt: Prompt) -> list[int]:
    assert prompt.token_ids is not None
    return prompt.token_ids


def words(prompt: Prompt) -> list[str]:
    assert prompt.text is not None
    return prompt.text.split()


def test_fallback_vocabulary_is_shipped() -> None:
    words = fallback_words()
    assert len(words) == 1000
    assert len(set(words)) == len(words)
    assert all(w.isascii() and w.isalpha() and w.islower() for w in words)
    assert words[:3] == ("a", "the", "an")


@given(n=st.integers(0, 3000), key=st.integers(-(2**40), 2**40), seed=st.integers(0, 2**32))
@settings(max_examples=60, deadline=None)
def test_fallback_text_has_the_claimed_words(n: int, key: int, seed: int) -> None:
    prompt = FallbackTextSynth(seed).build(n, key)
    assert prompt.text is not None
    assert prompt.token_ids is None
    assert prompt.tokens == n == count_fallback_tokens(prompt.text)
    assert not prompt.exact
    assert FallbackTextSynth(seed).build(n, key) == prompt  # a pure function of its arguments


def test_token_ids_are_exact_and_avoid_special_ranges() -> None:
    synth = make_synth("ids", seed=7, vocab_size=50_000)
    for n in (0, 1, 513, 4000):
        prompt = synth.build(n, key=n)
        assert prompt.text is None
        assert prompt.token_ids is not None
        assert len(prompt.token_ids) == prompt.tokens == n
        assert prompt.exact
        assert all(ID_MARGIN <= t < 50_000 - ID_MARGIN for t in prompt.token_ids)


def test_keys_differ_from_the_first_token() -> None:
    as_ids, as_text = make_synth("ids"), make_synth("text")
    assert len({ids(as_ids.build(8, k))[0] for k in range(10_000)}) == 10_000
    assert len({words(as_text.build(8, k))[0] for k in range(1000)}) == 1000


def test_seed_changes_everything_and_is_reproducible() -> None:
    a, b = make_synth("ids", seed=1), make_synth("ids", seed=2)
    assert a.build(64, 3) == make_synth("ids", seed=1).build(64, 3)
    same = sum(x == y for x, y in zip(ids(a.build(64, 3)), ids(b.build(64, 3)), strict=True))
    assert same < 4


@pytest.mark.parametrize("mode", ["ids", "text"])
def test_hash_blocks_shared_where_ids_are_equal(mode: Any) -> None:
    synth = make_synth(mode, block=16)

    def units(p: Prompt) -> list[Any]:
        return ids(p) if mode == "ids" else words(p)

    a = units(synth.build(40, key=1, hash_ids=[7, 8, 9]))  # blocks of 16, 16 and 8
    b = units(synth.build(30, key=2, hash_ids=[7, 8]))  # 16 and 14
    c = units(synth.build(40, key=3, hash_ids=[7, 5, 9]))
    assert (len(a), len(b)) == (40, 30)
    assert a[:30] == b  # block 8 cut to 14 tokens is the start of block 8
    assert (c[:16], c[32:]) == (a[:16], a[32:])  # blocks 7 and 9 agree wherever they sit
    assert c[16] != a[16]  # distinct ids differ from their first token
    assert synth.build(40, key=99, hash_ids=[7, 8, 9]) == synth.build(40, 1, [7, 8, 9])


def test_hash_ids_shorter_or_longer_than_the_input() -> None:
    synth = TokenIdSynth(block=10)
    short = ids(synth.build(25, key=4, hash_ids=[1]))
    assert len(short) == 25
    assert short[:10] == ids(synth.build(10, 0, [1]))
    assert short[10:] == ids(synth.build(15, 4))
    assert synth.build(12, 0, [1, 2, 3, 4]) == synth.build(12, 0, [1, 2])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="-1 tokens"):
        make_synth("text").build(-1, 0)
    with pytest.raises(InputError, match="vocab size"):
        make_synth("ids", vocab_size=3000)
    with pytest.raises(InputError, match="block"):
        make_synth("ids", block=0)
    with pytest.raises(InputError, match="not token ids"):
        make_synth("ids", tokenizer="gpt2")


def test_missing_tokenizers_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(InputError) as info:
        load_tokenizer("gpt2")
    assert info.value.hint == "pip install 'burstlab[tokenizers]'"


# --- a real tokenizer, trained here on the fallback words (no network) ------------------------


def _train(tmp_path: Path, kind: str) -> Path:
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    vocab = fallback_words()
    corpus = [" ".join(vocab[i : i + 20]) for i in range(0, len(vocab), 20)]
    if kind == "bytelevel":  # GPT-2 style: spaces are part of the next token
        tok = tokenizers.Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    else:  # words split on whitespace, most into 2-4 subwords
        tok = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]", "<s>"])
    tok.train_from_iterator(corpus, trainer)
    folder = tmp_path / kind
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    return folder


@pytest.mark.parametrize("kind", ["whitespace", "bytelevel"])
def test_real_tokenizer_text_is_exact(tmp_path: Path, kind: str) -> None:
    folder = _train(tmp_path, kind)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    synth = make_synth("text", tokenizer=str(folder), seed=5, block=32)
    assert make_synth("text", tokenizer=str(folder / "tokenizer.json")) is not None
    for i, n in enumerate([0, 1, 2, 3, 31, 32, 33, 100, 257, 700]):
        for hashes in (None, [0, 1, 2 + i], list(range(100, 130))):
            prompt = synth.build(n, key=i, hash_ids=hashes)
            assert prompt.exact
            assert prompt.text is not None
            assert len(tok.encode(prompt.text, add_special_tokens=False).ids) == n == prompt.tokens
    again = make_synth("text", tokenizer=str(folder), seed=5, block=32)
    assert synth.build(300, 1) == again.build(300, 1)
    assert synth.build(300, 1).text != synth.build(300, 2).text


def test_real_tokenizer_shares_hash_blocks(tmp_path: Path) -> None:
    folder = _train(tmp_path, "whitespace")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    synth = make_synth("text", tokenizer=str(folder), block=32)
    a = tok.encode(synth.build(100, 1, [5, 6, 7, 8]).text or "").ids
    b = tok.encode(synth.build(90, 2, [5, 6, 9]).text or "").ids
    common = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    assert 64 <= common < 70  # blocks 5 and 6, then block 7 and 9 part at once


def test_tokenizer_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    with pytest.raises(InputError, match=r"no tokenizer\.json"):
        load_tokenizer(str(tmp_path))
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"not a tokenizer\.json"):
        load_tokenizer(str(bad))

    class Offline:
        @staticmethod
        def from_pretrained(name: str) -> None:
            raise RuntimeError("connection refused")

    monkeypatch.setattr(tokenizers, "Tokenizer", Offline)
    with pytest.raises(InputError, match=r"some/model: cannot load.*connection refused") as info:
        load_tokenizer("some/model")
    assert "local tokenizer.json" in (info.value.hint or "")
