"""Encoding, the tokenize stage's two named steps:

    encode_parts     cleaned docs parts -> spools: each part's documents encoded, long ones cut
                     into chunks (pipeline/chunks.py), split into train and val by chunk,
                     written as one .bin/.idx pair per split by the shard writer
                     (state/tokenize/part-NNNNN.{train,val}.{bin,idx}) and committed by a marker
                     (part-NNNNN.json) that holds both pairs' checksums and each entry's
                     provenance row
    assemble_shards  spools -> shards: the spools of the given parts, in part order, cut into
                     new shards after the existing ones, each with its provenance sidecar

Parts are independent, so `encode_parts` over disjoint lists of parts runs side by side (the
flows' fan-out calls it once per task; one process calls it once for all). What the shards
hold depends only on the parts, the config and the tokenizer: spools are cut in part order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.atomic import atomic_write
from pipeline.chunks import Chunker
from pipeline.clean import iter_clean_documents
from pipeline.config import Config
from pipeline.decontam import REASON as CONTAMINATED
from pipeline.decontam import contamination, eval_state
from pipeline.layout import DataRoot
from pipeline.progress import Progress
from pipeline.provenance import write_provenance
from pipeline.rawstore import sha256_file
from pipeline.records import Document
from pipeline.shards import (
    SPLITS,
    Manifest,
    ShardInfo,
    ShardWriter,
    TokenizerInfo,
    dtype_for_vocab,
    open_shard,
)
from pipeline.stats import StageStats

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
        data = json.loads(_marker(folder, name).read_text(encoding="utf-8"))
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
        for doc, doc_ids in zip(batch, ids, strict=True):
            arr = doc_ids.astype(self.dtype, copy=False)
            text_bytes = len(doc.text.encode("utf-8"))
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


def encode_part(root: DataRoot, name: str, encoder: TextEncoder, cfg: Config,
                info: TokenizerInfo, bar: Progress) -> Spool:
    """Encode one cleaned part into its spool; the marker, written last, commits it.

    The encoder works on the next batch (in its own threads, without the GIL) while this
    thread reads documents and writes the batch before. Spools are scratch: written without
    fsync (a few ms per file); their marker holds checksums that a resumed run verifies.
    """
    from pipeline.encoders import encode_texts

    folder = spool_dir(root)
    spool = Spool(name=name)
    chunker = Chunker(root.path / info.path, cfg.shards.split_chunk_tokens,
                      cfg.shards.val_fraction)
    writers = _SpoolWriters(folder, name, info, chunker)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="encode") as pool:
            previous: tuple[list[Document], Future[list[np.ndarray]]] | None = None
            docs = iter_clean_documents(root, [name])
            if _rechecks(cfg):
                docs = _uncontaminated(docs, cfg, spool)
            for batch in _batches(docs, cfg.tokenize.batch_docs):
                future = pool.submit(encode_texts, encoder, [d.text for d in batch],
                                     cfg.tokenize.segment_chars)
                if previous is not None:
                    bar.update(len(previous[0]), tokens=writers.write(
                        spool, previous[0], previous[1].result()))
                previous = (batch, future)
            if previous is not None:
                bar.update(len(previous[0]), tokens=writers.write(
                    spool, previous[0], previous[1].result()))
        writers.close(spool)
    except BaseException:
        writers.abort()
        raise
    marker = {"key": spool_key(info, cfg), "documents": spool.documents,
              "contaminated": spool.contaminated, "chars": spool.chars,
              "text_bytes": spool.text_bytes, "doc_bytes": spool.doc_bytes,
              "shards": {k: asdict(s) if s else None for k, s in spool.shards.items()},
              "prov": spool.prov}
    with atomic_write(_marker(folder, name), "w", durable=False) as fh:
        fh.write(json.dumps(marker, separators=(",", ":")))  # dump() would use the Python encoder
    return spool


def encode_parts(cfg: Config, root: DataRoot, names: list[str], encoder: TextEncoder,
                 info: TokenizerInfo, stats: StageStats, progress: bool = False) -> None:
    """Step 1: encode the cleaned parts `names` into spools (a part whose valid spool an
    earlier run left is not encoded again). Counts go into `stats`."""
    key = spool_key(info, cfg)
    folder = spool_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    with Progress(stats, unit="doc", enabled=progress) as bar:
        for name in names:
            spool = load_spool(folder, name, key)
            if spool is None:
                spool = encode_part(root, name, encoder, cfg, info, bar)
            else:
                stats.extra["parts_resumed"] = stats.extra.get("parts_resumed", 0) + 1
                bar.update(spool.documents)
            stats.keep(spool.documents)
            if spool.contaminated:
                stats.drop(CONTAMINATED, spool.contaminated)
            stats.units += spool.tokens()
            stats.bytes += spool.text_bytes
            stats.extra["chars"] = stats.extra.get("chars", 0) + spool.chars
            for split in SPLITS:
                for what, n in (("entries", spool.docs(split)),
                                ("tokens", spool.tokens(split))):
                    name_n = f"{split}_{what}"
                    stats.extra[name_n] = stats.extra.get(name_n, 0) + n
    stats.extra["parts"] = stats.extra.get("parts", 0) + len(names)
    stats.extra.setdefault("parts_resumed", 0)


def remove_unlisted_shards(folder: Path, manifest: Manifest | None) -> None:
    """Shard files a killed run wrote but never listed: the next shards reuse their names."""
    listed = {s.name for s in manifest.shards} if manifest else set()
    for path in [*folder.glob("*-[0-9]*.bin"), *folder.glob("*-[0-9]*.idx"),
                 *folder.glob("*-[0-9]*.prov.jsonl")]:
        name = path.name.split(".")[0]
        if name.split("-")[0] in SPLITS and name not in listed:
            path.unlink()


class _SplitCutter:
    """One split's new shards, cut from spool after spool: each shard's provenance sidecar is
    written as the shard completes, so only the rows of the shard being filled are held."""

    def __init__(self, folder: Path, split: str, cfg: Config, info: TokenizerInfo,
                 manifest: Manifest | None) -> None:
        self.split = split
        self.folder = folder
        self.dtype = dtype_for_vocab(info.vocab_size).name
        self.writer = ShardWriter(folder, split, dtype=self.dtype, eos_id=info.eos_id,
                                  shard_tokens=cfg.shards.shard_tokens,
                                  first_number=manifest.next_number(split) if manifest else 0)
        self.rows: list[dict[str, Any]] = []  # of the entries not yet in a completed shard
        self.made: list[ShardInfo] = []

    def add(self, spools: Path, spool: Spool) -> None:
        self.rows.extend(spool.prov[self.split])
        part = spool.shards[self.split]
        if part is not None:
            self._completed(self.writer.add_encoded(*open_shard(spools, part, self.dtype),
                                                    spool.doc_bytes[self.split]))

    def finish(self) -> list[ShardInfo]:
        last = self.writer.flush()
        self._completed([last] if last is not None else [])
        if self.rows:
            raise RuntimeError(f"{len(self.rows)} provenance rows more than shard entries")
        return self.made

    def _completed(self, shards: list[ShardInfo]) -> None:
        for info in shards:
            if info.docs > len(self.rows):
                raise RuntimeError(f"{info.name}: {info.docs} entries, {len(self.rows)} "
                                   "provenance rows")
            info.prov_sha256 = write_provenance(self.folder, info.name, self.rows[:info.docs])
            del self.rows[:info.docs]
            self.made.append(info)


def assemble_shards(cfg: Config, root: DataRoot, names: list[str], manifest: Manifest | None,
                    info: TokenizerInfo) -> list[ShardInfo]:
    """Step 2: cut the spools of `names` (all encoded), in order, into new shards after the
    existing ones. One spool is loaded at a time (memory does not grow with the parts), and
    both splits are cut in the same pass. The caller commits the shards to the manifest."""
    key = spool_key(info, cfg)
    remove_unlisted_shards(root.shards, manifest)
    cutters = [_SplitCutter(root.shards, split, cfg, info, manifest) for split in SPLITS]
    try:
        for name in names:
            spool = load_spool(spool_dir(root), name, key)
            if spool is None:
                raise RuntimeError(f"{name} has no complete spool: encode it first")
            for cutter in cutters:
                cutter.add(spool_dir(root), spool)
        return [shard for cutter in cutters for shard in cutter.finish()]
    except BaseException:
        for cutter in cutters:
            cutter.writer.abort()
        raise


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
