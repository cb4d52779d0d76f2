"""A tiny BPE ``tokenizer.json`` made on the spot with ``tokenizers``: nothing downloaded."""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a serving engine batches requests and streams tokens",
    "prefill reads the prompt and decode writes one token at a time",
    "burstlab replays bursty traces against an OpenAI compatible server",
]


def write_tiny_tokenizer(path: Path) -> Path:
    """Train a BPE of 120 tokens on :data:`SENTENCES`, with a ``<s>`` that ``encode``
    adds in front (as a BOS), and save it at ``path``; returns ``path``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["[UNK]", "<s>"])
    tok.train_from_iterator(SENTENCES, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    tok.save(str(path))
    return path
