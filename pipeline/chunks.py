"""Chunks: the unit of the train/val split. A document longer than `shards.split_chunk_tokens`
is cut into chunks at its own boundaries (before a paragraph, else a line, else a word), and
each chunk goes to train or val by (document id, chunk index); consecutive chunks of one
document in the same split make one shard entry.

Cuts fall between tokens, so the chunks' ids are the document's ids (nothing re-encoded), and
the tokens' bytes (byte-level BPE) give each chunk's exact UTF-8 byte range in the text.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.records import page_ends
from pipeline.split import is_val as is_val  # the rule; chunks are its units
from pipeline.split import is_val_chunk, split_phase

if TYPE_CHECKING:
    from pipeline.records import Document

_SPACES = b" \t\n\r\x0b\x0c"


@dataclass(frozen=True, slots=True)
class TokenTable:
    """Per token id: its UTF-8 byte length, and flags for what its bytes start and end with
    (the bits below), so that finding a document's cut points is one lookup per token."""

    nbytes: np.ndarray  # int64 (V,)
    flags: np.ndarray  # uint8 (V,)

    ENDS_NEWLINE = 1  # last byte "\n"
    STARTS_TEXT = 2  # first byte not white space (an empty token counts as text)
    STARTS_SPACE = 4  # first byte " "
    ENDS_SPACE = 8  # last byte " "
    NEWLINE_BEFORE_LAST = 16  # the byte before the last is "\n"
    ONE_BYTE = 32  # at most one byte: "before the last" lies in the token before

    @classmethod
    def from_bytes(cls, tokens: list[bytes]) -> TokenTable:
        nbytes = np.array([len(t) for t in tokens], dtype=np.int64)
        # each token's first, last and next-to-last byte (-1: none), looked at all at once
        first, last, before_last = (np.array([t[i] if -len(t) <= i < len(t) else -1
                                              for t in tokens], dtype=np.int16)
                                    for i in (0, -1, -2))
        spaces = np.frombuffer(_SPACES, dtype=np.uint8)
        flags = ((last == ord("\n")) * cls.ENDS_NEWLINE
                 | ((first < 0) | ~np.isin(first, spaces)) * cls.STARTS_TEXT
                 | (first == ord(" ")) * cls.STARTS_SPACE | (last == ord(" ")) * cls.ENDS_SPACE
                 | (before_last == ord("\n")) * cls.NEWLINE_BEFORE_LAST
                 | (nbytes <= 1) * cls.ONE_BYTE)
        return cls(nbytes=nbytes, flags=flags.astype(np.uint8))

    def byte_ends(self, ids: np.ndarray) -> np.ndarray:
        """The UTF-8 byte offset, in the document's text, where each token ends."""
        return np.cumsum(self.nbytes[ids])


@functools.cache
def _cached_table(path: str, mtime_ns: int, size: int) -> TokenTable:
    from pipeline.encoders import byte_decoder, byte_level_bytes
    from pipeline.tokenizer import load_tokenizer

    tok = load_tokenizer(Path(path))
    table = byte_decoder()
    by_id = {i: t for t, i in tok.get_vocab(with_added_tokens=True).items()}
    specials = {t.content for t in tok.get_added_tokens_decoder().values()}

    def token_bytes(token: str) -> bytes:
        if token in specials:
            return token.encode()
        try:
            return byte_level_bytes(token)
        except KeyError:  # not a byte-level token: the characters that are
            return bytes(table[c] for c in token if c in table)

    return TokenTable.from_bytes([token_bytes(by_id.get(i, "")) for i in range(max(by_id) + 1)])


def token_table(tokenizer_json: Path) -> TokenTable:
    """The table of a tokenizer.json (made once per process and file)."""
    stat = Path(tokenizer_json).stat()
    return _cached_table(str(tokenizer_json), stat.st_mtime_ns, stat.st_size)


def _best_cut(ids: np.ndarray, table: TokenTable, lo: int, hi: int) -> int:
    """The last cut before a token k, lo < k <= hi, that starts a paragraph, else the last
    that starts a line, else a word; hi when there is none (one unbroken run of tokens).
    Only the window's flags are looked up: a document is cut in a few windows of its length."""
    t = TokenTable
    first = lo - 1  # the token two before k = lo + 1
    f = table.flags[ids[max(first, 0):hi + 1]]
    if first < 0:  # k = 1 has no token two before it
        f = np.concatenate([np.zeros(1, np.uint8), f])
    two_back, prev, nxt = f[:-2], f[1:-1], f[2:]  # index j: the cut before k = lo + 1 + j
    line = (prev & t.ENDS_NEWLINE).astype(bool) & (nxt & t.STARTS_TEXT).astype(bool)
    # "\n\n" before the cut: in the previous token, or split over the two before it
    blank = (prev & t.NEWLINE_BEFORE_LAST).astype(bool) | (
        (prev & t.ONE_BYTE).astype(bool) & (two_back & t.ENDS_NEWLINE).astype(bool))
    for kind in (lambda: line & blank, lambda: line,
                 lambda: ((nxt & t.STARTS_SPACE) | (prev & t.ENDS_SPACE)).astype(bool)):
        found = np.flatnonzero(kind())
        if found.size:
            return lo + 1 + int(found[-1])
    return hi


def chunk_ends(ids: np.ndarray, table: TokenTable, chunk_tokens: int) -> list[int]:
    """End offsets (in tokens) of a document's chunks: at most `chunk_tokens` each and at
    least half that, but the last; one chunk when the document is no longer."""
    n = len(ids)
    ends, start = [], 0
    while n - start > chunk_tokens:
        start = _best_cut(ids, table, start + chunk_tokens // 2, start + chunk_tokens)
        ends.append(start)
    return [*ends, n]


@dataclass(frozen=True, slots=True)
class Entry:
    """Consecutive chunks of one document in one split: one .idx entry of a shard."""

    split: str  # "train" | "val"
    first: int  # first chunk
    last: int  # last chunk (inclusive)
    start: int  # first token (in the document)
    end: int  # end token (exclusive)


def split_entries(doc_id: str, ends: list[int], val_fraction: float) -> list[Entry]:
    """A document's chunks (their end offsets) as shard entries, split by `is_val`."""
    out: list[Entry] = []
    start = 0
    phase = split_phase(doc_id) if val_fraction > 0 else 0.0
    for c, end in enumerate(ends):
        split = "val" if is_val_chunk(phase, val_fraction, c) else "train"
        if out and out[-1].split == split:
            prev = out[-1]
            out[-1] = Entry(split=split, first=prev.first, last=c, start=prev.start, end=end)
        else:
            out.append(Entry(split=split, first=c, last=c, start=start, end=end))
        start = end
    return out


def page_range(pages: list[tuple[int, int]], text_chars: int, lo: int, hi: int) -> list[int]:
    """[first, last] page number of characters [lo, hi) of a document whose pages, (number,
    characters), were joined by blank lines when extracted; scaled to the length of the text
    now (cleaning changes it a little): an estimate, exact at the document's ends."""
    if not pages or text_chars <= 0:
        return []
    bounds = page_ends([chars for _, chars in pages], text_chars)
    first, last = (min(int(np.searchsorted(bounds, x, side="right")), len(pages) - 1)
                   for x in (lo, max(hi - 1, lo)))
    return [pages[first][0], pages[last][0]]


def char_offsets(text: str, byte_offsets: list[int]) -> list[int]:
    """The character offsets of UTF-8 byte offsets (at character boundaries) in `text`."""
    if text.isascii():
        return list(byte_offsets)
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    widths = 1 + (points >= 0x80) + (points >= 0x800) + (points >= 0x10000)
    ends = np.cumsum(widths)  # the byte offset where each character ends
    return [int(np.searchsorted(ends, b, side="right")) for b in byte_offsets]


class Chunker:
    """Cuts each encoded document into its shard entries and says where each came from."""

    def __init__(self, tokenizer_json: Path, chunk_tokens: int, val_fraction: float) -> None:
        self.tokenizer_json = tokenizer_json
        self.chunk_tokens = chunk_tokens  # 0: documents are never cut
        self.val_fraction = val_fraction
        self._table: TokenTable | None = None

    def entries(self, doc: Document, ids: np.ndarray, text_bytes: int
                ) -> list[tuple[Entry, dict[str, Any]]]:
        """The document's entries and their provenance rows (see pipeline/provenance.py)."""
        if not self.chunk_tokens or len(ids) <= self.chunk_tokens:
            entry = Entry(split="val" if is_val(doc.id, self.val_fraction) else "train",
                          first=0, last=0, start=0, end=len(ids))
            return [(entry, self._row(doc, entry, 1, [0, text_bytes], [0, len(doc.text)]))]
        if self._table is None:
            self._table = token_table(self.tokenizer_json)
        table = self._table
        ends = chunk_ends(ids, table, self.chunk_tokens)
        entries = split_entries(doc.id, ends, self.val_fraction)
        if len(entries) == 1:  # every chunk in one split (most documents): the whole text
            return [(entries[0], self._row(doc, entries[0], len(ends), [0, text_bytes],
                                           [0, len(doc.text)]))]
        byte_ends = table.byte_ends(ids)
        out = []
        for entry in entries:
            spans = [int(byte_ends[t - 1]) if t else 0 for t in (entry.start, entry.end)]
            out.append((entry, self._row(doc, entry, len(ends), spans,
                                         char_offsets(doc.text, spans))))
        return out

    @staticmethod
    def _row(doc: Document, entry: Entry, chunks: int, byte_span: list[int],
             char_span: list[int]) -> dict[str, Any]:
        pages = [(p.number, p.chars) for p in doc.page_info]
        return {"doc": doc.id, "chunks": [entry.first, entry.last], "of": chunks,
                "tokens": [entry.start, entry.end], "bytes": byte_span, "source": doc.source,
                "title": doc.title, "pages": page_range(pages, len(doc.text), *char_span)}


TINY_VAL_SHARE = 0.01  # a val split under this share of the tokens is too small to trust


def val_split_warning(totals: dict[str, dict[str, Any]], val_fraction: float,
                      chunk_tokens: int, batch_tokens: int) -> str:
    """Why the val split (manifest totals) is empty or tiny, and what to change; "" if fine.

    Tiny: under TINY_VAL_SHARE of the tokens, or under one batch of training windows
    (`batch_tokens` = train.batch_size x train.block_size): validation, early stopping and the
    promotion gate would measure noise or nothing.
    """
    val = int(totals["val"]["tokens"])
    total = val + int(totals["train"]["tokens"])
    if total == 0:
        return ""
    if val_fraction <= 0:
        return "the val split is empty because shards.val_fraction is 0: set it above 0"
    if val >= TINY_VAL_SHARE * total and val >= batch_tokens:
        return ""
    how = (f"lower shards.split_chunk_tokens (now {chunk_tokens}) so long documents give more "
           f"chunks, or raise shards.val_fraction (now {val_fraction}); both need a new data "
           "root or `cllm tokenize --rebuild`")
    if not chunk_tokens:
        how = f"set shards.split_chunk_tokens (0: documents are never cut) or raise " \
              f"shards.val_fraction (now {val_fraction})"
    if val == 0:
        return f"the val split is empty: {how}"
    under = (f"under {TINY_VAL_SHARE:.0%} of the tokens" if val < TINY_VAL_SHARE * total else
             f"under one batch of training windows ({batch_tokens} tokens, train.batch_size x "
             "train.block_size)")
    return f"the val split is tiny: {val} of {total} tokens ({val / total:.2%}), {under}: {how}"
