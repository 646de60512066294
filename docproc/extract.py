"""The extract stage: raw store blobs -> `docs/part-NNNNN.jsonl.zst` + `docs/failures.jsonl`.

Resumable: documents already in a part (by sha256) are skipped, and so are sources that
failed before unless `extract.retry_failed`. Parts are written whole and atomically, so a
killed run loses at most the documents of its unwritten part, which the next run redoes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from docproc.detect import OCR_KINDS, kind_of_mime
from docproc.ocr_policy import OcrMode
from docproc.options import ExtractOptions
from docproc.pool import Outcome, Task, WorkerPool, worker_count
from pipeline.atomic import remove_orphan_temps
from pipeline.config import Config, save_resolved
from pipeline.docstore import document_ids, write_part
from pipeline.failures import FailureLog
from pipeline.layout import DataRoot
from pipeline.lock import check_input_free, stage_lock
from pipeline.progress import Progress, StageStats
from pipeline.rawstore import RawStore
from pipeline.records import Document, Failure

log = logging.getLogger(__name__)

STAGE = "extract"
FLUSH_EVERY_S = 120.0  # write a part at least this often, so slow OCR runs lose little if killed


def in_partition(sha256: str, partition: tuple[int, int] | None) -> bool:
    """Whether a blob belongs to partition (i, k): disjoint sets, stable for every run."""
    if partition is None:
        return True
    i, k = partition
    return int(sha256[:8], 16) % k == i


def _pending(root: DataRoot, failed_before: set[str], retry_failed: bool,
             stats: StageStats, partition: tuple[int, int] | None = None) -> list[Task]:
    """Blobs still to extract; the others are counted as skipped."""
    done = document_ids(root.docs)
    tasks = []
    with RawStore(root) as store:
        for blob in store.iter_blobs():
            if not in_partition(blob.sha256, partition):
                continue
            if blob.sha256 in done:
                stats.skip("already_extracted")
            elif blob.sha256 in failed_before and not retry_failed:
                stats.skip("failed_before")
            else:
                tasks.append(Task(path=str(root.blob(blob.sha256, blob.ext)), source=blob.source,
                                  claimed_mime=blob.mime, sha256=blob.sha256, size=blob.size))
    return tasks


def _needs_tesseract(tasks: list[Task], mode: OcrMode) -> bool:
    return mode is not OcrMode.NEVER and any(kind_of_mime(t.claimed_mime) in OCR_KINDS
                                             for t in tasks)


class _PartWriter:
    """Buffers documents and failures; writes a part every `part_docs` documents."""

    def __init__(self, docs_dir: Path, failures: FailureLog, part_docs: int) -> None:
        self.docs_dir = docs_dir
        self.failures = failures
        self.part_docs = part_docs
        self.docs: list[Document] = []
        self.failed: list[Failure] = []
        self.parts: list[str] = []
        self.last_flush = time.monotonic()

    def add(self, doc: Document | None, failure: Failure | None) -> None:
        if doc is not None:
            self.docs.append(doc)
        if failure is not None:
            self.failed.append(failure)
        if len(self.docs) >= self.part_docs or (
                time.monotonic() - self.last_flush >= FLUSH_EVERY_S):
            self.flush()

    def flush(self) -> None:
        if self.docs:
            path = write_part(self.docs_dir, self.docs)
            self.parts.append(path.name)
            # sources that failed in an earlier run and have now succeeded
            self.failures.clear(STAGE, [d.source for d in self.docs])
            log.debug("wrote %s (%d documents)", path.name, len(self.docs))
        if self.failed:
            self.failures.record(self.failed)
        self.docs, self.failed = [], []
        self.last_flush = time.monotonic()


def _failure(outcome: Outcome) -> Failure:
    return Failure(source=outcome.task.source, stage=STAGE, error=outcome.error,
                   message=outcome.message, sha256=outcome.task.sha256)


@dataclass(slots=True)
class _Tally:
    """What the summary reports beyond kept/failed: pages by OCR reason, documents by type."""

    page_reasons: Counter[str] = field(default_factory=Counter)
    by_mime: Counter[str] = field(default_factory=Counter)
    ocr_pages: int = 0

    def count(self, stats: StageStats, doc: Document, size: int) -> None:
        stats.keep()
        stats.units += len(doc.page_info)
        stats.bytes += size
        self.page_reasons.update(p.reason for p in doc.page_info)
        self.by_mime[doc.mime] += 1
        self.ocr_pages += len(doc.ocr_pages)


def extract_all(cfg: Config, root: DataRoot, progress: bool = True,
                partition: tuple[int, int] | None = None) -> StageStats:
    """Extract every raw blob not yet in docs/ into Document parts; failures are recorded.

    `partition=(i, k)` extracts only the i-th of k disjoint sets of blobs, so that k tasks
    (Prefect's fan-out, on threads or Dask workers) can share the work; each uses
    cores // k worker processes unless extract.workers says otherwise.
    """
    ecfg = cfg.extract
    opts = ExtractOptions.from_config(ecfg)
    stats = StageStats(stage=STAGE, unit_name="pages")
    tally = _Tally()
    root.docs.mkdir(parents=True, exist_ok=True)
    lock_name = f"{STAGE}-{partition[0]}-of-{partition[1]}" if partition else STAGE
    check_input_free(root.raw, STAGE)
    with stage_lock(root.docs, lock_name):
        remove_orphan_temps(root.docs)  # only dead writers' files: siblings keep theirs
        save_resolved(cfg, root.docs)
        failure_log = FailureLog(root.doc_failures)
        failed_before = {f.sha256 for f in failure_log.read() if f.stage == STAGE}
        tasks = _pending(root, failed_before, ecfg.retry_failed, stats, partition)
        if _needs_tesseract(tasks, opts.ocr):
            from docproc.ocr import check_tesseract

            check_tesseract(opts.lang)  # fail before any work, with the install command
        writer = _PartWriter(root.docs, failure_log, ecfg.part_docs)
        share = partition[1] if partition and not ecfg.workers else 1
        workers = min(max(1, worker_count(ecfg.workers) // share), max(1, len(tasks)))
        pool = WorkerPool(opts, workers=workers, timeout_s=ecfg.timeout_s,
                          tasks_per_worker=ecfg.tasks_per_worker)
        try:
            with Progress(stats, total=len(tasks), unit="doc", enabled=progress) as bar:
                for outcome in pool.run(tasks) if tasks else ():
                    if outcome.doc is not None:
                        tally.count(stats, outcome.doc, outcome.task.size)
                        writer.add(outcome.doc, None)
                    else:
                        failure = _failure(outcome)
                        stats.fail(failure)
                        writer.add(None, failure)
                        log.warning("extract: %s: [%s] %s", failure.source, failure.error,
                                    failure.message)
                    bar.update(pages=stats.units, ocr=tally.ocr_pages)
        finally:
            writer.flush()
    stats.extra.update(workers=workers, parts_written=writer.parts, ocr_pages=tally.ocr_pages,
                       page_reasons=dict(tally.page_reasons), by_mime=dict(tally.by_mime))
    if tally.page_reasons:
        reasons = ", ".join(f"{r}={n}" for r, n in tally.page_reasons.most_common())
        log.info("extract: %d pages OCRed; pages by OCR decision: %s", tally.ocr_pages, reasons)
    return stats.finish()
