"""The extract stage: raw store blobs -> `docs/part-NNNNN.jsonl.zst` + `docs/failures.jsonl`.

Resumable: blobs already in a part's id record (a document's sha256, or an archive's or
mail's that documents came out of) are skipped, and so are sources that failed before
unless `extract.retry_failed`. Parts are written whole and atomically, so a killed run loses
at most the documents of its unwritten part, which the next run redoes; all documents of one
raw file go into one part. An archive that gave no new document (every member a duplicate)
is listed as done in the id record of the next part written; when no part follows (the run's
last files), the run ends with a part of no documents whose id record lists them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from docproc.detect import CONTAINER_KINDS, OCR_KINDS, kind_of_mime
from docproc.ocr_policy import OcrMode
from docproc.options import ExtractOptions
from docproc.pool import Outcome, Task, WorkerPool, worker_count
from pipeline.atomic import remove_orphan_temps
from pipeline.config import Config, save_resolved
from pipeline.docstore import document_ids, write_part
from pipeline.failures import FailureLog
from pipeline.layout import DataRoot
from pipeline.lock import check_input_free, stage_lock
from pipeline.progress import Progress
from pipeline.rawstore import RawStore
from pipeline.records import MEMBER_OF, Document, Failure
from pipeline.stats import StageStats

log = logging.getLogger(__name__)

STAGE = "extract"
FLUSH_EVERY_S = 120.0  # write a part at least this often, so slow OCR runs lose little if killed


def in_partition(sha256: str, partition: tuple[int, int] | None) -> bool:
    """Whether a blob belongs to partition (i, k): disjoint sets, stable for every run."""
    if partition is None:
        return True
    i, k = partition
    return int(sha256[:8], 16) % k == i


def _pending(root: DataRoot, done: set[str], failed_before: set[str], retry_failed: bool,
             stats: StageStats, partition: tuple[int, int] | None = None) -> list[Task]:
    """Blobs still to extract; the others are counted as skipped."""
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
    # an archive's or a mail's members may be scans
    return mode is not OcrMode.NEVER and any(
        kind_of_mime(t.claimed_mime) in OCR_KINDS | CONTAINER_KINDS for t in tasks)


class _PartWriter:
    """Buffers documents and failures; writes a part every `part_docs` documents."""

    def __init__(self, docs_dir: Path, failures: FailureLog, part_docs: int) -> None:
        self.docs_dir = docs_dir
        self.failures = failures
        self.part_docs = part_docs
        self.docs: list[Document] = []
        self.failed: list[Failure] = []
        self.done: list[str] = []  # blobs that gave only documents already kept
        self.parts: list[str] = []
        self.last_flush = time.monotonic()

    def add(self, docs: list[Document], failures: list[Failure], done: str = "") -> None:
        """One raw file's documents and failures: always written in the same part (an
        archive's documents never straddle a part, so a kill leaves all or none of them);
        `done`, a blob to mark done that gave no new document."""
        self.docs += docs
        self.failed += failures
        self.done += [done] if done else []
        if len(self.docs) >= self.part_docs or (
                time.monotonic() - self.last_flush >= FLUSH_EVERY_S):
            self.flush()

    def flush(self, last: bool = False) -> None:
        """Write what is buffered; `last`: the run's end, where blobs waiting to be marked
        done get a part of their own even with no document to go with them."""
        # Failures first: an archive's member failures recorded before the part that marks
        # the archive done, so a kill between the two redoes the archive, never loses a row.
        if self.failed:
            self.failures.record(self.failed)
        if self.docs or (last and self.done):
            path = write_part(self.docs_dir, self.docs, done=self.done)
            self.done = []
            self.parts.append(path.name)
            # sources that failed in an earlier run and have now succeeded
            self.failures.clear(STAGE, [d.source for d in self.docs])
            log.debug("wrote %s (%d documents)", path.name, len(self.docs))
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
    cut: Counter[str] = field(default_factory=Counter)  # what caps left out (sheet rows)
    ocr_pages: int = 0
    members: int = 0  # documents that came out of archives and mail

    def count(self, stats: StageStats, doc: Document) -> None:
        stats.keep()
        stats.units += len(doc.page_info)
        self.page_reasons.update(p.reason for p in doc.page_info)
        self.by_mime[doc.mime] += 1
        self.ocr_pages += len(doc.ocr_pages)
        self.members += MEMBER_OF in doc.meta
        self.cut.update({k[4:]: int(v) for k, v in doc.stats.items() if k.startswith("cut_")})


def _new_documents(outcome: Outcome, done: set[str], stats: StageStats) -> list[Document]:
    """The outcome's documents not extracted before (the same member in two archives, or
    alone and in an archive, is one document: the first one kept), counted."""
    fresh = []
    for doc in outcome.documents:
        if doc.id in done:
            stats.skip("duplicate_member")
            continue
        done.add(doc.id)
        fresh.append(doc)
    return fresh


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
        done = document_ids(root.docs)
        tasks = _pending(root, done, failed_before, ecfg.retry_failed, stats, partition)
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
                    failures = [_failure(outcome)] if outcome.error else outcome.member_failures
                    docs = _new_documents(outcome, done, stats)
                    for doc in docs:
                        tally.count(stats, doc)
                    stats.bytes += outcome.task.size if not outcome.error else 0
                    # how long a failed file took, against its limit (a member's failure
                    # is its container's time)
                    took = (f" (after {outcome.seconds:.2f} s; limit {outcome.limit_s:g} s)"
                            if outcome.error else "")
                    for failure in failures:
                        stats.fail(failure)
                        log.warning("extract: %s: [%s] %s%s", failure.source, failure.error,
                                    failure.message, took)
                    # all its documents kept before (from other files): done all the same
                    dup_only = outcome.task.sha256 if outcome.documents and not docs else ""
                    writer.add(docs, failures, dup_only)
                    bar.update(pages=stats.units, ocr=tally.ocr_pages)
        finally:
            writer.flush(last=True)
    stats.extra.update(workers=workers, parts_written=writer.parts, ocr_pages=tally.ocr_pages,
                       page_reasons=dict(tally.page_reasons), by_mime=dict(tally.by_mime),
                       members=tally.members, cut=dict(tally.cut))
    if tally.cut:
        log.info("extract: left out by the caps: %s (extract.max_sheet_rows, max_sheet_cells)",
                 ", ".join(f"{n} {what}" for what, n in tally.cut.items()))
    if tally.page_reasons:
        reasons = ", ".join(f"{r}={n}" for r, n in tally.page_reasons.most_common())
        log.info("extract: %d pages OCRed; pages by OCR decision: %s", tally.ocr_pages, reasons)
    return stats.finish()
