"""Byte-level BPE (Hugging Face `tokenizers`): train, save, load. Decoding is lossless."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.atomic import atomic_write_text
from pipeline.rawstore import sha256_file

if TYPE_CHECKING:
    from tokenizers import Tokenizer

DEFAULT_EOS = "<|endoftext|>"


def train_bpe(texts: Iterable[str], *, vocab_size: int, min_frequency: int = 2,
              eos_token: str = DEFAULT_EOS, length: int | None = None) -> Tokenizer:
    """Train on an iterator of texts (streamed: the texts are never all in memory)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # add_prefix_space=False and no normaliser: decode(encode(x)) == x for any string
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[eos_token],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    return tok


def save_tokenizer(tok: Tokenizer, path: Path) -> str:
    """Write tokenizer.json atomically; returns its sha256."""
    atomic_write_text(path, tok.to_str(pretty=False))
    return sha256_file(Path(path))


def load_tokenizer(path: Path) -> Tokenizer:
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer at {path}: run `cllm tokenize` or set "
                                "tokenize.tokenizer to an existing tokenizer.json")
    return Tokenizer.from_file(str(path))


def eos_id(tok: Tokenizer, eos_token: str = DEFAULT_EOS) -> int:
    token_id = tok.token_to_id(eos_token)
    if token_id is None:
        raise ValueError(f"tokenizer has no end-of-text token {eos_token!r}")
    return token_id
