"""The failures log of a stage (JSONL, one row per failed source), rewritten atomically.

A re-run that fails the same source again replaces its row instead of adding a second one,
and a source that later succeeds can be cleared. Updates hold an advisory lock, so writers in
parallel (the crawler's threads, extraction tasks fanned out) never drop each other's rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipeline.atomic import atomic_write_text
from pipeline.records import Failure

log = logging.getLogger(__name__)


class FailureLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> list[Failure]:
        if not self.path.is_file():
            return []
        rows = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(Failure.from_json(line))
            except (ValueError, TypeError) as e:
                log.warning("%s:%d: skipping unreadable failure row (%s)", self.path, n, e)
        return rows

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT,
                     0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, rows: Iterable[Failure]) -> None:
        atomic_write_text(self.path, "".join(r.to_json() + "\n" for r in rows))

    def record(self, failures: Iterable[Failure]) -> None:
        """Add or replace rows (keyed by stage, source, sha256)."""
        new = list(failures)
        if not new:
            return
        with self._locked():
            merged = {r.key: r for r in self.read()}
            for r in new:
                merged.pop(r.key, None)
                merged[r.key] = r
            self._write(merged.values())

    def clear(self, stage: str, sources: Iterable[str]) -> None:
        """Forget failures of `stage` for sources that have since succeeded."""
        gone = set(sources)
        if not gone or not self.path.is_file():
            return
        with self._locked():
            rows = self.read()
            kept = [r for r in rows if not (r.stage == stage and r.source in gone)]
            if len(kept) != len(rows):
                self._write(kept)

    def sources(self, stage: str | None = None) -> set[str]:
        return {r.source for r in self.read() if stage is None or r.stage == stage}
