"""Extracted documents: `docs/part-NNNNN.jsonl.zst`, each part written whole and atomically."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipeline.atomic import atomic_write
from pipeline.records import Document

PART_RE = re.compile(r"^part-(\d{5,})\.jsonl\.zst$")
ZSTD_LEVEL = 3


def part_path(docs_dir: Path, number: int) -> Path:
    return Path(docs_dir) / f"part-{number:05d}.jsonl.zst"


def list_parts(docs_dir: Path) -> list[Path]:
    docs_dir = Path(docs_dir)
    if not docs_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in docs_dir.iterdir() if (m := PART_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def next_part_number(docs_dir: Path) -> int:
    parts = list_parts(docs_dir)
    return int(PART_RE.match(parts[-1].name).group(1)) + 1 if parts else 0


def write_part(docs_dir: Path, docs: Iterable[Document], number: int | None = None) -> Path:
    """Write one part atomically (the caller holds the stage lock); returns its path."""
    import zstandard

    path = part_path(docs_dir, next_part_number(docs_dir) if number is None else number)
    with atomic_write(path, "wb") as fh:
        with zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(fh, closefd=False) as zw:
            for doc in docs:
                zw.write(doc.to_json().encode("utf-8") + b"\n")
    return path


def read_part(path: Path) -> Iterator[Document]:
    import zstandard

    with open(path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as zr:
        for line in io.TextIOWrapper(zr, encoding="utf-8"):
            if line.strip():
                yield Document.from_json(line)


def iter_documents(docs_dir: Path, parts: Iterable[Path] | None = None) -> Iterator[Document]:
    for path in list_parts(docs_dir) if parts is None else parts:
        yield from read_part(path)


def document_ids(docs_dir: Path) -> set[str]:
    return {doc.id for doc in iter_documents(docs_dir)}
