"""Exact and near-duplicate removal against everything already in the dataset.

Exact: sha256 of the text after NFKC, case folding and whitespace collapsing.
Near: MinHash (datasketch) over word shingles, with LSH banding (datasketch picks the bands
and rows for the Jaccard threshold); LSH candidates are confirmed by their estimated Jaccard.

The index lives in SQLite under the data root (`state/dedup.sqlite`), so documents that arrive
in later runs are compared with every document kept before. It also remembers each document
id's decision and which docs parts are done, which is what makes the clean stage resumable.
Signatures made with other settings (an index from before the 3-word, 0.6 defaults) are made
again from the kept text in state/clean/ when the clean stage opens the index (`resign`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import sqlite3
import unicodedata
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import CleanConfig
from pipeline.filters import Drop
from pipeline.records import utc_now

log = logging.getLogger(__name__)

MINHASH_SEED = 1
MINHASH_SCHEME = "affine32"  # datasketch's 32-bit scheme: 4 bytes per permutation
SHINGLE_HASH = "crc32-poly64"  # how shingles are hashed (signatures depend on it)
_POLY = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the shingle polynomial
SIG_DTYPE = np.dtype("<u4")
# datasketch's (false positive, false negative) weights when it picks bands and rows: at 0.6 and
# 128 permutations, 25 bands of 5 rows: a pair at Jaccard 0.75 (5% of words edited) is a
# candidate 99.9% of the time, one at 0.3 (pages that share boilerplate) 6% (24 x 4, from
# (0.05, 0.95): 18%, each a signature to read and compare)
LSH_WEIGHTS = (0.1, 0.9)
KEPT = "kept"
SCHEMA_VERSION = 1
_WORD = re.compile(r"\w+")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, part TEXT NOT NULL, status TEXT NOT NULL,
                                 detail TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS exact (hash BLOB PRIMARY KEY, id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sigs (id TEXT PRIMARY KEY, sig BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS bands (key INTEGER NOT NULL, id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS bands_key ON bands (key);
CREATE TABLE IF NOT EXISTS parts (name TEXT PRIMARY KEY, size INTEGER NOT NULL,
                                  docs INTEGER NOT NULL, kept INTEGER NOT NULL,
                                  done_at TEXT NOT NULL);
"""


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def dedup_text(text: str, folded: bool = False) -> str:
    """The form two documents must share to be exact duplicates."""
    return " ".join((text if folded else _fold(text)).split())


def shingles(text: str, size: int) -> list[str]:
    """Overlapping word n-grams of the case-folded text (one shingle if it has fewer words)."""
    words = _WORD.findall(_fold(text))
    if len(words) <= size:
        return [" ".join(words)]
    return [" ".join(words[i:i + size]) for i in range(len(words) - size + 1)]


def shingle_hashes(text: str, size: int, folded: bool = False) -> np.ndarray:
    """A 32-bit hash of each shingle (as `shingles` cuts them), computed from word hashes.

    Each word is hashed (CRC-32) and each n-gram is a polynomial of its word hashes mod 2**64,
    folded to 32 bits: hashing every shingle string took most of the clean stage's time.
    """
    words = _WORD.findall(text if folded else _fold(text)) or [""]
    h = np.fromiter(map(zlib.crc32, map(str.encode, words)), dtype=np.uint64, count=len(words))
    n = max(1, len(h) - size + 1)
    acc = np.zeros(n, dtype=np.uint64)
    for k in range(min(size, len(h))):
        acc = acc * _POLY + h[k:k + n]  # wraps mod 2**64
    return ((acc >> np.uint64(32)) ^ acc).astype(np.uint32)


@functools.cache
def _permutations(num_perm: int) -> np.ndarray:
    """datasketch's permutation parameters for our seed and scheme, made once per process."""
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=MINHASH_SEED, scheme=MINHASH_SCHEME).permutations


def _identity(value: int) -> int:
    return value


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What the index needs of one document; computed in worker processes."""

    exact: bytes  # sha256 of dedup_text
    sig: bytes  # MinHash values as little-endian uint32; empty when near dedup is off


def fingerprint(text: str, cfg: CleanConfig) -> Fingerprint:
    folded = _fold(text)
    exact = hashlib.sha256(dedup_text(folded, folded=True).encode()).digest()
    if not cfg.dedup_near:
        return Fingerprint(exact=exact, sig=b"")
    from datasketch import MinHash

    mh = MinHash(num_perm=cfg.minhash_perm, seed=MINHASH_SEED, scheme=MINHASH_SCHEME,
                 hashfunc=_identity, permutations=_permutations(cfg.minhash_perm))
    mh.update_batch(shingle_hashes(folded, cfg.shingle_words, folded=True).tolist())
    return Fingerprint(exact=exact, sig=np.asarray(mh.hashvalues, dtype=SIG_DTYPE).tobytes())


@functools.cache  # the optimisation (and importing scipy for it) takes most of a second
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's MinHashLSH chooses for this threshold.

    Every LSH candidate is confirmed by its estimated Jaccard, so a false positive costs one
    comparison while a false negative keeps a duplicate: weigh misses more (LSH_WEIGHTS).
    """
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    return lsh.b, lsh.r


def band_keys(sig: bytes, bands: int, rows: int) -> list[int]:
    """One signed 64-bit key (an SQLite integer) per LSH band; the band number salts the hash."""
    width = rows * SIG_DTYPE.itemsize
    return [int.from_bytes(hashlib.blake2b(sig[b * width:(b + 1) * width], digest_size=8,
                                           person=b"band%d" % b).digest(), "little", signed=True)
            for b in range(bands)]


def estimated_jaccard(a: bytes, b: bytes) -> float:
    x, y = np.frombuffer(a, dtype=SIG_DTYPE), np.frombuffer(b, dtype=SIG_DTYPE)
    return float(np.count_nonzero(x == y)) / len(x)


@dataclass(frozen=True, slots=True)
class PartRecord:
    """A docs part the clean stage has finished."""

    name: str
    size: int  # bytes of the docs part when it was cleaned
    docs: int
    kept: int


class DedupIndex:
    """Every document seen (with its decision), and the exact and near-dup index of kept ones.

    Changes are made between `begin_part` and `commit_part`: one transaction per docs part,
    committed only after the caller has written that part's output.
    """

    def __init__(self, path: Path, cfg: CleanConfig) -> None:
        self.path = Path(path)
        self.cfg = cfg
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._check_params()

    @functools.cached_property
    def _banding(self) -> tuple[int, int]:
        """(bands, rows); computed only when needed (the optimisation imports scipy)."""
        return lsh_params(self.cfg.near_jaccard, self.cfg.minhash_perm)

    def __enter__(self) -> DedupIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self.db.close()

    # --- parameters the stored signatures depend on --------------------------------------

    def _meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta"))

    def _set_meta(self, **values: Any) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            [(k, str(v)) for k, v in values.items()])

    def _check_params(self) -> None:
        """Note in `stale` what the stored signatures were made with, if not with what this
        config and version make (`resign` makes them again); rebuild the LSH bands if only the
        threshold changed."""
        meta = self._meta()
        has_sigs = self.db.execute("SELECT 1 FROM sigs LIMIT 1").fetchone() is not None
        changed = [f"{key} {meta[key]} -> {value}"
                   for key, value in self._signature_params().items()
                   if has_sigs and meta.get(key, str(value)) != str(value)]
        # with near dedup off the signatures are not used: they stay as made, and so does meta
        self.stale = (", ".join(changed) or None) if self.cfg.dedup_near else None
        if changed:
            return
        lsh = f"jaccard {self.cfg.near_jaccard}, weights {LSH_WEIGHTS}"
        if has_sigs and meta.get("lsh") not in (None, lsh):
            self._rebuild_bands(meta["lsh"], lsh)
        self._set_meta(lsh=lsh, **self._signature_params())

    def _signature_params(self) -> dict[str, Any]:
        """What a stored signature depends on: two settings and how this version hashes."""
        return {"minhash_perm": self.cfg.minhash_perm, "shingle_words": self.cfg.shingle_words,
                "schema": SCHEMA_VERSION, "minhash_seed": MINHASH_SEED,
                "minhash_scheme": MINHASH_SCHEME, "shingle_hash": SHINGLE_HASH}

    def resign(self, signed: Iterable[tuple[str, bytes]]) -> int:
        """Replace every stored signature and band by (id, signature) pairs made with the
        current settings (of the kept documents, from state/clean/); returns how many."""
        log.warning("clean: the dedup index %s was signed with %s: signing the kept documents "
                    "again from state/clean/", self.path, self.stale)
        self.db.execute("BEGIN")
        try:
            self.db.execute("DELETE FROM sigs")
            self.db.execute("DELETE FROM bands")
            count = 0
            for doc_id, sig in signed:
                self.db.execute("INSERT OR REPLACE INTO sigs VALUES (?, ?)", (doc_id, sig))
                self._add_bands(doc_id, sig)
                count += 1
            self._set_meta(lsh=f"jaccard {self.cfg.near_jaccard}, weights {LSH_WEIGHTS}",
                           **self._signature_params())
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.stale = None
        return count

    def _rebuild_bands(self, old: str, new: str) -> None:
        log.info("clean.near_jaccard changed (LSH %s -> %s): rebuilding the band index", old, new)
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM bands")
        for doc_id, sig in self.db.execute("SELECT id, sig FROM sigs").fetchall():
            self._add_bands(doc_id, sig)
        self.db.execute("COMMIT")

    def _add_bands(self, doc_id: str, sig: bytes) -> None:
        self.db.executemany("INSERT INTO bands VALUES (?, ?)",
                            [(k, doc_id) for k in band_keys(sig, *self._banding)])

    # --- parts ---------------------------------------------------------------------------

    def begin_part(self) -> None:
        self.db.execute("BEGIN")

    def commit_part(self, record: PartRecord) -> None:
        self.db.execute("INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?)",
                        (record.name, record.size, record.docs, record.kept, utc_now()))
        self.db.execute("COMMIT")

    def rollback_part(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def done_parts(self) -> dict[str, PartRecord]:
        return {name: PartRecord(name=name, size=size, docs=docs, kept=kept)
                for name, size, docs, kept in
                self.db.execute("SELECT name, size, docs, kept FROM parts ORDER BY name")}

    # --- documents -----------------------------------------------------------------------

    def find_duplicate(self, fp: Fingerprint) -> Drop | None:
        """A Drop naming the earlier kept document that `fp` duplicates, if any."""
        if self.stale:
            raise RuntimeError(f"{self.path}: signatures made with {self.stale}; resign first")
        if self.cfg.dedup_exact:
            row = self.db.execute("SELECT id FROM exact WHERE hash = ?", (fp.exact,)).fetchone()
            if row:
                return Drop("exact_duplicate", f"same text as {row[0]}")
        if self.cfg.dedup_near and fp.sig:
            match = self._near_match(fp.sig)
            if match:
                other, similarity = match
                return Drop("near_duplicate", f"estimated Jaccard {similarity:.2f} with {other}")
        return None

    def _near_match(self, sig: bytes) -> tuple[str, float] | None:
        keys = band_keys(sig, *self._banding)
        marks = ",".join("?" * len(keys))
        candidates = self.db.execute(
            f"SELECT s.id, s.sig FROM sigs s WHERE s.id IN "
            f"(SELECT DISTINCT id FROM bands WHERE key IN ({marks})) ORDER BY s.id",
            keys).fetchall()
        best: tuple[str, float] | None = None
        for other, other_sig in candidates:
            similarity = estimated_jaccard(sig, other_sig)
            if similarity >= self.cfg.near_jaccard and (best is None or similarity > best[1]):
                best = (other, similarity)
        return best

    def add_kept(self, doc_id: str, part: str, fp: Fingerprint) -> None:
        self.db.execute("INSERT INTO docs VALUES (?, ?, ?, '')", (doc_id, part, KEPT))
        self.db.execute("INSERT OR IGNORE INTO exact VALUES (?, ?)", (fp.exact, doc_id))
        if fp.sig:
            self.db.execute("INSERT INTO sigs VALUES (?, ?)", (doc_id, fp.sig))
            self._add_bands(doc_id, fp.sig)

    def add_dropped(self, doc_id: str, part: str, drop: Drop) -> None:
        self.db.execute("INSERT INTO docs VALUES (?, ?, ?, ?)",
                        (doc_id, part, drop.reason, drop.detail))

    def decision(self, doc_id: str) -> tuple[str, str] | None:
        """(status, detail) of a document seen before: "kept" or the reason it was dropped."""
        row = self.db.execute("SELECT status, detail FROM docs WHERE id = ?",
                              (doc_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def counts(self) -> dict[str, int]:
        """Documents by decision, over the whole dataset."""
        return dict(self.db.execute("SELECT status, COUNT(*) FROM docs GROUP BY status"))
