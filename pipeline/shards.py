"""Token shards: the one on-disk format between tokenization and training.

`shards/{split}-NNNNN.bin`  flat little-endian token ids (uint16 if the vocab fits, else uint32),
                            end-of-text after every document (nanoGPT's train.bin layout)
`shards/{split}-NNNNN.idx`  uint64 end offset (in tokens) of each document in its .bin
`shards/{split}-NNNNN.prov.jsonl`  one line per .idx entry: which document (id, source, title),
                            which of its chunks and pages, which tokens and bytes of it (format 3)
`shards/manifest.json`      the commit point: a shard exists for readers only once listed here;
                            per shard its tokens, documents, sha256s and the UTF-8 bytes of its
                            documents' text (what bits per byte divide by; format 2 on)
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
from pipeline.split import SPLIT_RULE as SPLIT_RULE
from pipeline.split import is_val as is_val  # the split rule (pipeline/chunks.py cuts chunks)

# 3: chunk-level split, a provenance sidecar per shard; 2: shards carry text_bytes
# (formats 1 and 2 are read: text_bytes unknown before 2, no sidecars before 3)
MANIFEST_FORMAT = 3
Split = Literal["train", "val"]
SPLITS: tuple[Split, ...] = ("train", "val")
IDX_DTYPE = np.dtype("<u8")


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65535 else np.dtype("<u4")


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
    text_bytes: int | None = None  # UTF-8 bytes of its documents' text; None: not counted
    prov_sha256: str | None = None  # of the .prov.jsonl sidecar; None: before format 3


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
    split_rule: str = SPLIT_RULE
    # documents longer than this are split by chunk; 0: by whole document (formats 1 and 2)
    split_chunk_tokens: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    updated_at: str = field(default_factory=utc_now)
    format_version: int = MANIFEST_FORMAT
    parts: list[str] = field(default_factory=list)  # docs parts whose documents are in shards

    def split_shards(self, split: Split) -> list[ShardInfo]:
        return [s for s in self.shards if s.split == split]

    def next_number(self, split: Split) -> int:
        """The number the next shard of `split` gets (shards are numbered per split)."""
        return max((int(s.name.rsplit("-", 1)[1]) + 1 for s in self.split_shards(split)),
                   default=0)

    def totals(self) -> dict[str, dict[str, int | None]]:
        return {split: {"shards": len(self.split_shards(split)),
                        "tokens": sum(s.tokens for s in self.split_shards(split)),
                        "docs": sum(s.docs for s in self.split_shards(split)),
                        "text_bytes": self.text_bytes(split)}
                for split in SPLITS}

    def text_bytes(self, split: Split) -> int | None:
        """UTF-8 bytes of the split's text; None when a shard predates counting them."""
        counts = [s.text_bytes for s in self.split_shards(split)]
        return None if None in counts else sum(c for c in counts if c is not None)

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
    """Append documents to the shards of one split; each shard is written atomically.

    A shard ends after the document that brings it to `shard_tokens` or more, and a document
    never spans two shards, so every .idx offset points into its own .bin.
    Tokens stream into the shard's temporary file as they come (memory does not grow with
    `shard_tokens`); the .bin appears under its name when the shard is complete.
    The caller lists the returned ShardInfo in the manifest, which makes the shard visible.
    Used as a context manager, an exception discards the shard being written.
    """

    def __init__(self, folder: Path, split: Split, *, dtype: str, eos_id: int,
                 shard_tokens: int, first_number: int = 0, stem: str = "",
                 durable: bool = True) -> None:
        """`stem`: write one file pair under this name, never cut (an encoding spool), with
        `durable=False` skipping the fsyncs (the spool's marker checks it on resume)."""
        self.folder = Path(folder)
        self.split = split
        self.stem = stem
        self.durable = durable
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.eos = np.array([eos_id], dtype=self.dtype)
        self.shard_tokens = shard_tokens
        self.number = first_number
        self._ends: list[np.ndarray] = []  # end offsets within the shard being filled
        self._tokens = 0
        self._text_bytes: int | None = 0  # None once a document came without its count
        self._open: Any = None  # the atomic_write context of the shard's .bin
        self._file: Any = None
        self._sha = hashlib.sha256()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            self.abort()

    def _write(self, arr: np.ndarray) -> None:
        if self._file is None:
            from pipeline.atomic import atomic_write

            self._open = atomic_write(self.folder / f"{self._name()}.bin", durable=self.durable)
            self._file = self._open.__enter__()
            self._sha = hashlib.sha256()
        data = memoryview(np.ascontiguousarray(arr)).cast("B")
        self._file.write(data)
        self._sha.update(data)

    def _name(self) -> str:
        return self.stem or shard_name(self.split, self.number)

    def _full(self) -> bool:
        return not self.stem and self._tokens >= self.shard_tokens

    def add(self, ids: np.ndarray | list[int], text_bytes: int | None = None
            ) -> ShardInfo | None:
        """Add one document (EOS is appended) and the UTF-8 bytes of its text; returns the
        shard it completed, if any."""
        arr = np.asarray(ids)
        if arr.size and int(arr.max()) > np.iinfo(self.dtype).max:
            raise ValueError(f"token id {int(arr.max())} does not fit {self.dtype.name}")
        self._write(np.concatenate([arr.astype(self.dtype, copy=False), self.eos]))
        self._tokens += arr.size + 1
        self._ends.append(np.array([self._tokens], dtype=IDX_DTYPE))
        self._count_bytes(None if text_bytes is None else [text_bytes])
        return self.flush() if self._full() else None

    def add_batch(self, docs: list[np.ndarray], text_bytes: list[int] | None = None
                  ) -> list[ShardInfo]:
        """Add several documents (EOS appended to each) in one write, with the UTF-8 bytes of
        each one's text; the shards they completed. The same as `add` one by one."""
        if not docs:
            return []
        pieces: list[np.ndarray] = []
        for arr in docs:
            pieces += (arr, self.eos)
        tokens = np.concatenate(pieces)  # checked and cast once, not per document
        if int(tokens.max()) > np.iinfo(self.dtype).max:
            raise ValueError(f"token id {int(tokens.max())} does not fit {self.dtype.name}")
        ends = np.cumsum([arr.size + 1 for arr in docs], dtype=IDX_DTYPE)
        return self.add_encoded(tokens.astype(self.dtype, copy=False), ends, text_bytes)

    def _count_bytes(self, text_bytes: np.ndarray | list[int] | None) -> None:
        if self._text_bytes is not None and text_bytes is not None:
            self._text_bytes += int(np.sum(text_bytes, dtype=np.int64))
        else:
            self._text_bytes = None

    def add_encoded(self, tokens: np.ndarray, ends: np.ndarray,
                    text_bytes: np.ndarray | list[int] | None = None) -> list[ShardInfo]:
        """Add many documents at once; returns the shards they completed.

        `tokens` holds each document followed by its EOS, `ends` the end offset of each in
        `tokens` (the .bin/.idx layout), `text_bytes` the UTF-8 bytes of each one's text (if
        known). The shards are the same as `add` one by one gives.
        """
        if tokens.dtype != self.dtype:
            raise ValueError(f"tokens are {tokens.dtype.name}, shards are {self.dtype.name}")
        ends = np.asarray(ends, dtype=IDX_DTYPE)
        if text_bytes is not None and len(text_bytes) != len(ends):
            raise ValueError(f"{len(text_bytes)} byte counts for {len(ends)} documents")
        done: list[ShardInfo] = []
        first, base = 0, 0  # first document not yet added, and where it starts in `tokens`
        while first < len(ends):
            need = (int(ends[-1]) - base) if self.stem else self.shard_tokens - self._tokens
            last = int(np.searchsorted(ends, base + need, side="left"))
            last = min(last, len(ends) - 1)
            stop = int(ends[last])
            self._write(tokens[base:stop])
            self._ends.append(ends[first:last + 1] - base + self._tokens)
            self._count_bytes(None if text_bytes is None else text_bytes[first:last + 1])
            self._tokens += stop - base
            first, base = last + 1, stop
            if self._full():
                done.append(self.flush())
        return done

    def flush(self) -> ShardInfo | None:
        """Complete the shard being written (nothing if it is empty)."""
        if not self._ends:
            return None
        from pipeline.atomic import atomic_write_bytes

        name = self._name()
        idx = np.concatenate(self._ends).astype(IDX_DTYPE, copy=False).tobytes()
        atomic_write_bytes(self.folder / f"{name}.idx", idx, durable=self.durable)
        self._open.__exit__(None, None, None)  # fsync, then rename to <name>.bin
        info = ShardInfo(name=name, split=self.split, tokens=self._tokens,
                         docs=len(idx) // IDX_DTYPE.itemsize,
                         bytes=self._tokens * self.dtype.itemsize,
                         sha256=self._sha.hexdigest(), idx_sha256=hashlib.sha256(idx).hexdigest(),
                         text_bytes=self._text_bytes)
        self.number += 1
        self._ends, self._tokens, self._open, self._file = [], 0, None, None
        self._text_bytes = 0
        return info

    def abort(self) -> None:
        """Discard the shard being written (its temporary file is removed)."""
        if self._open is not None:
            error = RuntimeError("shard writing aborted")
            self._open.__exit__(RuntimeError, error, None)
        self._ends, self._tokens, self._open, self._file = [], 0, None, None
        self._text_bytes = 0


# --- reading and checking -------------------------------------------


def find_document(manifest: Manifest, split: Split, number: int) -> tuple[ShardInfo, int]:
    """The shard holding document `number` of `split` (counted across shards in order), and
    the document's number inside that shard."""
    if number < 0:
        raise IndexError(f"document number must be >= 0, got {number}")
    for info in manifest.split_shards(split):
        if number < info.docs:
            return info, number
        number -= info.docs
    total = sum(s.docs for s in manifest.split_shards(split))
    raise IndexError(f"the {split} split has {total} documents; there is no document "
                     f"{number + total}")


def read_document(folder: Path, manifest: Manifest, split: Split, number: int) -> np.ndarray:
    """Token ids of one document, without its EOS."""
    info, k = find_document(manifest, split, number)
    tokens, ends = open_shard(folder, info, manifest.dtype)
    start = int(ends[k - 1]) if k else 0
    return np.array(tokens[start:int(ends[k]) - 1])


@dataclass(slots=True)
class VerifyReport:
    shards: int = 0
    tokens: int = 0
    problems: list[str] = field(default_factory=list)  # each makes verification fail
    notes: list[str] = field(default_factory=list)  # worth knowing, harmless

    @property
    def ok(self) -> bool:
        return not self.problems


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _verify_shard(folder: Path, info: ShardInfo, manifest: Manifest) -> list[str]:
    bin_path, idx_path = folder / f"{info.name}.bin", folder / f"{info.name}.idx"
    for path in (bin_path, idx_path):
        if not path.is_file():
            return [f"{info.name}: {path.name} is missing"]
    itemsize = np.dtype(manifest.dtype).itemsize
    size = bin_path.stat().st_size
    if size != info.bytes or size != info.tokens * itemsize:
        return [f"{info.name}: .bin has {size} bytes, manifest says {info.bytes} "
                f"({info.tokens} tokens of {manifest.dtype})"]
    problems = []
    if _file_sha256(bin_path) != info.sha256:
        problems.append(f"{info.name}: .bin sha256 differs from the manifest")
    if _file_sha256(idx_path) != info.idx_sha256:
        problems.append(f"{info.name}: .idx sha256 differs from the manifest")
    if idx_path.stat().st_size != info.docs * IDX_DTYPE.itemsize:
        return [*problems, f"{info.name}: .idx holds {idx_path.stat().st_size // 8} offsets, "
                           f"manifest says {info.docs} documents"]
    tokens, ends = open_shard(folder, info, manifest.dtype)
    if info.docs and (np.any(np.diff(ends.astype(np.int64)) <= 0) or int(ends[0]) < 1
                      or int(ends[-1]) != info.tokens):
        problems.append(f"{info.name}: .idx offsets are not increasing up to {info.tokens}")
        return problems
    eos = manifest.tokenizer.eos_id
    if info.docs and not np.all(tokens[ends.astype(np.int64) - 1] == eos):
        problems.append(f"{info.name}: a document does not end with EOS ({eos})")
    eos_count = int(np.count_nonzero(tokens == eos))
    if eos_count != info.docs:
        problems.append(f"{info.name}: {eos_count} EOS tokens for {info.docs} documents")
    if info.prov_sha256 is not None:
        from pipeline.provenance import check_provenance

        problems.extend(check_provenance(folder, info.name, info.prov_sha256, info.docs))
    top = int(tokens.max()) if info.tokens else 0
    if top >= manifest.tokenizer.vocab_size:
        problems.append(f"{info.name}: token id {top} >= vocab size "
                        f"{manifest.tokenizer.vocab_size}")
    return problems


def verify_shards(folder: Path, manifest: Manifest | None = None,
                  tokenizer_path: Path | None = None) -> VerifyReport:
    """Check every listed shard against the manifest: sizes, sha256 of .bin and .idx, index
    consistency, an EOS at each document end and nowhere else, token ids < vocab size; and
    the tokenizer file's sha256 when its path is given."""
    folder = Path(folder)
    manifest = manifest or read_manifest(folder / "manifest.json")
    report = VerifyReport()
    if manifest.dtype != dtype_for_vocab(manifest.tokenizer.vocab_size).name:
        report.problems.append(f"dtype {manifest.dtype} does not match vocab size "
                               f"{manifest.tokenizer.vocab_size}")
    if tokenizer_path is not None:
        if not Path(tokenizer_path).is_file():
            report.problems.append(f"tokenizer {tokenizer_path} is missing")
        elif _file_sha256(Path(tokenizer_path)) != manifest.tokenizer.sha256:
            report.problems.append(f"tokenizer {tokenizer_path} sha256 differs from the "
                                   "manifest's")
    for info in manifest.shards:
        report.problems.extend(_verify_shard(folder, info, manifest))
        report.shards += 1
        report.tokens += info.tokens
    listed = {s.name for s in manifest.shards}
    for path in sorted(folder.glob("*-[0-9]*.bin")):
        if path.stem not in listed:
            report.notes.append(f"{path.name} is not in the manifest (left by an interrupted "
                                "run; the next `cllm tokenize` replaces or removes it)")
    return report


def describe(manifest: Manifest) -> str:
    """A human summary of the manifest: what `cllm shards inspect` prints."""
    tok = manifest.tokenizer
    totals = manifest.totals()
    lines = [
        f"manifest version {manifest.version} (format {manifest.format_version}), "
        f"updated {manifest.updated_at}",
        f"tokenizer {tok.path}: sha256 {tok.sha256}, vocab {tok.vocab_size}, eos id {tok.eos_id}",
        f"dtype {manifest.dtype}; val split: {manifest.val_fraction:.2%} "
        + (f"of chunks (documents over {manifest.split_chunk_tokens} tokens are cut into "
           "chunks) " if manifest.split_chunk_tokens else "of documents ")
        + f"({manifest.split_rule})",
    ]
    for split in SPLITS:
        t = totals[split]
        counted = "not counted (shards older than format 2)" if t["text_bytes"] is None \
            else f"{t['text_bytes']} bytes of text"
        lines.append(f"{split + ':':6} {t['shards']} shards, {t['docs']} docs, "
                     f"{t['tokens']} tokens, {counted}")
    if manifest.parts:
        lines.append(f"docs parts: {len(manifest.parts)} ({manifest.parts[0]} .. "
                     f"{manifest.parts[-1]})")
    for s in manifest.shards:
        lines.append(f"  {s.name}  {s.tokens:>12} tokens  {s.docs:>8} docs  {s.bytes:>12} bytes"
                     f"  sha256 {s.sha256[:16]}")
    return "\n".join(lines)
