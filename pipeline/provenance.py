"""Provenance sidecars: `shards/{split}-NNNNN.prov.jsonl`, one JSON line per .idx entry of the
shard, in order, saying where its tokens came from:

    {"doc": id, "chunks": [first, last], "of": chunks in the document,
     "tokens": [start, end] (in the document), "bytes": [start, end] (UTF-8, of its text),
     "source": URL or path, "title": ..., "pages": [first, last] (estimated; [] unpaged)}

Written with the shard, before the manifest lists it (the manifest holds its sha256). Shards
written before format 3 have none. (This module names no shard type: pipeline.shards imports it.)
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline.atomic import atomic_write_bytes


def prov_path(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.prov.jsonl"


def write_provenance(folder: Path, name: str, rows: list[dict[str, Any]]) -> str:
    """Write a shard's sidecar atomically; returns its sha256."""
    # orjson writes the bytes json.dumps(ensure_ascii=False, separators=(",", ":")) would
    data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    atomic_write_bytes(prov_path(folder, name), data)
    return hashlib.sha256(data).hexdigest()


def read_provenance(folder: Path, info: Any) -> list[dict[str, Any]]:
    """The sidecar rows of a shard (a ShardInfo); none for a shard written before format 3."""
    if info.prov_sha256 is None:
        return []
    with open(prov_path(folder, info.name), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def check_provenance(folder: Path, name: str, sha256: str, entries: int) -> list[str]:
    """What is wrong with a shard's sidecar (for `verify_shards`)."""
    path = prov_path(folder, name)
    if not path.is_file():
        return [f"{name}: {path.name} is missing"]
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        return [f"{name}: {path.name} sha256 differs from the manifest"]
    rows = data.count(b"\n")
    if rows != entries:
        return [f"{name}: {path.name} has {rows} rows for {entries} entries"]
    return []


@dataclass(frozen=True, slots=True)
class Place:
    """Where one entry's tokens lie: its shard, its number there and in its split, its row."""

    shard: str
    entry: int  # in the shard
    number: int  # in the split (what `cllm shards decode --doc` takes)
    start: int  # token offset of the entry in the shard's .bin
    end: int  # end offset, its EOS included
    row: dict[str, Any]


def places(folder: Path, manifest: Any, split: str) -> Iterator[Place]:
    """Every entry of a split (a Manifest's shards), with its provenance row."""
    import numpy as np

    number = 0
    for info in manifest.split_shards(split):
        rows = read_provenance(folder, info) or [{} for _ in range(info.docs)]
        ends = np.fromfile(Path(folder) / f"{info.name}.idx", dtype="<u8")  # IDX_DTYPE
        start = 0
        for k, (end, row) in enumerate(zip(ends.tolist(), rows, strict=True)):
            yield Place(shard=info.name, entry=k, number=number, start=start, end=end, row=row)
            start = end
            number += 1


def find_source(folder: Path, manifest: Any, pattern: str) -> Iterator[tuple[str, Place]]:
    """(split, place) of every entry whose source is `pattern` or matches it as a glob."""
    for split in ("train", "val"):
        for place in places(folder, manifest, split):
            source = place.row.get("source", "")
            if source and (source == pattern or fnmatch.fnmatchcase(source, pattern)):
                yield split, place


def describe_row(row: dict[str, Any]) -> str:
    """One line naming an entry's document: source, id, chunks, pages, title."""
    if not row:
        return "source unknown (a shard written before provenance sidecars, format 3)"
    first, last = row["chunks"]
    chunks = f"chunk {first}" if first == last else f"chunks {first}-{last}"
    pages = row.get("pages") or []
    where = f", pages {pages[0]}-{pages[1]}" if pages and pages[0] != pages[1] else \
        (f", page {pages[0]}" if pages else "")
    title = f" \"{row['title']}\"" if row.get("title") else ""
    return (f"{row['source']}{title} (doc {row['doc'][:16]}, {chunks} of {row['of']}{where}, "
            f"tokens {row['tokens'][0]}-{row['tokens'][1]})")
