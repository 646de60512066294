"""Encoding text to ids: the Hugging Face tokenizer itself, or the same byte-level BPE loaded
into tiktoken (same merges, same pre-tokenization regex), which gives the same ids faster.
`to_tiktoken` refuses tokenizers it cannot convert exactly and checks the result id for id.

Long texts are encoded in segments cut where the pre-tokenizer has a piece boundary anyway
(see `segment_text`), so segmenting changes nothing in the ids and keeps the encoder fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.atomic import atomic_write_bytes
from pipeline.config import EncoderKind
from pipeline.usercache import cache_dir

if TYPE_CHECKING:
    import numpy as np
    import tiktoken
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

# The GPT-2 pre-tokenization regex that `pre_tokenizers.ByteLevel(use_regex=True)` applies,
# in tiktoken's spelling (the contractions written as one group; same matches).
BYTE_LEVEL_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Probe text for the id-for-id check: the cases where encoders tend to disagree.
IDENTITY_PROBE = (
    "Hello,  world!\n\n\tIt's 3.14159 -- isn't it? They'll've DONE'S 1234567890\r\n"
    "naïve café Ünïcödé, 中文字符, Ελληνικά, русский, עִבְרִית, 😀👍🏽 👨‍👩‍👧 \u00a0\u3000x\u2028y\n"
    "def f(x):\n    return {'a': [1, 2]}  # comment\n\n\n    \n<|endoftext|> <<>> ~~ ... !!!"
)


def set_threads(threads: int) -> int:
    """Use `threads` encoder threads (0 = all cores); returns the number.

    `tokenizers` sizes its thread pool once, on first use, from RAYON_NUM_THREADS; a value the
    user set in the environment wins.
    """
    n = threads or os.cpu_count() or 1
    os.environ.setdefault("RAYON_NUM_THREADS", str(n))
    return n


# --- segments ------------------------------------------------------------------------------

# Cut points, best first: before the last newline of a blank-line run, before a newline, before
# a space or tab; always followed by a non-space character. The byte-level pre-tokenizer
# starts a new piece at each of these, so encoding the segments gives the ids of the whole.
_CUTS = (re.compile(r"(?<=\n)\n(?=\S)"), re.compile(r"\n(?=\S)"), re.compile(r"[ \t](?=\S)"))


def _last_cut(text: str, lo: int, hi: int) -> int:
    for pattern in _CUTS:
        cut = -1
        for m in pattern.finditer(text, lo, hi):
            cut = m.start()
        if cut > 0:
            return cut
    return hi  # one unbroken run of hi - lo characters: cut anywhere


def segment_text(text: str, max_chars: int) -> list[str]:
    """`text` in pieces of at most `max_chars` (at least half that, except the last)."""
    if len(text) <= max_chars:
        return [text]
    out, start = [], 0
    while len(text) - start > max_chars:
        cut = _last_cut(text, start + max_chars // 2, start + max_chars)
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


# --- encoders ------------------------------------------------------------------------------

class TextEncoder(Protocol):
    name: str

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text; special-token text is encoded as plain text."""
        ...

    def encode_arrays(self, texts: list[str]) -> list[np.ndarray]:
        """The same ids, each text's as a uint32 array."""
        ...


class HFEncoder:
    name = "hf"

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        # a document that contains "<|endoftext|>" must not get an EOS id in the middle
        self.tok.encode_special_tokens = True

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch_fast(texts, add_special_tokens=False)]

    def encode_arrays(self, texts: list[str]) -> list[np.ndarray]:
        import numpy as np

        return [np.array(ids, dtype=np.uint32) for ids in self.encode_batch(texts)]


class TiktokenEncoder:
    name = "tiktoken"

    def __init__(self, enc: tiktoken.Encoding, threads: int) -> None:
        self.enc = enc
        self.threads = threads

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.enc.encode_ordinary_batch(texts, num_threads=self.threads)

    def encode_arrays(self, texts: list[str]) -> list[np.ndarray]:
        """encode_ordinary_batch's ids, without building a Python int for each token: each
        text's ids come out of tiktoken as one buffer (the GIL released while it encodes);
        with no special token allowed, `encode` is `encode_ordinary`."""
        encode = self.enc.encode_to_numpy

        def run(group: Sequence[str]) -> list[np.ndarray]:
            return [encode(text, disallowed_special=()) for text in group]

        groups = _balanced_groups(texts, 4 * self.threads)
        with ThreadPoolExecutor(self.threads) as pool:
            return [ids for group in pool.map(run, groups) for ids in group]


def _balanced_groups(texts: Sequence[str], n: int) -> list[Sequence[str]]:
    """`texts` in about `n` runs of about equal characters, in order: each thread encodes
    a run at a time, not a text at a time (a future per text costs more than a short text's
    encoding), and the runs are small enough that no thread waits long for the last."""
    total = sum(map(len, texts))
    groups, start, size, target = [], 0, 0, total / n
    for i, text in enumerate(texts):
        size += len(text)
        if size >= target:
            groups.append(texts[start:i + 1])
            start, size = i + 1, 0
    if start < len(texts):
        groups.append(texts[start:])
    return groups


class UnsupportedTokenizer(ValueError):
    """A tokenizer tiktoken cannot reproduce exactly; the message says why."""


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """The byte-level alphabet (GPT-2's bytes_to_unicode) back to bytes."""
    from tokenizers import pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # ByteLevel maps bytes 33..126, 161..172, 174..255 to themselves and the others, in order,
    # to 256, 257, ...: rebuild that table and check it against the library's alphabet.
    kept = [*range(33, 127), *range(161, 173), *range(174, 256)]
    moved = [b for b in range(256) if b not in kept]
    table = {chr(b): b for b in kept} | {chr(256 + i): b for i, b in enumerate(moved)}
    if set(table) != set(alphabet):
        raise UnsupportedTokenizer("this tokenizers version has a different byte alphabet")
    return table


@lru_cache(maxsize=1)
def _byte_translation() -> tuple[frozenset[str], dict[int, int]]:
    table = byte_decoder()
    return frozenset(table), {ord(c): b for c, b in table.items()}


def byte_level_bytes(token: str) -> bytes:
    """The bytes a byte-level token's characters stand for (one C-level pass, not a Python
    loop per character); KeyError when a character is not in the byte-level alphabet."""
    alphabet, translation = _byte_translation()
    if not alphabet.issuperset(token):
        raise KeyError(token)
    return token.translate(translation).encode("latin-1")


def _merge_pairs(model: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    for merge in model.get("merges", []):
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        pairs.append((a, b))
    return pairs


def _check_convertible(spec: dict[str, Any]) -> None:
    model = spec.get("model") or {}
    pre = spec.get("pre_tokenizer") or {}
    problems = []
    if model.get("type") != "BPE":
        problems.append(f"model is {model.get('type')}, not BPE")
    if model.get("dropout") or model.get("unk_token") or model.get("byte_fallback"):
        problems.append("BPE uses dropout, an unk token or byte fallback")
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        problems.append("BPE uses subword prefixes or suffixes")
    if spec.get("normalizer"):
        problems.append("it has a normalizer")
    if not (pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
            and not pre.get("add_prefix_space", True)):
        problems.append("pre-tokenizer is not ByteLevel(add_prefix_space=False, use_regex=True)")
    if any(not t.get("special") for t in spec.get("added_tokens", [])):
        problems.append("it has added tokens that are not special")
    if problems:
        raise UnsupportedTokenizer("; ".join(problems))


def _mergeable_ranks(spec: dict[str, Any]) -> dict[bytes, int]:
    special = {t["content"] for t in spec.get("added_tokens", [])}
    ranks: dict[bytes, int] = {}
    for token, token_id in spec["model"]["vocab"].items():
        if token in special:
            continue
        try:
            ranks[byte_level_bytes(token)] = token_id
        except KeyError:
            raise UnsupportedTokenizer(f"token {token!r} is not in the byte-level alphabet") \
                from None
    if sum(1 for b in ranks if len(b) == 1) != 256:
        raise UnsupportedTokenizer("the vocabulary lacks some of the 256 single bytes")
    # tiktoken merges the pair whose concatenation has the lowest id; that is HF's merge
    # order only when each merge creates a token with a higher id than the merges before it.
    last = -1
    vocab = spec["model"]["vocab"]
    for a, b in _merge_pairs(spec["model"]):
        merged = vocab.get(a + b)
        if merged is None or merged <= last:
            raise UnsupportedTokenizer(f"merge ({a!r}, {b!r}) is out of id order")
        last = merged
    return ranks


def to_tiktoken(tok: Tokenizer, check: bool = True) -> tiktoken.Encoding:
    """The same byte-level BPE as a tiktoken Encoding; UnsupportedTokenizer when not exact."""
    import tiktoken

    spec = json.loads(tok.to_str())
    _check_convertible(spec)
    enc = tiktoken.Encoding(
        name="cllm-bpe",
        pat_str=BYTE_LEVEL_PATTERN,
        mergeable_ranks=_mergeable_ranks(spec),
        special_tokens={t["content"]: t["id"] for t in spec.get("added_tokens", [])},
    )
    if check:
        check_identity_once(tok, enc)
    return enc


def check_identity_once(tok: Tokenizer, enc: tiktoken.Encoding) -> None:
    """`check_identity`, skipped when it already passed for this very tokenizer and these
    library versions (a mark in the user cache): it encodes the whole vocabulary both ways,
    a fixed cost of every tokenize run and pool worker that is the same answer each time."""
    mark = _identity_mark(tok)
    if mark.exists():
        return
    check_identity(tok, enc)
    try:
        atomic_write_bytes(mark, b"ok\n", durable=False)
    except OSError as e:  # an unwritable cache only costs the next process the check again
        log.info("cannot keep the tiktoken identity mark in %s (%s)", mark.parent, e)


def _identity_mark(tok: Tokenizer) -> Path:
    from importlib.metadata import version

    key = hashlib.sha256(tok.to_str().encode())
    key.update(f"{version('tiktoken')} {version('tokenizers')}".encode())
    return cache_dir() / "tiktoken-identity" / f"{key.hexdigest()}.ok"


def check_identity(tok: Tokenizer, enc: tiktoken.Encoding) -> None:
    """Every token's own text and a probe text must encode to the same ids in both."""
    texts = [IDENTITY_PROBE]
    for token in tok.get_vocab(with_added_tokens=False):
        try:
            texts.append(byte_level_bytes(token).decode("utf-8"))
        except (KeyError, UnicodeDecodeError):
            continue  # part of a multi-byte character: not a text on its own
    hf = HFEncoder(_copy(tok)).encode_batch(texts)
    tt = [enc.encode_ordinary(text) for text in texts]  # tiny texts: threads cost more
    for text, a, b in zip(texts, hf, tt, strict=True):
        if a != b:
            raise UnsupportedTokenizer(f"tiktoken gives other ids than tokenizers for {text!r}")


def _copy(tok: Tokenizer) -> Tokenizer:
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tok.to_str())


@dataclass(frozen=True, slots=True)
class EncoderChoice:
    encoder: TextEncoder
    reason: str  # why this encoder, for the log and the stage stats


def make_encoder(tok: Tokenizer, kind: EncoderKind = "auto", threads: int = 0) -> EncoderChoice:
    """The encoder to use: tiktoken when asked or (auto) when it reproduces `tok` exactly."""
    n = set_threads(threads)
    if kind == "hf":
        return EncoderChoice(HFEncoder(_copy(tok)), "tokenize.encoder = hf")
    try:
        enc = to_tiktoken(tok)
    except UnsupportedTokenizer as e:
        if kind == "tiktoken":
            raise
        log.info("encoding with tokenizers: tiktoken cannot reproduce this tokenizer (%s)", e)
        return EncoderChoice(HFEncoder(_copy(tok)), f"tiktoken unsupported: {e}")
    return EncoderChoice(TiktokenEncoder(enc, n), "tiktoken reproduces the tokenizer id for id")


def encode_texts(encoder: TextEncoder, texts: Sequence[str], segment_chars: int
                 ) -> list[np.ndarray]:
    """Ids of each text (a uint32 array), long texts encoded in segments (same ids as
    encoding them whole)."""
    import numpy as np

    segments: list[str] = []
    counts: list[int] = []
    for text in texts:
        pieces = segment_text(text, segment_chars)
        segments.extend(pieces)
        counts.append(len(pieces))
    ids = encoder.encode_arrays(segments)
    if len(segments) == len(texts):
        return ids
    out, i = [], 0
    for n in counts:
        out.append(ids[i] if n == 1 else np.concatenate(ids[i:i + n]))
        i += n
    return out
