"""Assembly, the tokenize stage's second step (`pipeline.encode` is the first): the spools of
the given parts, in part order, cut into new shards after the existing ones, each with its
provenance sidecar. The caller commits the shards to the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.encode import Spool, spool_dir
from pipeline.layout import DataRoot
from pipeline.provenance import write_provenance
from pipeline.shards import (
    SPLITS,
    Manifest,
    ShardInfo,
    ShardWriter,
    TokenizerInfo,
    dtype_for_vocab,
    open_shard,
)


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


class ShardAssembler:
    """Step 2's state: spools, added in part order, cut into new shards after the existing
    ones. One spool is read at a time (memory does not grow with the parts), and both splits
    are cut in the same pass. The caller commits the shards to the manifest."""

    def __init__(self, cfg: Config, root: DataRoot, manifest: Manifest | None,
                 info: TokenizerInfo) -> None:
        remove_unlisted_shards(root.shards, manifest)
        self.folder = spool_dir(root)
        self.cutters = [_SplitCutter(root.shards, split, cfg, info, manifest)
                        for split in SPLITS]

    def add(self, spool: Spool) -> None:
        for cutter in self.cutters:
            cutter.add(self.folder, spool)

    def finish(self) -> list[ShardInfo]:
        return [shard for cutter in self.cutters for shard in cutter.finish()]

    def abort(self) -> None:
        for cutter in self.cutters:
            cutter.writer.abort()
