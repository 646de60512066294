"""The train/val split rule: which split a chunk of a document is in, from the document's id
and the chunk's index alone (no imports: the shard format and the chunker both name it)."""

from __future__ import annotations

import hashlib
import math

SPLIT_SALT = b"cllm-split-v1:"


def split_phase(doc_id: str) -> float:
    """A document's place in [0, 1), from its id: where its val chunks fall."""
    digest = hashlib.blake2b(SPLIT_SALT + doc_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def is_val(doc_id: str, val_fraction: float, chunk: int = 0) -> bool:
    """Whether chunk `chunk` of a document is in the val split: the interval
    (chunk·f − φ, (chunk+1)·f − φ] holds an integer (φ = `split_phase`).

    Every 1/f-th chunk of a document is val, from a phase its id picks: a document of n chunks
    has floor(n·f) or ceil(n·f) of them in val, so even one long document gets its share, and
    documents are independent of each other. A one-chunk document is val when φ < f, the rule
    of whole-document splits before chunks existed: its split did not change. A pure function
    of (id, chunk), so no chunk ever changes split as the data grows.
    """
    if val_fraction <= 0:
        return False
    return is_val_chunk(split_phase(doc_id), val_fraction, chunk)


def is_val_chunk(phase: float, val_fraction: float, chunk: int) -> bool:
    """`is_val` for a document whose `split_phase` is known (computed once per document)."""
    if val_fraction <= 0:
        return False
    return math.ceil((chunk + 1) * val_fraction - phase) > math.ceil(chunk * val_fraction - phase)


SPLIT_RULE = ("chunk c of a document is val iff (c*f - p, (c+1)*f - p] holds an integer, "
              "f = val_fraction, p = blake2b-8(cllm-split-v1: + doc id) / 2^64")
