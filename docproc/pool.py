"""Worker processes for extraction: a per-document timeout, crash isolation and recycling.

Each worker gets one document at a time over its own pipe, so a worker that hangs or dies
costs exactly that document: it becomes a `timeout` or `crash` outcome, the worker is
replaced and the batch goes on. Workers leave after `tasks_per_worker` documents (PyMuPDF and
Tesseract leak in long jobs). They are forked from a process that imported the extractors
once, so starting or replacing one costs milliseconds (see `_context`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docproc.budget import Granted, TimeBudget, describe, limit_s
from docproc.container import extract_source
from docproc.options import ExtractOptions
from pipeline.errors import EnvironmentProblem, InputError, TooLargeInput, disk_full_error
from pipeline.records import Document, Failure

if TYPE_CHECKING:  # multiprocessing loads with the first worker: one process needs none
    from multiprocessing.connection import Connection

log = logging.getLogger(__name__)

KILL_GRACE_S = 5.0  # a worker past its deadline gets up to this long to report its own timeout
# Tasks queued per worker: the next one waits in its pipe, so a worker never sits idle
# while the parent wakes up to send it more (milliseconds a document on busy cores).
PREFETCH = 2
PRELOAD = ["docproc.pool", "docproc.pdf", "docproc.image", "docproc.html", "docproc.text",
           "docproc.office", "docproc.odf", "docproc.rtf", "docproc.mail", "docproc.archive",
           "docx", "pptx", "openpyxl", "odf.opendocument", "striprtf.striprtf",
           "pytesseract", "charset_normalizer", "trafilatura", "PIL.Image"]


@dataclass(frozen=True, slots=True)
class Task:
    path: str  # where the bytes are
    source: str  # what to call it (path or URL it came from)
    claimed_mime: str = ""
    sha256: str = ""  # the Document id; computed from the bytes when empty
    size: int = 0  # bytes, for the stage's statistics


# Outcome.error when the machine failed, not the document (Tesseract missing, a full disk):
# the run stops with EnvironmentProblem
ENVIRONMENT = "environment"


@dataclass(slots=True)
class Outcome:
    """What became of one task: its Document, or the kind of failure and its message."""

    task: Task
    doc: Document | None = None  # the file's own document (None for an archive, or a failure)
    # what came out of a container (archive members, mail attachments), and what failed in it
    members: list[Document] = field(default_factory=list)
    member_failures: list[Failure] = field(default_factory=list)
    error: str = ""  # failure kind ("corrupt", "timeout", "crash", ...) of the file itself
    message: str = ""
    seconds: float = 0.0
    limit_s: float = 0.0  # its limit: extract.timeout_s + its pages' allowance (set by the pool)

    @property
    def documents(self) -> list[Document]:
        """The file's document, then its members'."""
        return ([self.doc] if self.doc is not None else []) + self.members

    def checked(self) -> Outcome:
        """This outcome; EnvironmentProblem when it is one (ENVIRONMENT)."""
        if self.error == ENVIRONMENT:
            raise EnvironmentProblem(self.message)
        return self


def worker_count(requested: int) -> int:
    """`requested` processes, 0 meaning one per usable core."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def run_one(task: Task, opts: ExtractOptions, timeout_s: float,
            notify: Callable[[int], None] | None = None) -> Outcome:
    """Extract one task here; an environment problem is an outcome too (see `checked`).

    Its time is `timeout_s` plus opts.timeout_per_page_s for each page it turns out to have;
    `notify` is told of each grant of pages (the parent's watchdog moves its deadline).
    """
    started = time.monotonic()
    budget = TimeBudget(timeout_s, opts.timeout_per_page_s, started=started, notify=notify)
    try:
        found = extract_source(Path(task.path), opts, source=task.source,
                               claimed_mime=task.claimed_mime, sha256=task.sha256,
                               budget=budget)
        return Outcome(task, doc=found.doc, members=found.members,
                       member_failures=found.failures, seconds=time.monotonic() - started)
    except InputError as e:
        error, message = e.kind, e.reason
    except EnvironmentProblem as e:
        error, message = ENVIRONMENT, str(e)
    except MemoryError:
        # under extract.max_memory_mb (see _limit_memory): this document, not the worker
        error, message = TooLargeInput.kind, (f"needs more memory than extract.max_memory_mb="
                                              f"{opts.max_memory_mb} allows")
    except Exception as e:  # a bug or a library failure on odd input: one document, not the batch
        full = disk_full_error(e, where=_scratch_dir())
        if full is not None:  # the machine's problem, not the document's: stop the stage
            error, message = ENVIRONMENT, str(full)
        else:
            where = traceback.extract_tb(e.__traceback__)[-1]
            error, message = "error", (f"{type(e).__name__}: {e} (at "
                                       f"{os.path.basename(where.filename)}:{where.lineno})")
    return Outcome(task, error=error, message=message, seconds=time.monotonic() - started)


def _scratch_dir() -> str:
    import tempfile

    return tempfile.gettempdir()  # where OCR writes its page images


def _address_space() -> int | None:
    """Bytes of address space this process maps now (Linux), or None where unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _load_extractors() -> None:
    """Import the extraction libraries before the memory cap: loading MuPDF's shared library
    maps tens of MB, which under the cap fails the first document that needs it. Usually a
    no-op (inherited from the parent or the forkserver); not when the forkserver was started
    earlier by other code, without our preload list."""
    for name in PRELOAD:
        importlib.import_module(name)


def _limit_memory(extra_mb: int) -> None:
    """Cap this worker's address space at what it maps now plus `extra_mb` (RLIMIT_AS).

    Relative, because a forked worker starts with its parent's mappings (hundreds of MB in a
    process that imported torch). A document that needs more gets MemoryError (Python) or a
    failed malloc (MuPDF, Pillow): a `too_large` failure, not a machine brought to its knees.
    Tesseract, started by the worker, inherits the same cap.
    """
    now = _address_space()
    if not extra_mb or now is None:
        return
    import resource

    limit = now + extra_mb * 1024 * 1024
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError) as e:  # a lower hard limit already set: keep it
        log.debug("cannot limit worker memory: %s", e)


def _worker_main(conn: Connection, opts: ExtractOptions, timeout_s: float, max_tasks: int) -> None:
    from pipeline.parallel import die_with_parent

    die_with_parent()  # an orphan never keeps working or holds the stage lock it inherited
    # Own process group: a timeout kills the worker and its Tesseract child together.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    from docproc.ocr import limit_threads

    limit_threads()
    _load_extractors()
    _limit_memory(opts.max_memory_mb)
    for _ in range(max_tasks):
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(run_one(task, opts, timeout_s, notify=lambda pages: conn.send(Granted(pages))))


@dataclass(slots=True)
class _Worker:
    proc: Any
    conn: Connection
    sent: int = 0  # tasks handed to it (never more than tasks_per_worker)
    done: int = 0
    inflight: deque[Task] = field(default_factory=deque)  # the head is being worked on
    started: float = 0.0  # when the head task began
    pages: int = 0  # pages the head task was granted time for


def _other_threads() -> list[threading.Thread]:
    """Threads that could hold a lock at fork time; tqdm's monitor only sleeps and polls."""
    return [t for t in threading.enumerate()
            if t is not threading.main_thread() and type(t).__name__ != "TMonitor"]


def _context() -> Any:
    """fork from a single-threaded process: fastest, and no re-import of `__main__` (which
    makes spawn and forkserver fail in scripts without a main guard). A process with threads
    (Prefect runs tasks in threads) uses a forkserver: forking threads can deadlock."""
    import multiprocessing

    if not _other_threads():
        for name in PRELOAD:  # imported once here, inherited by every forked worker
            importlib.import_module(name)
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _kill(worker: _Worker) -> None:
    try:
        os.killpg(worker.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        worker.proc.kill()
    worker.proc.join(timeout=5)
    worker.conn.close()


def _receive(conn: Connection) -> Any:
    """The message waiting on `conn`, or None (nothing there, or the worker is gone)."""
    try:
        return conn.recv() if conn.poll() else None
    except (EOFError, OSError):
        return None


def _death(proc: Any) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the worker process died ({name}) while extracting it"
    return f"the worker process exited (code {code}) while extracting it"


class WorkerPool:
    """Run extraction tasks on `workers` processes; outcomes come back as they finish."""

    def __init__(self, opts: ExtractOptions, *, workers: int, timeout_s: float,
                 tasks_per_worker: int, kill_grace_s: float = KILL_GRACE_S) -> None:
        self.opts = opts
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self.tasks_per_worker = tasks_per_worker
        # short per-document limits get a short grace too: at most the limit itself
        self.kill_grace_s = min(kill_grace_s, max(1.0, timeout_s))
        self.started = 0  # worker processes started so far (recycling starts new ones)
        self._ctx: Any = None  # chosen at the first start, when the threads that matter exist
        self._all: list[_Worker] = []

    @property
    def start_method(self) -> str:
        return self._ctx.get_start_method() if self._ctx is not None else ""

    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self._all]

    def _start(self) -> _Worker:
        if self._ctx is None:
            self._ctx = _context()
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, daemon=True, name="cllm-extract",
                                 args=(child, self.opts, self.timeout_s, self.tasks_per_worker))
        proc.start()
        child.close()
        worker = _Worker(proc=proc, conn=parent)
        self._all.append(worker)
        self.started += 1
        return worker

    def _retire(self, worker: _Worker, kill: bool) -> None:
        self._all.remove(worker)
        if kill:
            _kill(worker)
        else:
            worker.proc.join(timeout=5)
            worker.conn.close()

    def run(self, tasks: Sequence[Task]) -> Iterator[Outcome]:
        """Yield one Outcome per task, in completion order; EnvironmentProblem stops the run."""
        queue = list(reversed(tasks))
        try:
            while queue or any(w.inflight for w in self._all):
                self._dispatch(queue)
                outcomes, unstarted = self._collect()
                queue.extend(reversed(unstarted))  # a dead worker's queued tasks, not its fault
                yield from outcomes
        finally:
            for worker in list(self._all):
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
                self._retire(worker, kill=bool(worker.inflight))

    def _dispatch(self, queue: list[Task]) -> None:
        """Hand out tasks: one to each worker first, a second only while plenty remain."""
        while queue and len(self._all) < self.workers:
            self._start()
        for depth in range(1, PREFETCH + 1):
            for worker in list(self._all):
                if not queue or (depth > 1 and len(queue) < self.workers):
                    return
                if len(worker.inflight) >= depth or worker.sent >= self.tasks_per_worker:
                    continue
                try:
                    worker.conn.send(queue[-1])
                except OSError:  # died while idle; _collect reports what it held
                    continue
                if not worker.inflight:
                    worker.started = time.monotonic()
                worker.inflight.append(queue.pop())
                worker.sent += 1

    def _collect(self) -> tuple[list[Outcome], list[Task]]:
        """Wait for results, deaths or deadlines; (outcomes, tasks to hand out again)."""
        from multiprocessing.connection import wait

        busy = [w for w in self._all if w.inflight]
        next_deadline = min(w.started + self._limit(w) + self.kill_grace_s for w in busy)
        waitables = [w.conn for w in busy] + [w.proc.sentinel for w in busy]
        ready = set(wait(waitables, timeout=max(0.0, next_deadline - time.monotonic())))
        outcomes: list[Outcome] = []
        unstarted: list[Task] = []
        for worker in busy:
            # Dead or not, results may be waiting: a worker that sent its last result and
            # exited (recycling) can look dead before its message is read.
            dead = worker.proc.sentinel in ready or not worker.proc.is_alive()
            while worker.inflight and (message := _receive(worker.conn)) is not None:
                if isinstance(message, Granted):
                    worker.pages += message.pages
                else:
                    outcomes.append(self._outcome(worker, message))
            now = time.monotonic()
            if not worker.inflight:
                if worker.done >= self.tasks_per_worker:
                    self._retire(worker, kill=False)  # it leaves by itself after its last task
                continue
            head, seconds = worker.inflight[0], now - worker.started
            limit = self._limit(worker)
            if dead:
                worker.proc.join(timeout=1)
                if worker.done == 0 and (worker.proc.exitcode or 0) > 0:
                    raise EnvironmentProblem(
                        f"an extraction worker could not start (exit code "
                        f"{worker.proc.exitcode}; its error is above). A script that runs "
                        "the extract stage needs an `if __name__ == '__main__':` guard")
                outcomes.append(Outcome(head, error="crash", message=_death(worker.proc),
                                        seconds=seconds, limit_s=limit))
            elif seconds >= limit + self.kill_grace_s:
                log.warning("%s: no result after %.0fs, stopping its worker", head.source,
                            seconds)
                keys = describe(self.timeout_s, self.opts.timeout_per_page_s, worker.pages)
                outcomes.append(Outcome(head, error="timeout", seconds=seconds, limit_s=limit,
                                        message=f"no result within {keys} (worker stopped)"))
            else:
                continue
            unstarted.extend(list(worker.inflight)[1:])
            worker.inflight.clear()
            self._retire(worker, kill=True)
        return outcomes, unstarted

    def _limit(self, worker: _Worker) -> float:
        """Seconds the worker's head task may take; past them and the grace, it is stopped."""
        return limit_s(self.timeout_s, self.opts.timeout_per_page_s, worker.pages)

    def _outcome(self, worker: _Worker, outcome: Outcome) -> Outcome:
        """The head task's outcome as its worker sent it; the next task has begun."""
        task = worker.inflight.popleft()
        now = time.monotonic()
        # the parent's own task and clock (from when the worker took the task up)
        outcome.task, outcome.seconds, worker.started = task, now - worker.started, now
        outcome.limit_s = self._limit(worker)
        worker.done += 1
        worker.pages = 0
        return outcome.checked()
