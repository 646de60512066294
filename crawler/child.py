"""The crawl process: `python -m crawler.child FD`, started by crawler.run.crawl().

The task comes pickled on stdin; progress snapshots and, at the end, the run's StageStats (or
the error that stopped it) go back as messages on file descriptor FD (crawler/task.py). This
process runs Twisted's reactor once and exits: one crawl per process.

It sets up its own logging (`setup_logging`): it is a process of its own, started by library
code as well as by the `cllm` command, and Scrapy resets its loggers when it starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from crawler.job import JobDir
from crawler.task import DONE, ERROR, PROGRESS, RAISED_IN_PARENT, STAGE, CrawlTask
from pipeline.errors import EnvironmentProblem, disk_full_error
from pipeline.layout import DataRoot
from pipeline.stats import StageStats

GC_YOUNG = 20_000  # allocations between two young collections in the crawl process
LIBRARY_LOGGERS = ("scrapy", "twisted", "protego", "py.warnings", "asyncio", "filelock")


def raw_lock_name(job: str) -> str:
    """The lock a crawl holds in raw/ while it writes there, so that a reader of raw/
    (`cllm extract`) sees it; one per job, as crawls of other seeds may run at once."""
    return f"{STAGE}-{job}"


def scrapy_settings(task: CrawlTask, session: Any) -> Any:
    from scrapy.settings import Settings

    from crawler import settings as defaults
    from crawler.netguard import is_loopback_host
    from crawler.urls import host_of

    s = Settings()
    s.setmodule(defaults, priority="project")
    extra = defaults.build_settings(task.cfg.crawl, str(session.jobdir.scrapy_dir),
                                    redis_key=session.redis_key, log_level=task.log_level)
    # this machine is not a remote site: no politeness delay towards loopback seeds
    loopback = {h for h in map(host_of, task.start_urls + task.sitemaps) if is_loopback_host(h)}
    extra["DOWNLOAD_SLOTS"] = {h: {"delay": 0.0, "jitter": 0.0} for h in loopback}
    s.update(extra, priority="cmdline")
    defaults.drop_unused_components(s)
    return s


def run_in_this_process(task: CrawlTask,
                        report: Callable[[dict[str, Any]], None] | None = None) -> StageStats:
    """The crawl itself, blocking until Scrapy stops. Runs Twisted: call it once per process."""
    from crawler import writer

    # started before Scrapy is imported, so that it is up by the first page
    writer_process = writer.start(task.root)
    try:
        return _crawl(task, report, writer_process)
    finally:
        writer.stop(writer_process)  # stopped by the pipeline already, unless the crawl failed


def _crawl(task: CrawlTask, report: Callable[[dict[str, Any]], None] | None,
           writer_process: subprocess.Popen[bytes]) -> StageStats:
    find_callers_cheaply()
    from scrapy.crawler import CrawlerProcess

    from crawler.session import open_session
    from crawler.spiders.site import SiteSpider
    from pipeline.lock import stage_lock
    from pipeline.rawstore import RawStore

    root = DataRoot.at(task.root)
    job = task.seeds.job
    if task.cfg.crawl.redis_url:
        _check_redis(task.cfg.crawl.redis_url)
    # the job's lock first: a second crawl of the same seeds is told that one is running
    with stage_lock(JobDir(root, job).path, STAGE), stage_lock(root.raw, raw_lock_name(job)):
        with RawStore(root) as store:
            store.remove_orphan_temps()
        session = open_session(task)
        session.report = report
        session.writer_process = writer_process
        process = CrawlerProcess(scrapy_settings(task, session))
        quiet_scrapy_logger(task.log_level)  # after CrawlerProcess: it sets the level
        crawler = process.create_crawler(SiteSpider)
        process.crawl(crawler, session=session)
        collect_garbage_less_often()
        process.start()
        if session.disk_full is not None:  # stopped for it (DiskGuard): resumable later
            if session.result is None:
                session.finish("disk_full", crawler.stats.get_stats() if crawler.stats else {},
                               clean=False)
            raise session.disk_full
        if session.writer_stopped is not None:  # the pipeline stopped the crawl for it
            raise EnvironmentProblem(f"the crawl stopped: {session.writer_stopped}; the same "
                                     "command resumes it")
        if session.result is None:  # Scrapy did not close the spider: forced stop, or no start
            stats = session.finish("killed", crawler.stats.get_stats() if crawler.stats else {},
                                   clean=False)
            if process.bootstrap_failed:
                raise RuntimeError("the crawl could not start (see the errors logged above)")
            return stats
        return session.result


def _check_redis(url: str) -> None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5)
        client.ping()
        client.close()
    except (redis.RedisError, OSError) as e:
        raise EnvironmentProblem(f"crawl.redis_url {url}: cannot reach Redis ({e}); start it, "
                                 "or unset crawl.redis_url to crawl with a local frontier"
                                 ) from None


# --- start-up -----------------------------------------------------------------------------


class _CallerOnly:
    """The `inspect` that Scrapy's create_deprecated_class sees: `stack()[1]` is the frame
    that called it, `getmodule` that frame's module; the rest is `inspect` itself."""

    def __init__(self, caller: Any) -> None:
        self._caller = caller

    def stack(self) -> list[Any]:
        return [None, (self._caller,)]

    @staticmethod
    def getmodule(frame: Any) -> Any:
        return sys.modules.get(frame.f_globals.get("__name__", ""))

    def __getattr__(self, name: str) -> Any:
        import inspect

        return getattr(inspect, name)


def find_callers_cheaply() -> None:
    """Scrapy's create_deprecated_class names the module of each deprecated alias it makes by
    calling inspect.stack(), which reads the source of every frame on the stack to find all
    their modules: 65 ms of every crawl process's start-up, for the five aliases its HTTP and
    TLS modules make as they are imported. The caller's frame, which is all it uses, is here
    without that. Call before Scrapy's downloader modules are imported."""
    import inspect

    from scrapy.utils import deprecate

    make = deprecate.create_deprecated_class
    if getattr(make, "finds_callers_cheaply", False):
        return

    def create_deprecated_class(*args: Any, **kwargs: Any) -> Any:
        deprecate.inspect = _CallerOnly(sys._getframe(1))  # type: ignore[attr-defined]
        try:
            return make(*args, **kwargs)
        finally:
            deprecate.inspect = inspect  # type: ignore[attr-defined]

    create_deprecated_class.finds_callers_cheaply = True  # type: ignore[attr-defined]
    deprecate.create_deprecated_class = create_deprecated_class


def collect_garbage_less_often() -> None:
    """Every request and response makes short-lived Deferreds, coroutines and Failures, and
    at CPython's threshold (a young collection every 700 allocations, its first full one
    after ten of those) the collector ran most of the time, through the modules and objects
    of start-up too: those are set aside (gc.freeze), and a collection waits for 20,000
    allocations. Cycles are still collected: a long crawl's memory stays bounded. 500 pages
    of bench/crawl.py's docs and dense sites took 2.4% and 3.7% less time (medians of 6 and
    4 interleaved runs)."""
    import gc

    gc.freeze()
    gc.set_threshold(GC_YOUNG, 20, 100)


# --- logging --------------------------------------------------------------------------------


class _QuietLibraries(logging.Filter):
    """Scrapy resets its loggers to DEBUG when it starts, so filter at our handler instead."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(LIBRARY_LOGGERS):
            return True
        if record.exc_info and record.exc_info[1] is not None and \
                disk_full_error(record.exc_info[1]) is not None:
            return False  # each failed write's traceback: DiskGuard reports the cause once
        return record.levelno >= self.level


def setup_logging(level: int) -> None:
    """The crawl process's only logging set-up: lines on stderr (the parent's terminal) at the
    parent's level, the libraries quiet unless asked (-v)."""
    from crawler.settings import scrapy_log_level

    logging.basicConfig(level=level, format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr, force=True)
    quiet = logging.getLevelName(scrapy_log_level(level))
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietLibraries(quiet))


def quiet_scrapy_logger(level: int) -> None:
    """Scrapy sets its logger to DEBUG when a CrawlerProcess is made, so each page's debug
    lines ("Crawled (200)", "Scraped from") became records for our handler to drop; at the
    level our handler lets through they are not made at all (no line shown or lost)."""
    from crawler.settings import scrapy_log_level

    logging.getLogger("scrapy").setLevel(scrapy_log_level(level))


# --- the process ----------------------------------------------------------------------------


def child_main(argv: Sequence[str] | None = None) -> int:
    """Entry of the crawl process (`python -m crawler.child FD`): the task comes pickled on
    stdin, progress and the result go back as messages on file descriptor FD."""
    import pickle

    argv = sys.argv[1:] if argv is None else argv
    conn = Connection(int(argv[0]), readable=False, writable=True)
    task: CrawlTask = pickle.load(sys.stdin.buffer)
    setup_logging(task.log_level)

    def report(snapshot: dict[str, Any]) -> None:
        conn.send((PROGRESS, snapshot))

    try:
        stats = run_in_this_process(task, report)
        _tell_parent(conn, (DONE, stats.to_dict()))
        return 0
    except tuple(RAISED_IN_PARENT.values()) as e:
        _tell_parent(conn, (ERROR, type(e).__name__, str(e)))
        return 1
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises
        full = disk_full_error(e, task.root)
        if full is not None:
            _tell_parent(conn, (ERROR, "DiskFull", str(full)))
        else:
            _tell_parent(conn, (ERROR, type(e).__name__, "".join(traceback.format_exception(e))))
        return 1
    finally:
        conn.close()


def _tell_parent(conn: Connection, message: tuple[Any, ...]) -> None:
    """Send the result; a parent that was killed is told nothing (no traceback on its
    terminal): the job's state on disk says where the crawl stopped."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.send(message)


def exit_now(code: int) -> None:
    """End the process without the interpreter's tear-down, as multiprocessing ends its
    children: everything that matters is written, fsynced and closed by now, and tearing
    down Scrapy's and Twisted's modules and objects took 0.2 s of every crawl's time."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(child_main())
