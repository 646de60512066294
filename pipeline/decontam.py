"""Decontamination (clean.decontaminate): a document sharing a word n-gram
(clean.decontaminate_n, default 13, GPT-3's) with the evaluation text is dropped with reason
`contaminated`.

Words are NFKC, case-folded runs of word characters, so punctuation, case and spacing do not
hide a copy. Each word is hashed once (blake2b, the same in every process), each n-gram is a
polynomial of its words' hashes (mod 2^64), computed for a whole document at once with numpy.
The evaluation n-grams are read from the files once per run, kept sorted, and saved under the
data root (state/decontam/ngrams.npy, with the files' state it was made of), which the clean
workers map. When the evaluation files change, the clean stage re-checks every document cleaned
before against them and reports what a `cllm tokenize --rebuild` would leave out
(state/decontam/recheck.json, `cllm status`), without changing a cleaned part or a shard.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import atomic_write_bytes, atomic_write_json
from pipeline.errors import ConfigError
from pipeline.records import utc_now

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
    return shared_ngrams(text, eval_index(paths, n), n)


def shared_ngrams(text: str, index: np.ndarray, n: int) -> str | None:
    """How many n-grams the text shares with `index` (sorted hashes) and the first, or None."""
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


# --- the index under the data root (state/decontam/) ---------------------------------------

INDEX_FILE = "ngrams.npy"  # the sorted n-gram hashes (what the clean workers read, mapped)
STATE_FILE = "index.json"  # n and the evaluation files' [path, mtime_ns, size] it was made of
REPORT_FILE = "recheck.json"  # the last re-check of the documents cleaned before


def decontam_dir(state: Path) -> Path:
    return state / "decontam"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def persist_index(folder: Path, paths: list[str], n: int) -> tuple[Path, dict[str, Any]]:
    """The evaluation n-grams as a file under `folder`, made again only when the evaluation
    files or n changed; returns (its path, the state it was made of: n and the files)."""
    state = {"n": n, "files": eval_state(paths)}
    index_path = folder / INDEX_FILE
    if _read_json(folder / STATE_FILE) == state and index_path.is_file():
        return index_path, state
    buffer = io.BytesIO()
    np.save(buffer, eval_index(paths, n))
    atomic_write_bytes(index_path, buffer.getvalue())
    atomic_write_json(folder / STATE_FILE, state)  # last: a kill before it makes it again
    return index_path, state


@functools.lru_cache(maxsize=2)
def _mapped(path: str, mtime_ns: int) -> np.ndarray:
    return np.load(path, mmap_mode="r")  # mapped: the workers share the page cache


def load_index(path: Path) -> np.ndarray:
    """The saved n-gram index (once per process and file version)."""
    return _mapped(str(path), path.stat().st_mtime_ns)


@dataclass(slots=True)
class Recheck:
    """What the evaluation text of now finds among documents cleaned before it (kept, in the
    cleaned parts and the shards): what a `cllm tokenize --rebuild` would leave out."""

    eval: dict[str, Any]  # the state of the evaluation files it checked against (n, files)
    checked: int = 0
    contaminated: list[dict[str, str]] = field(default_factory=list)  # id, source, part, detail
    at: str = field(default_factory=utc_now)

    def add(self, doc_id: str, source: str, part: str, detail: str | None) -> None:
        self.checked += 1
        if detail:
            self.contaminated.append({"id": doc_id, "source": source, "part": part,
                                      "detail": detail})

    def summary(self) -> dict[str, Any]:
        return {"checked": self.checked, "contaminated": len(self.contaminated),
                "eval_files": len(self.eval["files"]), "n": self.eval["n"], "at": self.at}


def save_recheck(folder: Path, recheck: Recheck) -> None:
    atomic_write_json(folder / REPORT_FILE, dataclasses.asdict(recheck))


def read_recheck(folder: Path) -> dict[str, Any] | None:
    """The last re-check's report under `folder` (`cllm status` shows it), or None."""
    data = _read_json(folder / REPORT_FILE)
    return data if isinstance(data, dict) else None
