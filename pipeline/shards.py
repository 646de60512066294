"""Token shards: the one on-disk format between tokenization and training.

`shards/{split}-NNNNN.bin`  flat little-endian token ids (uint16 if the vocab fits, else uint32),
                            end-of-text after every document (nanoGPT's train.bin layout)
`shards/{split}-NNNNN.idx`  uint64 end offset (in tokens) of each document in its .bin
`shards/manifest.json`      the commit point: a shard exists for readers only once listed here
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline.atomic import atomic_write_json
from pipeline.records import RecordFormatError, utc_now

MANIFEST_FORMAT = 1
Split = Literal["train", "val"]
SPLITS: tuple[Split, ...] = ("train", "val")
IDX_DTYPE = np.dtype("<u8")
SPLIT_SALT = b"cllm-split-v1:"


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65535 else np.dtype("<u4")


def is_val(doc_id: str, val_fraction: float) -> bool:
    """Deterministic split by document id: a document never moves when the dataset grows."""
    digest = hashlib.blake2b(SPLIT_SALT + doc_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < val_fraction


def shard_name(split: Split, number: int) -> str:
    return f"{split}-{number:05d}"


@dataclass(kw_only=True, slots=True)
class ShardInfo:
    name: str  # "train-00000"; files are <name>.bin and <name>.idx
    split: Split
    tokens: int
    docs: int
    bytes: int
    sha256: str  # of the .bin
    idx_sha256: str


@dataclass(kw_only=True, slots=True)
class TokenizerInfo:
    sha256: str  # of tokenizer.json: shards and checkpoints must agree on it
    vocab_size: int
    eos_id: int
    path: str = "tokenizer/tokenizer.json"


@dataclass(kw_only=True, slots=True)
class Manifest:
    tokenizer: TokenizerInfo
    dtype: str  # "uint16" | "uint32"
    val_fraction: float
    shards: list[ShardInfo] = field(default_factory=list)
    version: int = 1  # bumped each time shards are appended
    split_rule: str = "blake2b-8(cllm-split-v1: + doc id) / 2^64 < val_fraction"
    config: dict[str, Any] = field(default_factory=dict)
    updated_at: str = field(default_factory=utc_now)
    format_version: int = MANIFEST_FORMAT

    def split_shards(self, split: Split) -> list[ShardInfo]:
        return [s for s in self.shards if s.split == split]

    def totals(self) -> dict[str, dict[str, int]]:
        return {split: {"shards": len(self.split_shards(split)),
                        "tokens": sum(s.tokens for s in self.split_shards(split)),
                        "docs": sum(s.docs for s in self.split_shards(split))}
                for split in SPLITS}

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        out = asdict(self)
        out["totals"] = self.totals()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        if data.get("format_version", 0) > MANIFEST_FORMAT:
            raise RecordFormatError(
                f"shard manifest format {data.get('format_version')} is newer than this code "
                f"reads ({MANIFEST_FORMAT}); upgrade cllm-pipeline")
        data.pop("totals", None)
        data["tokenizer"] = TokenizerInfo(**data["tokenizer"])
        data["shards"] = [ShardInfo(**s) for s in data.get("shards", [])]
        return cls(**data)


def read_manifest(path: Path) -> Manifest:
    try:
        return Manifest.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no shard manifest at {path}: run `cllm tokenize` first") from None


def write_manifest(path: Path, manifest: Manifest) -> None:
    manifest.updated_at = utc_now()
    atomic_write_json(path, manifest.to_dict())


def open_shard(folder: Path, info: ShardInfo, dtype: str) -> tuple[np.memmap, np.memmap]:
    """Memory-map one shard's tokens and document end offsets (read-only)."""
    folder = Path(folder)
    tokens = np.memmap(folder / f"{info.name}.bin", dtype=np.dtype(dtype).newbyteorder("<"),
                       mode="r")
    ends = np.memmap(folder / f"{info.name}.idx", dtype=IDX_DTYPE, mode="r")
    return tokens, ends


def open_split(folder: Path, split: Split, manifest: Manifest | None = None) -> list[np.memmap]:
    """Token memmaps of every shard of a split, in manifest order."""
    folder = Path(folder)
    manifest = manifest or read_manifest(folder / "manifest.json")
    return [open_shard(folder, s, manifest.dtype)[0] for s in manifest.split_shards(split)]


class ShardWriter:
    """Append documents to the shards of one split; each full shard is written atomically.

    A document never spans two shards, so every .idx offset points into its own .bin.
    The caller lists the returned ShardInfo in the manifest, which makes the shard visible.
    """

    def __init__(self, folder: Path, split: Split, *, dtype: str, eos_id: int,
                 shard_tokens: int, first_number: int = 0) -> None:
        self.folder = Path(folder)
        self.split = split
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.eos = np.array([eos_id], dtype=self.dtype)
        self.shard_tokens = shard_tokens
        self.number = first_number
        self._pieces: list[np.ndarray] = []
        self._ends: list[int] = []
        self._tokens = 0

    def add(self, ids: np.ndarray | list[int]) -> ShardInfo | None:
        """Add one document (EOS is appended); returns the shard it completed, if any."""
        arr = np.asarray(ids)
        if arr.size and int(arr.max()) > np.iinfo(self.dtype).max:
            raise ValueError(f"token id {int(arr.max())} does not fit {self.dtype.name}")
        self._pieces.append(arr.astype(self.dtype, copy=False))
        self._pieces.append(self.eos)
        self._tokens += arr.size + 1
        self._ends.append(self._tokens)
        return self.flush() if self._tokens >= self.shard_tokens else None

    def flush(self) -> ShardInfo | None:
        """Write what is buffered as one shard (nothing if empty)."""
        if not self._ends:
            return None
        from pipeline.atomic import atomic_write_bytes

        name = shard_name(self.split, self.number)
        data = np.concatenate(self._pieces).tobytes()
        idx = np.asarray(self._ends, dtype=IDX_DTYPE).tobytes()
        atomic_write_bytes(self.folder / f"{name}.idx", idx)
        atomic_write_bytes(self.folder / f"{name}.bin", data)
        info = ShardInfo(name=name, split=self.split, tokens=self._tokens, docs=len(self._ends),
                         bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                         idx_sha256=hashlib.sha256(idx).hexdigest())
        self.number += 1
        self._pieces, self._ends, self._tokens = [], [], 0
        return info
