"""Content-addressed raw store: `raw/<aa>/<sha256>.<ext>` plus `raw/index.sqlite`.

Each distinct content is stored once. `sources` holds one row per path/URL (a SourceRow);
`blobs` one row per stored content. Blobs are written atomically before their rows, so a
kill between the two leaves a blob that the next run adopts, never a row without its blob.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline.atomic import atomic_write, remove_orphan_temps, sync_files, write_beside
from pipeline.layout import DataRoot
from pipeline.records import SourceRow, utc_now

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000  # the crawler process and a stage may write at the same time
_SOURCE_FIELDS = [f.name for f in dataclasses.fields(SourceRow)]


@dataclass(frozen=True, slots=True)
class Blob:
    sha256: str
    ext: str
    mime: str
    size: int
    source: str  # the first source seen with this content
    stored_at: str


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class RawStore:
    def __init__(self, root: DataRoot) -> None:
        self.root = root
        root.raw.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(root.raw_index, timeout=BUSY_TIMEOUT_MS / 1000,
                                  isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._written: list[tuple[Path, Path]] | None = None  # in a batch: (temp, blob path)
        self._create_schema()

    def _create_schema(self) -> None:
        cols = ", ".join(f"{name}" + (" PRIMARY KEY" if name == "source" else "")
                         for name in _SOURCE_FIELDS)
        with self.db:
            self.db.execute(f"CREATE TABLE IF NOT EXISTS sources ({cols})")
            self.db.execute("CREATE INDEX IF NOT EXISTS sources_sha ON sources(sha256)")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS blobs (sha256 TEXT PRIMARY KEY, ext TEXT, mime TEXT,"
                " size INTEGER, source TEXT, stored_at TEXT)"
            )
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> RawStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Writes made inside commit together, at the end: the blobs' temp files are made
        durable at once, renamed into place, their folders made durable, and then all the
        rows are committed in one transaction (instead of an fsync of each blob and of its
        folder and a transaction for each row: the crawl's one writer spent 2.5 ms a page
        waiting for those). An error inside commits nothing and leaves no blob; a kill inside
        leaves temp files (removed by the next run) or blobs without rows (adopted)."""
        if self._written is not None:
            raise RuntimeError("RawStore.batch() does not nest")
        self._written = []
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._place_written()
                self.db.execute("COMMIT")
            except BaseException:
                for temp, _ in self._written:
                    temp.unlink(missing_ok=True)
                if self.db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.db.execute("ROLLBACK")
                raise
        finally:
            self._written = None

    def _place_written(self) -> None:
        """A batch's blobs on disk before they are in place, and in place before their rows."""
        assert self._written is not None
        if not self._written:
            return
        sync_files(temp for temp, _ in self._written)
        folders = set()
        while self._written:
            temp, path = self._written.pop()
            temp.replace(path)
            folders.add(path.parent)
        sync_files(folders)

    def _transaction(self) -> contextlib.AbstractContextManager[object]:
        """One statement's own transaction, or none inside a batch (which commits them all)."""
        return self.db if self._written is None else contextlib.nullcontext()

    def remove_orphan_temps(self) -> int:
        """Temp files of writers that were killed mid-write; call when a stage starts."""
        return remove_orphan_temps(self.root.raw, recursive=True)

    # blobs

    def blob_path(self, sha256: str, ext: str) -> Path:
        return self.root.blob(sha256, ext)

    def get_blob(self, sha256: str) -> Blob | None:
        row = self.db.execute("SELECT * FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
        return Blob(*row) if row else None

    def has_blob(self, sha256: str) -> bool:
        return self.get_blob(sha256) is not None

    def _adopt_or_write(self, sha256: str, ext: str, mime: str, size: int, source: str,
                        write: Callable[[IO[bytes]], object]) -> bool:
        """Store content unless present; returns True when it was new."""
        if self.has_blob(sha256):
            return False
        path = self.blob_path(sha256, ext)
        if not (path.is_file() and path.stat().st_size == size):
            if self._written is not None:  # in a batch: put in place when it commits
                self._written.append((write_beside(path, write), path))
            else:
                with atomic_write(path, "wb") as fh:
                    write(fh)
        with self._transaction():
            cur = self.db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?, ?, ?)",
                                  (sha256, ext, mime, size, source, utc_now()))
        return cur.rowcount == 1

    def put_bytes(self, data: bytes, *, mime: str, ext: str, source: str, sha256: str = ""
                  ) -> tuple[str, bool]:
        """Store `data`; returns (sha256, new). `sha256`: of `data`, if the caller has it."""
        sha = sha256 or sha256_bytes(data)
        new = self._adopt_or_write(sha, ext, mime, len(data), source, lambda fh: fh.write(data))
        return sha, new

    def put_file(self, path: Path, *, sha256: str, size: int, mime: str, ext: str,
                 source: str) -> bool:
        """Store a local file whose sha256 is already known; returns True when new."""

        def copy(fh: IO[bytes]) -> None:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, fh, 1 << 20)

        return self._adopt_or_write(sha256, ext, mime, size, source, copy)

    def iter_blobs(self) -> Iterator[Blob]:
        for row in self.db.execute("SELECT * FROM blobs ORDER BY sha256"):
            yield Blob(*row)

    def count_blobs(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0]

    def count_blobs_by_type(self) -> dict[str, int]:
        """Stored files per type (their extension: pdf, docx, zip, eml, ...), most first."""
        rows = self.db.execute("SELECT ext, COUNT(*) AS n FROM blobs GROUP BY ext "
                               "ORDER BY n DESC, ext")
        return dict(rows.fetchall())

    # sources

    def upsert_source(self, row: SourceRow) -> None:
        values = [getattr(row, name) for name in _SOURCE_FIELDS]
        marks = ", ".join("?" for _ in _SOURCE_FIELDS)
        with self._transaction():
            self.db.execute(f"INSERT OR REPLACE INTO sources VALUES ({marks})", values)

    def get_source(self, source: str) -> SourceRow | None:
        cur = self.db.execute("SELECT * FROM sources WHERE source = ?", (source,))
        row = cur.fetchone()
        return SourceRow(**dict(zip(_SOURCE_FIELDS, row, strict=True))) if row else None

    def iter_sources(self) -> Iterator[SourceRow]:
        for row in self.db.execute("SELECT * FROM sources ORDER BY source"):
            yield SourceRow(**dict(zip(_SOURCE_FIELDS, row, strict=True)))

    def has_sources(self) -> bool:
        return self.db.execute("SELECT 1 FROM sources LIMIT 1").fetchone() is not None

    def count_sources(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM sources").fetchone()[0]
