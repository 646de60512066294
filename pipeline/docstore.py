"""Extracted documents: `docs/part-NNNNN.jsonl.zst`, each part written whole and atomically."""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from pipeline.atomic import FILE_MODE, TEMP_PREFIX, TEMP_SUFFIX, atomic_write, fsync_dir
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


def _write_zst(fh: IO[bytes], docs: Iterable[Document]) -> None:
    import zstandard

    with zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(fh, closefd=False) as zw:
        for doc in docs:
            zw.write(doc.to_json().encode("utf-8") + b"\n")


def write_part(docs_dir: Path, docs: Iterable[Document], number: int | None = None) -> Path:
    """Write one part atomically; returns its path.

    With `number`, that part is written (or replaced). Without, the part takes the next free
    number: the finished temp file is hard-linked to the name, which fails if another writer
    (a parallel extraction task) took it first, and then the next number is tried.
    """
    docs_dir = Path(docs_dir)
    if number is not None:
        path = part_path(docs_dir, number)
        with atomic_write(path, "wb") as fh:
            _write_zst(fh, docs)
        return path
    docs_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}part.{os.getpid()}.",
                                    suffix=TEMP_SUFFIX, dir=docs_dir)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            _write_zst(fh, docs)
            fh.flush()
            os.fsync(fh.fileno())
        n = next_part_number(docs_dir)
        while True:
            try:
                os.link(tmp, part_path(docs_dir, n))
                break
            except FileExistsError:
                n += 1
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(docs_dir)
    return part_path(docs_dir, n)


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
