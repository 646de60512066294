"""Content-addressed raw store: `raw/<aa>/<sha256>.<ext>` plus `raw/index.sqlite`.

Each distinct content is stored once. `sources` holds one row per path/URL (a SourceRow);
`blobs` one row per stored content. Blobs are written atomically before their rows, so a
kill between the two leaves a blob that the next run adopts, never a row without its blob.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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


@dataclass(slots=True)
class _Batch:
    """A batch until it commits: the blobs written beside their places, the rows read and
    those to insert, by key (None: looked up, not there)."""

    written: list[tuple[Path, Path]] = field(default_factory=list)  # (temp, blob path)
    folders: set[Path] = field(default_factory=set)  # of the blobs put in place
    blobs: dict[str, Blob | None] = field(default_factory=dict)
    sources: dict[str, SourceRow | None] = field(default_factory=dict)
    new_blobs: list[Blob] = field(default_factory=list)
    new_sources: dict[str, SourceRow] = field(default_factory=dict)


def _source_row(values: tuple[object, ...]) -> SourceRow:
    return SourceRow(**dict(zip(_SOURCE_FIELDS, values, strict=True)))


def _source_values(row: SourceRow) -> list[object]:
    return [getattr(row, name) for name in _SOURCE_FIELDS]


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
        self._batch: _Batch | None = None
        self._devices: dict[Path, int] = {}
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
        rows are inserted and committed in one transaction (instead of an fsync of each blob
        and of its folder and a transaction for each row: the crawl's one writer spent 2.5 ms
        a page waiting for those). Reads inside see the batch's rows as if they were in the
        index. An error inside commits nothing and leaves no blob; a kill inside leaves temp
        files (removed by the next run) or blobs without rows (adopted)."""
        if self._batch is not None:
            raise RuntimeError("RawStore.batch() does not nest")
        batch = self._batch = _Batch()
        try:
            self.db.execute("BEGIN IMMEDIATE")  # the index's write lock: no other writer adds
            try:  # the rows looked up here until this batch commits
                yield
                self._place_written(batch)
                self._insert_rows(batch)
                self.db.execute("COMMIT")
            except BaseException:
                for temp, _ in batch.written:
                    temp.unlink(missing_ok=True)
                if self.db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.db.execute("ROLLBACK")
                raise
        finally:
            self._batch = None

    def look_up(self, sources: Iterable[str] = (), blobs: Iterable[str] = ()) -> None:
        """In a batch: read the rows of these sources and blobs in one query for each table,
        where get_source and get_blob would make one each (a query a page was most of what
        the crawl's writer did, beside the writes)."""
        batch = self._require_batch()
        todo = [s for s in dict.fromkeys(sources) if s not in batch.sources]
        found_sources = self.get_sources(todo)
        for source in todo:
            batch.sources[source] = found_sources.get(source)
        todo = [b for b in dict.fromkeys(blobs) if b and b not in batch.blobs]
        found_blobs = self._rows_in("blobs", "sha256", todo)
        for sha in todo:
            row = found_blobs.get(sha)
            batch.blobs[sha] = Blob(*row) if row else None

    def _require_batch(self) -> _Batch:
        if self._batch is None:
            raise RuntimeError("RawStore.look_up() is for inside a batch()")
        return self._batch

    def _rows_in(self, table: str, key: str, values: list[str]) -> dict[str, tuple[Any, ...]]:
        """The rows of `table` whose `key` (its first column) is one of `values`, by key: a
        query for each run of values that fits one statement."""
        found: dict[str, tuple[Any, ...]] = {}
        for chunk in self._chunks(list(dict.fromkeys(values)), 1):
            marks = ", ".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT * FROM {table} WHERE {key} IN ({marks})", chunk)
            found.update((row[0], row) for row in rows)
        return found

    def _chunks(self, items: list[Any], width: int) -> Iterator[list[Any]]:
        """`items` in runs that fit one statement's variables, `width` of them an item."""
        per = max(1, self.db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
        for i in range(0, len(items), per):
            yield items[i:i + per]

    def _place_written(self, batch: _Batch) -> None:
        """A batch's blobs on disk before they are in place, and in place before their rows."""
        if not batch.written:
            return
        sync_files((temp for temp, _ in batch.written), self._device_of_parent)
        while batch.written:
            temp, path = batch.written[-1]
            os.replace(temp, path)
            batch.written.pop()
            batch.folders.add(path.parent)
        sync_files(batch.folders, self._device_of)

    def _device_of(self, folder: Path) -> int:
        """st_dev of a blob folder, looked at once: the blobs' folders are the same few."""
        device = self._devices.get(folder)
        if device is None:
            device = self._devices[folder] = os.stat(folder).st_dev
        return device

    def _device_of_parent(self, path: Path) -> int:
        return self._device_of(path.parent)

    def _insert_rows(self, batch: _Batch) -> None:
        """The batch's rows in a statement for each table (and each run of rows that fits in
        one), not one a row."""
        for table, verb, rows in (
                ("blobs", "INSERT OR IGNORE", [dataclasses.astuple(b) for b in batch.new_blobs]),
                ("sources", "INSERT OR REPLACE",
                 [_source_values(r) for r in batch.new_sources.values()])):
            if not rows:
                continue
            one = "(" + ", ".join("?" * len(rows[0])) + ")"
            for chunk in self._chunks(rows, len(rows[0])):
                self.db.execute(f"{verb} INTO {table} VALUES " + ", ".join([one] * len(chunk)),
                                [v for row in chunk for v in row])

    def remove_orphan_temps(self) -> int:
        """Temp files of writers that were killed mid-write; call when a stage starts."""
        return remove_orphan_temps(self.root.raw, recursive=True)

    # blobs

    def blob_path(self, sha256: str, ext: str) -> Path:
        return self.root.blob(sha256, ext)

    def get_blob(self, sha256: str) -> Blob | None:
        if self._batch is not None and sha256 in self._batch.blobs:
            return self._batch.blobs[sha256]
        row = self.db.execute("SELECT * FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
        return Blob(*row) if row else None

    def has_blob(self, sha256: str) -> bool:
        return self.get_blob(sha256) is not None

    def _adopt_or_write(self, sha256: str, ext: str, mime: str, size: int, source: str,
                        content: bytes | Callable[[IO[bytes]], object]) -> bool:
        """Store content unless present; returns True when it was new."""
        if self.has_blob(sha256):
            return False
        path = self.blob_path(sha256, ext)
        blob = Blob(sha256, ext, mime, size, source, utc_now())
        if self._batch is not None:  # put in place, and its row inserted, when it commits
            # no look for a blob that a killed run left without its row: the one written
            # here is renamed over it, the same bytes
            self._batch.written.append((write_beside(path, content), path))
            self._batch.blobs[sha256] = blob
            self._batch.new_blobs.append(blob)
            return True
        if not (path.is_file() and path.stat().st_size == size):
            with atomic_write(path, "wb") as fh:
                if isinstance(content, bytes):
                    fh.write(content)
                else:
                    content(fh)
        with self.db:
            cur = self.db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?, ?, ?)",
                                  dataclasses.astuple(blob))
        return cur.rowcount == 1

    def put_bytes(self, data: bytes, *, mime: str, ext: str, source: str, sha256: str = ""
                  ) -> tuple[str, bool]:
        """Store `data`; returns (sha256, new). `sha256`: of `data`, if the caller has it."""
        sha = sha256 or sha256_bytes(data)
        return sha, self._adopt_or_write(sha, ext, mime, len(data), source, data)

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
        if self._batch is not None:
            self._batch.sources[row.source] = self._batch.new_sources[row.source] = row
            return
        marks = ", ".join("?" for _ in _SOURCE_FIELDS)
        with self.db:
            self.db.execute(f"INSERT OR REPLACE INTO sources VALUES ({marks})",
                            _source_values(row))

    def get_source(self, source: str) -> SourceRow | None:
        if self._batch is not None and source in self._batch.sources:
            return self._batch.sources[source]
        cur = self.db.execute("SELECT * FROM sources WHERE source = ?", (source,))
        row = cur.fetchone()
        return _source_row(row) if row else None

    def get_sources(self, sources: Iterable[str]) -> dict[str, SourceRow]:
        """The rows of those of `sources` that have one, in a query for each run of them
        that fits one statement (a crawl's re-run looks up every page it keeps)."""
        return {key: _source_row(row)
                for key, row in self._rows_in("sources", "source", list(sources)).items()}

    def iter_sources(self) -> Iterator[SourceRow]:
        for row in self.db.execute("SELECT * FROM sources ORDER BY source"):
            yield _source_row(row)

    def has_sources(self) -> bool:
        return self.db.execute("SELECT 1 FROM sources LIMIT 1").fetchone() is not None

    def count_sources(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM sources").fetchone()[0]
