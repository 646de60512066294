"""Tiny assets for tests and benchmarks: a made-up corpus, shards of it, a small train config.

Built with the real tokenizer trainer and shard writer, so what trains on them is the real path.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from pipeline.config import Config, build_config
from pipeline.layout import DataRoot
from pipeline.shards import (
    SPLITS,
    Manifest,
    ShardWriter,
    TokenizerInfo,
    dtype_for_vocab,
    write_manifest,
)

WORDS = {
    "det": ["the", "a", "every", "one", "this"],
    "adj": ["small", "bright", "quiet", "old", "green", "quick", "heavy", "warm"],
    "noun": ["cat", "river", "engine", "garden", "lattice", "clock", "prime", "spiral",
             "model", "crystal"],
    "verb": ["sees", "turns", "holds", "finds", "follows", "counts", "moves", "keeps"],
    "adv": ["slowly", "often", "again", "today", "there"],
}


def sentence(rng: random.Random) -> str:
    """A sentence of a small fixed grammar: learnable structure, enough variety."""
    words = [rng.choice(WORDS["det"]), rng.choice(WORDS["adj"]), rng.choice(WORDS["noun"]),
             rng.choice(WORDS["verb"]), rng.choice(WORDS["det"]), rng.choice(WORDS["noun"])]
    if rng.random() < 0.5:
        words.append(rng.choice(WORDS["adv"]))
    return " ".join(words).capitalize() + "."


def corpus(docs: int = 40, sentences: int = 12, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(sentence(rng) for _ in range(sentences)) for _ in range(docs)]


def make_shards(root: DataRoot, texts: Sequence[str], *, vocab_size: int = 320,
                val_every: int = 5, shard_tokens: int = 2048) -> Manifest:
    """Train a BPE tokenizer on `texts` and write them as shards; every val_every-th is val."""
    from pipeline.tokenizer import eos_id, save_tokenizer, train_bpe

    root.ensure()
    tok = train_bpe(texts, vocab_size=vocab_size, min_frequency=2)
    sha = save_tokenizer(tok, root.tokenizer_json)
    eos = eos_id(tok)
    dtype = dtype_for_vocab(tok.get_vocab_size()).name
    writers = {split: ShardWriter(root.shards, split, dtype=dtype, eos_id=eos,
                                  shard_tokens=shard_tokens) for split in SPLITS}
    infos = []
    for i, text in enumerate(texts):
        split = "val" if val_every and i % val_every == 0 else "train"
        done = writers[split].add(tok.encode(text).ids, len(text.encode("utf-8")))
        infos += [done] if done else []
    infos += [info for w in writers.values() if (info := w.flush())]
    manifest = Manifest(tokenizer=TokenizerInfo(sha256=sha, vocab_size=tok.get_vocab_size(),
                                                eos_id=eos),
                        dtype=dtype, val_fraction=1 / val_every if val_every else 0.0,
                        shards=sorted(infos, key=lambda s: s.name))
    write_manifest(root.manifest, manifest)
    return manifest


TINY_TRAIN = {
    "n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "batch_size": 8,
    "max_steps": 30, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 5, "eval_interval": 10,
    "eval_iters": 2, "save_interval": 10, "device": "cpu", "precision": "fp32", "threads": 1,
}


def tiny_config(**train: Any) -> Config:
    """Defaults plus a tiny model and run (CPU, fp32, one thread), overridden by `train`."""
    return build_config([{"train": {**TINY_TRAIN, **train}}])
