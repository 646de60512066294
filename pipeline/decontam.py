"""Decontamination (clean.decontaminate): a document sharing a word n-gram
(clean.decontaminate_n, default 13, GPT-3's) with the evaluation text is dropped with reason
`contaminated`.

Words are NFKC, case-folded runs of word characters, so punctuation, case and spacing do not
hide a copy. Each word is hashed once (blake2b, the same in every process), each n-gram is a
polynomial of its words' hashes (mod 2^64), computed for a whole document at once with numpy.
The evaluation n-grams are read from the files once per process and kept sorted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError

REASON = "contaminated"
_WORD = re.compile(r"\w+")
_BASE = np.uint64(1_000_003)


def normalised_words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


@functools.lru_cache(maxsize=1 << 18)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def ngram_hashes(words: list[str], n: int) -> np.ndarray:
    """uint64 hash of each n-gram of `words`, in order (empty if fewer than n words)."""
    if len(words) < n:
        return np.zeros(0, dtype=np.uint64)
    w = np.fromiter((_word_hash(x) for x in words), dtype=np.uint64, count=len(words))
    out = np.zeros(len(words) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrapping multiplication is the hash
        for k in range(n):
            out = out * _BASE + w[k:len(words) - n + 1 + k]
    return out


def eval_files(paths: list[str]) -> list[Path]:
    """The files named or under the folders named, sorted; a missing path is a ConfigError."""
    files: list[Path] = []
    for i, name in enumerate(paths):
        path = Path(name)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"clean.decontaminate[{i}]: {name} is no file or folder")
    return files


def eval_texts(path: Path) -> list[str]:
    """A .jsonl file's `text` fields (lines without one are skipped), or a file's text."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix != ".jsonl":
        return [raw]
    texts = []
    for line in raw.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            texts.append(record["text"])
    return texts


@functools.cache
def _index(key: tuple[tuple[str, int, int], ...], n: int) -> np.ndarray:
    parts = [ngram_hashes(normalised_words(text), n)
             for name, _, _ in key for text in eval_texts(Path(name))]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)


def eval_state(paths: list[str]) -> list[list[Any]]:
    """[path, mtime_ns, size] of each evaluation file: what the decisions against it depend on
    (lists, as they come back from JSON)."""
    return [[str(p), p.stat().st_mtime_ns, p.stat().st_size] for p in eval_files(paths)]


def eval_index(paths: list[str], n: int) -> np.ndarray:
    """The sorted n-gram hashes of the evaluation text (cached per process and file state)."""
    return _index(tuple(tuple(state) for state in eval_state(paths)), n)


def contamination(text: str, paths: list[str], n: int) -> str | None:
    """The first n-gram the text shares with the evaluation text (its words), or None."""
    index = eval_index(paths, n)
    if not index.size:
        return None
    words = normalised_words(text)
    hashes = ngram_hashes(words, n)
    if not hashes.size:
        return None
    at = np.minimum(np.searchsorted(index, hashes), index.size - 1)
    hits = np.flatnonzero(index[at] == hashes)
    if not hits.size:
        return None
    first = int(hits[0])
    return f"{hits.size} shared {n}-grams, the first: {' '.join(words[first:first + n])!r}"
