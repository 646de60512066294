"""Helpers for the dataset tests (no tests here): seeded documents that pass the filters."""

from __future__ import annotations

import hashlib
import random

from pipeline.records import Document

WORDS = (
    "the of and to in is was for that with as on by at from his her an which this be are or "
    "had not but have were their one all been has there when who more they into time than "
    "other its can only new some could these two may first then do any like my now over "
    "such our man me even most made after also did many before must through back years "
    "where much your way well down should because each just those people how too little "
    "state good very make world still own see men work long get here between both life "
    "being under never day same another know while last might us great old year off come "
    "since against go came right used take three river mountain garden winter harbour "
    "library engine letter market village station bridge window forest summer kitchen "
    "island castle museum theatre orchard meadow lantern compass journey weather history"
).split()


def make_text(rng: random.Random, words: int) -> str:
    """Paragraphs of sentences of common words: plain prose by every quality measure."""
    paragraphs, count = [], 0
    while count < words:
        sentences = []
        for _ in range(rng.randint(3, 6)):
            n = rng.randint(6, 16)
            s = " ".join(rng.choice(WORDS) for _ in range(n))
            sentences.append(s[0].upper() + s[1:] + rng.choice(".!?.."))
            count += n
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def doc_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def make_docs(n: int, seed: int, words: int = 120, prefix: str = "doc") -> list[Document]:
    rng = random.Random(seed)
    return [Document(id=doc_id(f"{prefix}-{seed}-{i}"), source=f"/corpus/{prefix}-{seed}-{i}.txt",
                     mime="text/plain", text=make_text(rng, words), created_at="2026-01-01")
            for i in range(n)]
