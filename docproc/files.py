"""Files named one by one (the legacy tools): each extracted in this process or on worker
processes, the outcomes in input order; a file's type and metadata, without extracting it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from docproc.options import ExtractOptions
from docproc.pool import Outcome, Task, WorkerPool, run_one, worker_count
from pipeline.errors import InputError


def file_workers(paths: Sequence[str], opts: ExtractOptions) -> int:
    """The processes `extract_files` runs on: `opts.workers` (0: one per core), never more
    than the inputs; one means this process."""
    return min(worker_count(opts.workers), len(paths))


def extract_files(paths: Sequence[str], opts: ExtractOptions) -> Iterator[Outcome]:
    """One Outcome per path, in input order, on `file_workers` processes. EnvironmentProblem
    stops it."""
    workers = file_workers(paths, opts)
    if workers <= 1:
        for path in paths:  # handled exactly as a worker process would
            yield run_one(Task(path=path, source=path), opts, opts.timeout_s).checked()
        return
    pool = WorkerPool(opts, workers=workers, timeout_s=opts.timeout_s,
                      tasks_per_worker=opts.tasks_per_worker)
    ready: dict[str, Outcome] = {}
    order = iter(paths)
    upcoming = next(order, None)
    for outcome in pool.run([Task(path=p, source=p) for p in dict.fromkeys(paths)]):
        ready[outcome.task.path] = outcome
        while upcoming is not None and upcoming in ready:
            yield ready[upcoming]
            upcoming = next(order, None)


def document_type(path: Path, opts: ExtractOptions) -> str:
    """"text", "image" (scanned: every page needs OCR) or "mixed", without running OCR."""
    from docproc.detect import Kind, detect
    from docproc.pdf import classify

    found = detect(path)
    if found.kind is Kind.IMAGE:
        return "image"
    if found.kind in (Kind.PDF, Kind.EBOOK):
        return classify(path, str(path), opts.max_pages, found.filetype)
    return "text"


def document_metadata(path: Path, opts: ExtractOptions) -> dict[str, str] | None:
    """A PDF's or e-book's metadata (title, author, ..., pages); None for other formats and
    for a file that does not open."""
    from docproc.detect import Kind, detect
    from docproc.pdf import metadata, open_document

    try:
        found = detect(path)
        if found.kind not in (Kind.PDF, Kind.EBOOK):
            return None
        doc = open_document(path, str(path), opts.max_pages, found.filetype)
    except InputError:
        return None
    try:
        return metadata(doc)
    finally:
        doc.close()
