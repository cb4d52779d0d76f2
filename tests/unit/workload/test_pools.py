"""ShareGPT-format prompt pools: the reader (both formats, bad files named by line,
column, record and field), the seeded draw, and nearest-length matching."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from burstlab.core.errors import InputError
from burstlab.workload.pools import (
    JOIN,
    PoolSynth,
    PromptPool,
    WordCounter,
    chat_template_renderer,
    load_pool,
    read_pool,
    sample_indices,
)

DATA = Path(__file__).parents[2] / "data"


def _pool(lengths: list[int], exact: bool = True) -> PromptPool:
    texts = tuple(f"prompt {i}" for i in range(len(lengths)))
    return PromptPool(
        "p.json",
        texts,
        tuple(str(i) for i in range(len(lengths))),
        np.asarray(lengths, dtype=np.int64),
        "test",
        exact,
        len(lengths),
    )


def test_both_shipped_formats_read_the_same_conversations() -> None:
    listed = read_pool(DATA / "sharegpt_small.json")
    lines = read_pool(DATA / "sharegpt_small.jsonl")
    assert listed.records == 36
    assert lines.records == 38  # the same conversations and two plain prompts
    plain = {
        "Name a colour that rhymes with bread.",
        "Describe the smell of a forest after rain, briefly.",
    }
    assert set(lines.texts) - set(listed.texts) == plain
    assert [t for t in lines.texts if t not in plain] == list(listed.texts)
    assert listed.empty == 1  # the one empty human turn, left out and counted
    assert len(listed.texts) == 40
    assert listed.sources[0] == "self-000#0"


def test_each_human_turn_is_a_prompt_of_the_conversation_so_far(tmp_path: Path) -> None:
    pool = tmp_path / "p.json"
    conv = [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello"},
        {"from": "human", "value": "Bye"},
        {"from": "gpt", "value": "Goodbye"},
    ]
    pool.write_bytes(orjson.dumps([{"id": "c1", "conversations": conv}]))
    got = read_pool(pool)
    assert got.texts == (
        JOIN.join(["Be brief.", "Hi"]),
        JOIN.join(["Be brief.", "Hi", "Hello", "Bye"]),
    )
    assert got.sources == ("c1#1", "c1#3")


def test_roles_and_contents_in_openai_style_and_the_seeds_preprocessed_file(tmp_path: Path) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_text(
        '{"conversations": [{"role": "user", "content": "one two"}]}\n\n{"text": "three"}\n'
    )
    assert read_pool(chat).texts == ("one two", "three")
    seed = tmp_path / "shareGPT.json"  # BurstGPT-Perf's preprocessed pool: {"0": {"prompt", ...}}
    seed.write_text(
        '{"0": {"prompt": "a b c", "len_prompt": 3}, "1": {"prompt": "d", "len_prompt": 1}}'
    )
    assert read_pool(seed).texts == ("a b c", "d")


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        (
            "p.json",
            '[\n {"conversations": [\n   {"from": "human" "value": "x"}]}]',
            "p.json:3:21: not JSON",
        ),
        ("p.jsonl", '{"prompt": "a"}\n\n{"prompt": "b"\n', "p.jsonl:3:"),
        (
            "p.jsonl",
            '{"prompt": "a"}\n[1, 2]\n',
            "p.jsonl:2: record 1: expected an object, got list",
        ),
        ("p.json", '{"a": 1}', "p.json: record 0: expected an object, got int"),
        ("p.json", '"text"', "p.json: expected a JSON list of conversations"),
        ("p.json", '[{"prompt": 7}]', "p.json: record 0: 'prompt' must be a string"),
        (
            "p.json",
            '[{"prompt": "a"}, {"conversations": "x"}]',
            "p.json: record 1: 'conversations' must be a list",
        ),
        (
            "p.json",
            '[{"conversations": [["human", "x"]]}]',
            "p.json: record 0: conversations[0] must be an object",
        ),
        (
            "p.json",
            '[{"conversations": [{"value": "x"}]}]',
            "p.json: record 0: conversations[0].from must be",
        ),
        (
            "p.json",
            '[{"conversations": [{"from": "human"}]}]',
            "p.json: record 0: conversations[0].value must be a string",
        ),
        ("p.json", '[{"id": 1}]', "p.json: record 0: no 'conversations', 'prompt' or 'text' field"),
        ("p.json", "[]", "p.json: no prompt in 0 records"),
        ("p.json", '[{"prompt": "  "}]', "p.json: no prompt in 1 records"),
    ],
)
def test_a_bad_pool_names_where(tmp_path: Path, name: str, text: str, where: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_pool(path)
    assert str(err.value).startswith(str(tmp_path / where)), str(err.value)


def test_a_missing_pool(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_pool(tmp_path / "none.json")


def test_the_draw_is_seeded_and_sized() -> None:
    a = sample_indices(1000, 50, seed=1)
    assert a.size == 50 == np.unique(a).size
    assert (np.diff(a) > 0).all()  # file order
    assert (a == sample_indices(1000, 50, seed=1)).all()
    assert not (a == sample_indices(1000, 50, seed=2)).all()
    assert (sample_indices(10, None, 0) == np.arange(10)).all()
    assert (sample_indices(10, 99, 0) == np.arange(10)).all()
    with pytest.raises(InputError, match="--pool-size"):
        sample_indices(10, 0, 0)


def test_load_pool_draws_counts_and_keeps_one_per_process() -> None:
    path = DATA / "sharegpt_small.json"
    pool = load_pool(path, WordCounter(), pool_size=12, seed=5, cache_key="words")
    assert pool.size == 12
    assert pool.drawn == 40
    assert not pool.exact
    full = read_pool(path)
    for text, n in zip(pool.texts, pool.lengths.tolist(), strict=True):
        assert text in full.texts
        assert n == len(text.split())
    assert load_pool(path, WordCounter(), pool_size=12, seed=5, cache_key="words") is pool
    other = load_pool(path, WordCounter(), pool_size=12, seed=6, cache_key="words")
    assert other.texts != pool.texts


def test_nearest_length_with_ties_to_the_shorter_and_no_cap() -> None:
    synth = PoolSynth(_pool([10, 20, 40, 5000]))
    idx = synth.match([0, 10, 14, 15, 16, 30, 31, 2520, 2521, 10**6], [0] * 10)
    assert synth.pool.lengths[idx].tolist() == [10, 10, 10, 10, 20, 20, 40, 40, 5000, 5000]
    prompt = synth.build(4000, key=3)
    assert prompt.tokens == 5000
    assert prompt.text == "prompt 3"
    assert prompt.exact


def test_overhead_shifts_the_match_and_counts_in_the_prompt() -> None:
    synth = PoolSynth(_pool([10, 20]), overhead=7, followup_overhead=3)
    assert synth.build(24, key=0).tokens == 27  # 24 - 7 = 17: nearest 20
    assert synth.build(22, key=0).tokens == 17  # 22 - 7 = 15: a tie, the shorter
    later = synth.followup
    assert later.overhead == 3
    assert later.build(22, key=0).tokens == 23
    assert PoolSynth(_pool([10])).followup.overhead == 0


def test_equal_lengths_are_told_apart_by_key_in_a_seeded_order() -> None:
    lengths = [8] * 6 + [30]
    one = PoolSynth(_pool(lengths), seed=1)
    picks = one.match([8] * 6, list(range(6))).tolist()
    assert sorted(picks) == list(range(6))  # consecutive keys: every prompt once
    assert one.match([8], [6]).tolist() == picks[:1]
    again = PoolSynth(_pool(lengths), seed=1).match([8] * 6, list(range(6))).tolist()
    other = PoolSynth(_pool(lengths), seed=2).match([8] * 6, list(range(6))).tolist()
    assert picks == again
    assert picks != other


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 5000), min_size=1, max_size=40),
    wants=st.lists(st.integers(0, 12000), min_size=1, max_size=20),
    overhead=st.integers(0, 30),
)
def test_match_is_the_nearest(lengths: list[int], wants: list[int], overhead: int) -> None:
    synth = PoolSynth(_pool(lengths), overhead=overhead)
    got = synth.pool.lengths[synth.match(wants, list(range(len(wants))))] + overhead
    for want, chosen in zip(wants, got.tolist(), strict=True):
        best = min(abs(n + overhead - want) for n in lengths)
        assert abs(chosen - want) == best
        if chosen > want:  # a tie goes to the shorter
            assert want - best - overhead not in lengths


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 300), min_size=1, max_size=40),
    wants=st.lists(st.integers(0, 700), min_size=1, max_size=20),
    overhead=st.integers(0, 30),
    seed=st.integers(0, 5),
)
def test_one_request_gets_what_a_batch_gets(
    lengths: list[int], wants: list[int], overhead: int, seed: int
) -> None:
    """build (bisection, one request) and match (numpy, a batch) choose alike."""
    synth = PoolSynth(_pool(lengths), overhead=overhead, seed=seed)
    keys = [3 * k + 1 for k in range(len(wants))]
    batch = synth.match(wants, keys).tolist()
    for want, key, i in zip(wants, keys, batch, strict=True):
        prompt = synth.build(want, key)
        assert prompt.text == f"prompt {i}"
        assert prompt.tokens == lengths[i] + overhead


def test_word_counts_are_marked_inexact() -> None:
    pool = load_pool(DATA / "sharegpt_small.jsonl", WordCounter())
    synth = PoolSynth(pool)
    prompt = synth.build(100, key=0)
    assert not prompt.exact
    assert prompt.tokens == len((prompt.text or "").split())
    assert "40 prompts" not in synth.describe()
    assert "42 prompts from sharegpt_small.jsonl" in synth.describe()


def test_chat_template_beside_a_tokenizer(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    assert chat_template_renderer(str(tmp_path / "tokenizer.json")) is None
    template = (
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    (tmp_path / "tokenizer_config.json").write_text(
        orjson.dumps({"chat_template": template, "bos_token": {"content": "<s>"}}).decode()
    )
    render = chat_template_renderer(str(tmp_path))
    assert render is not None
    text = render([{"role": "user", "content": "hi"}])
    assert text == "<s><|user|>\nhi<|end|>\n<|assistant|>\n"
    (tmp_path / "tokenizer_config.json").write_text(
        '{"chat_template": "{{ raise_exception(\'no\') }}"}'
    )
    bad = chat_template_renderer(str(tmp_path))
    assert bad is not None
    with pytest.raises(InputError, match="chat_template: no"):
        bad([{"role": "user", "content": "hi"}])


class _Counting:
    """A counter that counts words and how often it was asked."""

    name = "counting words"
    exact = True

    def __init__(self, identity: str | None) -> None:
        self.identity = identity
        self.calls = 0

    def count(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return WordCounter().count(texts)


def test_counts_are_kept_on_disk_between_runs(tmp_path: Path) -> None:
    """A counter with an identity (a tokenizer's hash) is asked once per pool, draw and
    file version, in any process; one without is asked every time."""
    pool = tmp_path / "p.jsonl"
    pool.write_text('{"prompt": "a b c"}\n{"prompt": "d e"}\n{"prompt": "f"}\n')
    kept = _Counting("tokenizer:abc")
    first = load_pool(pool, kept)
    again = load_pool(pool, kept)  # no process cache_key: read back from disk
    assert kept.calls == 1
    assert again.lengths.tolist() == first.lengths.tolist() == [3, 2, 1]
    load_pool(pool, kept, pool_size=2, seed=1)  # another draw: counted
    assert kept.calls == 2
    load_pool(pool, _Counting("tokenizer:other"))  # another tokenizer: counted
    pool.write_text('{"prompt": "a b c d"}\n{"prompt": "d e"}\n{"prompt": "f"}\n')
    changed = load_pool(pool, kept)  # the file changed (size, time): counted again
    assert kept.calls == 3
    assert changed.lengths.tolist() == [4, 2, 1]
    never = _Counting(None)
    load_pool(pool, never)
    load_pool(pool, never)
    assert never.calls == 2
