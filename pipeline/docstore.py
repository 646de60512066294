"""Document parts: `part-NNNNN.jsonl.zst`, each written whole and atomically, with the ids of
its documents beside it (`part-NNNNN.ids`, one a line, then the raw blobs that documents of
the part came out of): the completion record a stage reads to know what is done without
opening every part. One reader, strict or tolerant."""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from pipeline.atomic import (
    FILE_MODE,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    atomic_write,
    atomic_write_text,
    fsync_path,
)
from pipeline.errors import CorruptInput
from pipeline.records import MEMBER_OF, Document

PART_RE = re.compile(r"^part-(\d{5,})\.jsonl\.zst$")
ZSTD_LEVEL = 3


def part_path(docs_dir: Path, number: int) -> Path:
    return Path(docs_dir) / f"part-{number:05d}.jsonl.zst"


def ids_path(part: Path) -> Path:
    return Path(part).with_name(Path(part).name.removesuffix(".jsonl.zst") + ".ids")


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


def write_part(docs_dir: Path, docs: Iterable[Document], number: int | None = None,
               done: Iterable[str] = ()) -> Path:
    """Write one part atomically; returns its path. `done`: raw blobs its id record lists
    as done too (an archive whose members were all extracted before, from other files).

    With `number`, that part is written (or replaced). Without, the part takes the next free
    number: the finished temp file is hard-linked to the name, which fails if another writer
    (a parallel extraction task) took it first, and then the next number is tried.
    """
    docs_dir = Path(docs_dir)
    docs = list(docs)
    if number is not None:
        path = part_path(docs_dir, number)
        with atomic_write(path, "wb") as fh:
            _write_zst(fh, docs)
        _write_ids(path, completed_ids(docs, done))
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
    fsync_path(docs_dir)
    path = part_path(docs_dir, n)
    # a kill before this: part_ids writes it later, without `done` (those are read again)
    _write_ids(path, completed_ids(docs, done))
    return path


def completed_ids(docs: Iterable[Document], done: Iterable[str] = ()) -> list[str]:
    """What a part completes: its documents' ids, then the raw blobs that documents of the part
    came out of (archives, mail: several documents from one blob, always in one part), then
    `done`."""
    docs = list(docs)
    ids = [d.id for d in docs]
    own = set(ids)
    containers = dict.fromkeys(b for d in docs if (b := d.meta.get(MEMBER_OF)) and b not in own)
    containers.update(dict.fromkeys(b for b in done if b not in own))
    return ids + list(containers)


def _write_ids(part: Path, ids: list[str]) -> None:
    atomic_write_text(ids_path(part), "".join(i + "\n" for i in ids))


def _record(line: str, path: Path, number: int) -> Document:
    try:
        doc = Document.from_json(line)
        if not (isinstance(doc.id, str) and doc.id and isinstance(doc.text, str)):
            raise TypeError("id and text must be strings")
        return doc
    except (ValueError, TypeError, KeyError) as e:
        raise CorruptInput(f"{path}:{number}", f"not a Document record: {e}") from None


def read_part(path: Path, bad: list[CorruptInput] | None = None) -> Iterator[Document]:
    """The Document records of a part. A record that is not one raises CorruptInput naming
    the part and line; with `bad`, it is appended there and skipped instead (the clean stage
    goes on past it). A part that cannot be read at all raises CorruptInput either way."""
    import zstandard

    path = Path(path)
    try:
        with open(path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as zr:
            for n, line in enumerate(io.TextIOWrapper(zr, encoding="utf-8"), 1):
                if not line.strip():
                    continue
                try:
                    yield _record(line, path, n)
                except CorruptInput as e:
                    if bad is None:
                        raise
                    bad.append(e)
    except (zstandard.ZstdError, UnicodeDecodeError, EOFError) as e:
        raise CorruptInput(str(path), f"cannot read docs part: {e}") from None
    except OSError as e:
        raise CorruptInput(str(path), f"cannot read docs part: {e.strerror or e}") from None


def iter_documents(docs_dir: Path, parts: Iterable[Path] | None = None) -> Iterator[Document]:
    for path in list_parts(docs_dir) if parts is None else parts:
        yield from read_part(path)


def part_ids(part: Path) -> list[str]:
    """The ids of a part's documents, from its record (made from the part when missing)."""
    record = ids_path(part)
    try:
        return record.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        ids = completed_ids(read_part(part))
        _write_ids(part, ids)
        return ids


def document_ids(docs_dir: Path) -> set[str]:
    """The ids of every document in the parts of `docs_dir`, and of the raw blobs (archives,
    mail) their documents came out of (read from the parts' id records)."""
    return {i for part in list_parts(docs_dir) for i in part_ids(part)}
