"""Encoding, the tokenize stage's two named steps, and the first of them here:

    encode_parts     cleaned docs parts -> spools: each part's documents encoded, long ones cut
                     into chunks (pipeline/chunks.py), split into train and val by chunk,
                     written as one .bin/.idx pair per split by the shard writer
                     (state/tokenize/part-NNNNN.{train,val}.{bin,idx}) and committed by a marker
                     (part-NNNNN.json) that holds both pairs' checksums and each entry's
                     provenance row
    assembly         spools -> shards (pipeline/assemble.py): the spools of the given parts, in
                     part order, cut into new shards after the existing ones, each with its
                     provenance sidecar, as the spools come

Parts are independent, so `encode_parts` over disjoint lists of parts runs side by side (the
flows' fan-out calls it once per task; one process calls it once for all). What the shards
hold depends only on the parts, the config and the tokenizer: spools are cut in part order.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from pipeline.atomic import atomic_write_bytes
from pipeline.chunks import Chunker
from pipeline.clean import iter_clean_documents
from pipeline.config import Config
from pipeline.decontam import REASON as CONTAMINATED
from pipeline.decontam import contamination, eval_state
from pipeline.layout import DataRoot
from pipeline.progress import Progress
from pipeline.rawstore import sha256_file
from pipeline.records import Document
from pipeline.shards import (
    SPLITS,
    ShardInfo,
    ShardWriter,
    TokenizerInfo,
    dtype_for_vocab,
)
from pipeline.stats import StageStats
from pipeline.text import utf8_length

if TYPE_CHECKING:
    import numpy as np

    from pipeline.encoders import TextEncoder

log = logging.getLogger(__name__)

BATCH_MAX_CHARS = 4_000_000  # an encode batch also ends at this many characters


def spool_dir(root: DataRoot) -> Path:
    return root.state / "tokenize"


def _stem(name: str) -> str:
    return Path(name).name.split(".")[0]


def _marker(folder: Path, name: str) -> Path:
    return folder / f"{_stem(name)}.json"


@dataclass(slots=True)
class Spool:
    """One docs part, encoded: per split its shard-format file pair (None: no documents)."""

    name: str
    shards: dict[str, ShardInfo | None] = field(default_factory=lambda: dict.fromkeys(SPLITS))
    documents: int = 0  # a document cut into chunks may be several entries, in both splits
    contaminated: int = 0  # documents a rebuild left out (clean.decontaminate)
    chars: int = 0
    text_bytes: int = 0  # UTF-8 bytes of the documents' text
    # per split, each entry's provenance row, in order (pipeline/provenance.py)
    prov: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    # per split, each entry's UTF-8 bytes, in order: shards cut from the spool count theirs
    doc_bytes: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in SPLITS})

    def docs(self, split: str | None = None) -> int:
        return sum(s.docs for k, s in self.shards.items() if s and split in (None, k))

    def tokens(self, split: str | None = None) -> int:
        return sum(s.tokens for k, s in self.shards.items() if s and split in (None, k))


def spool_key(info: TokenizerInfo, cfg: Config) -> dict[str, Any]:
    """What a spool's contents depend on; a spool made under other values is redone."""
    return {"tokenizer_sha256": info.sha256, "val_fraction": cfg.shards.val_fraction,
            "split_chunk_tokens": cfg.shards.split_chunk_tokens,
            "dtype": dtype_for_vocab(info.vocab_size).name,
            "decontaminate": eval_state(cfg.clean.decontaminate) if _rechecks(cfg) else None}


def _rechecks(cfg: Config) -> bool:
    """A rebuild checks the documents cleaned before against the evaluation text of now."""
    return cfg.tokenize.rebuild and bool(cfg.clean.decontaminate)


def _uncontaminated(docs: Iterable[Document], cfg: Config, spool: Spool) -> Iterator[Document]:
    for doc in docs:
        if contamination(doc.text, cfg.clean.decontaminate, cfg.clean.decontaminate_n):
            spool.contaminated += 1
            continue
        yield doc


def _intact(folder: Path, info: ShardInfo | None) -> bool:
    if info is None:
        return True
    try:
        return (sha256_file(folder / f"{info.name}.bin") == info.sha256
                and sha256_file(folder / f"{info.name}.idx") == info.idx_sha256)
    except FileNotFoundError:
        return False


def load_spool(folder: Path, name: str, key: dict[str, Any]) -> Spool | None:
    """A part's spool from an earlier (interrupted) run, if it is complete and still valid."""
    try:
        data = orjson.loads(_marker(folder, name).read_bytes())
        shards = {split: ShardInfo(**s) if s else None for split, s in data["shards"].items()}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if data.get("key") != key or not all(_intact(folder, s) for s in shards.values()) \
            or "doc_bytes" not in data:
        return None  # other settings, files an OS crash left incomplete (not fsynced), or
        #              a spool of an older version that did not count each document's bytes
    return Spool(name=name, shards=shards, documents=data["documents"], chars=data["chars"],
                 text_bytes=data["text_bytes"], prov=data["prov"],
                 contaminated=data["contaminated"], doc_bytes=data["doc_bytes"])


def _batches(docs: Iterable[Document], max_docs: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    chars = 0
    for doc in docs:
        batch.append(doc)
        chars += len(doc.text)
        if len(batch) >= max_docs or chars >= BATCH_MAX_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


class _SpoolWriters:
    """A part's two spool writers (train, val); each entry (a document, or a run of its
    chunks) goes to its split's."""

    def __init__(self, folder: Path, name: str, info: TokenizerInfo, chunker: Chunker) -> None:
        import numpy as np

        self.chunker = chunker
        self.dtype = np.dtype(dtype_for_vocab(info.vocab_size))
        self.writers = {split: ShardWriter(folder, split, dtype=self.dtype.name,
                                           eos_id=info.eos_id, shard_tokens=1,
                                           stem=f"{_stem(name)}.{split}", durable=False)
                        for split in SPLITS}

    def write(self, spool: Spool, batch: list[Document], ids: list[np.ndarray]) -> int:
        """Append one encoded batch; returns its tokens (an EOS after each entry included)."""
        by_split: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
        counts: dict[str, list[int]] = {split: [] for split in SPLITS}
        for doc, arr in zip(batch, ids, strict=True):
            text_bytes = utf8_length(doc.text)
            for entry, row in self.chunker.entries(doc, arr, text_bytes):
                by_split[entry.split].append(arr[entry.start:entry.end])
                counts[entry.split].append(row["bytes"][1] - row["bytes"][0])
                spool.prov[entry.split].append(row)
            spool.documents += 1
            spool.chars += len(doc.text)
            spool.text_bytes += text_bytes
        for split, entries in by_split.items():
            self.writers[split].add_batch(entries, counts[split])
            spool.doc_bytes[split] += counts[split]
        return sum(len(x) for x in ids) + sum(map(len, by_split.values()))

    def close(self, spool: Spool) -> None:
        for split, writer in self.writers.items():
            spool.shards[split] = writer.flush()

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()


class _PartEncoding:
    """One cleaned part on its way into its spool: its documents in encode batches, its
    writers, and its marker, written last, which commits it."""

    def __init__(self, root: DataRoot, name: str, cfg: Config, info: TokenizerInfo) -> None:
        self.name = name
        self.folder = spool_dir(root)
        self.spool = Spool(name=name)
        self.key = spool_key(info, cfg)
        chunker = Chunker(root.path / info.path, cfg.shards.split_chunk_tokens,
                          cfg.shards.val_fraction)
        self.writers = _SpoolWriters(self.folder, name, info, chunker)
        docs = iter_clean_documents(root, [name])
        if _rechecks(cfg):
            docs = _uncontaminated(docs, cfg, self.spool)
        self.batches = _batches(docs, cfg.tokenize.batch_docs)

    def write(self, batch: list[Document], ids: list[np.ndarray]) -> int:
        return self.writers.write(self.spool, batch, ids)

    def commit(self) -> Spool:
        """Spools are scratch: written without fsync (a few ms per file); their marker holds
        checksums that a resumed run verifies."""
        spool = self.spool
        self.writers.close(spool)
        marker = {"key": self.key, "documents": spool.documents,
                  "contaminated": spool.contaminated, "chars": spool.chars,
                  "text_bytes": spool.text_bytes, "doc_bytes": spool.doc_bytes,
                  "shards": {k: asdict(s) if s else None for k, s in spool.shards.items()},
                  "prov": spool.prov}
        atomic_write_bytes(_marker(self.folder, self.name), orjson.dumps(marker), durable=False)
        return spool


def open_part(root: DataRoot, name: str, cfg: Config, info: TokenizerInfo) -> _PartEncoding:
    return _PartEncoding(root, name, cfg, info)


_AHEAD = 1  # encode batches submitted beyond the one being written


def _encoded(work: Iterable[tuple[_PartEncoding, list[Document] | None]],
             encoder: TextEncoder, segment_chars: int
             ) -> Iterator[tuple[_PartEncoding, list[Document] | None, list[np.ndarray]]]:
    """Each batch of `work` with its ids, in order (None: the end of a part). The encoder
    works on the next batches (in its own threads, without the GIL), across part ends, while
    the caller writes this one: a part is a few hundred documents, often one batch, and
    waiting for the encoder at each part would leave it idle while the part is written."""
    from pipeline.encoders import encode_texts

    queue: deque[tuple[_PartEncoding, list[Document] | None, Future[list[np.ndarray]] | None]]
    queue = deque()
    submitted = 0  # batches in the queue

    def ready(limit: int) -> Iterator[tuple[_PartEncoding, list[Document] | None,
                                            list[np.ndarray]]]:
        nonlocal submitted
        while queue and (submitted > limit or queue[0][2] is None):
            part, batch, future = queue.popleft()
            if future is None:  # a part's end, which waits for nothing
                yield part, None, []
            else:
                submitted -= 1
                yield part, batch, future.result()

    with ThreadPoolExecutor(1, thread_name_prefix="encode") as pool:
        try:
            for part, batch in work:
                future = None
                if batch is not None:
                    future = pool.submit(encode_texts, encoder, [d.text for d in batch],
                                         segment_chars)
                    submitted += 1
                queue.append((part, batch, future))
                yield from ready(_AHEAD)
            yield from ready(0)
        finally:
            for _, _, future in queue:
                if future is not None:
                    future.cancel()


def encode_new_parts(root: DataRoot, names: list[str], encoder: TextEncoder, cfg: Config,
                     info: TokenizerInfo, bar: Progress) -> Iterator[Spool]:
    """Encode the cleaned parts `names` into their spools, in order; yields each spool once
    its marker commits it."""
    opened: list[_PartEncoding] = []

    def work() -> Iterator[tuple[_PartEncoding, list[Document] | None]]:
        for name in names:
            part = open_part(root, name, cfg, info)
            opened.append(part)
            for batch in part.batches:
                yield part, batch
            yield part, None

    try:
        for part, batch, ids in _encoded(work(), encoder, cfg.tokenize.segment_chars):
            if batch is None:
                yield part.commit()
                opened.remove(part)
            else:
                bar.update(len(batch), tokens=part.write(batch, ids))
    except BaseException:
        for part in opened:
            part.writers.abort()
        raise


def encode_parts(cfg: Config, root: DataRoot, names: list[str], encoder: TextEncoder,
                 info: TokenizerInfo, stats: StageStats, progress: bool = False,
                 on_spool: Callable[[Spool], object] | None = None) -> None:
    """Step 1: encode the cleaned parts `names` into spools (a part whose valid spool an
    earlier run left is not encoded again). Counts go into `stats`. Each spool, in part
    order, goes to `on_spool` as soon as it is written (the stage cuts it into shards there,
    while the encoder works on the next parts)."""
    key = spool_key(info, cfg)
    folder = spool_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    with Progress(stats, unit="doc", enabled=progress) as bar:
        resumed = {name: load_spool(folder, name, key) for name in names}
        new = encode_new_parts(root, [n for n in names if resumed[n] is None], encoder, cfg,
                               info, bar)
        for name in names:
            spool = resumed[name]
            if spool is None:
                spool = next(new)
            else:
                stats.extra["parts_resumed"] = stats.extra.get("parts_resumed", 0) + 1
                bar.update(spool.documents)
            _count(stats, spool)
            if on_spool is not None:
                on_spool(spool)
        next(new, None)  # the generator's end: nothing left
    stats.extra["parts"] = stats.extra.get("parts", 0) + len(names)
    stats.extra.setdefault("parts_resumed", 0)


def _count(stats: StageStats, spool: Spool) -> None:
    stats.keep(spool.documents)
    if spool.contaminated:
        stats.drop(CONTAMINATED, spool.contaminated)
    stats.units += spool.tokens()
    stats.bytes += spool.text_bytes
    stats.extra["chars"] = stats.extra.get("chars", 0) + spool.chars
    for split in SPLITS:
        for what, n in (("entries", spool.docs(split)), ("tokens", spool.tokens(split))):
            name_n = f"{split}_{what}"
            stats.extra[name_n] = stats.extra.get(name_n, 0) + n


def remove_spools(root: DataRoot, names: Iterable[str]) -> None:
    folder = spool_dir(root)
    for name in names:
        for path in folder.glob(f"{_stem(name)}.*"):
            path.unlink(missing_ok=True)


def remove_committed_spools(root: DataRoot, in_shards: set[str]) -> None:
    """Spools of parts the manifest already lists: a run killed between its commit and their
    removal leaves them, and no later run would look at them again (they are as large as the
    shards they became)."""
    folder = spool_dir(root)
    if not folder.is_dir():
        return
    left = {path.name.split(".")[0] for path in folder.iterdir()}
    remove_spools(root, [name for name in in_shards if _stem(name) in left])
