"""The failures log of a stage (JSONL, one row per failed source), rewritten atomically.

A re-run that fails the same source again replaces its row instead of adding a second one,
and a source that later succeeds can be cleared.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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

    def _write(self, rows: Iterable[Failure]) -> None:
        atomic_write_text(self.path, "".join(r.to_json() + "\n" for r in rows))

    def record(self, failures: Iterable[Failure]) -> None:
        """Add or replace rows (keyed by stage, source, sha256)."""
        new = list(failures)
        if not new:
            return
        merged = {r.key: r for r in self.read()}
        for r in new:
            merged.pop(r.key, None)
            merged[r.key] = r
        self._write(merged.values())

    def clear(self, stage: str, sources: Iterable[str]) -> None:
        """Forget failures of `stage` for sources that have since succeeded."""
        gone = set(sources)
        rows = self.read()
        kept = [r for r in rows if not (r.stage == stage and r.source in gone)]
        if len(kept) != len(rows):
            self._write(kept)

    def sources(self, stage: str | None = None) -> set[str]:
        return {r.source for r in self.read() if stage is None or r.stage == stage}
