"""Run a crawl: `crawl()` (library), `cli` (`cllm crawl`), `legacy_main` (`cllm_crawler`).

Every crawl runs in a fresh child process (a new interpreter, `python -m crawler.child`):
Twisted's reactor cannot be restarted, and the CLI and Prefect flows call `crawl()` many times
in one process. The child
sends progress snapshots and, at the end, its StageStats through a pipe. It runs in its own
process group, so Ctrl-C reaches only the parent, which forwards it once: the first SIGINT or
SIGTERM stops the crawl gracefully (Scrapy saves its queue; the job resumes next time), a
second one forces it. If the parent dies, the child notices and stops gracefully too.

This module imports no Scrapy at import time: the parent never needs it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from crawler.job import FetchedLog, JobDir, job_id
from crawler.urls import Normalizer
from pipeline.atomic import atomic_write_text
from pipeline.config import Config, CrawlConfig, load_config, save_resolved
from pipeline.errors import ConfigError, DiskFull, EnvironmentProblem, disk_full_error
from pipeline.failures import FailureLog
from pipeline.layout import DEFAULT_ROOT, DataRoot
from pipeline.lock import LockedError
from pipeline.progress import Progress, StageStats
from pipeline.records import Failure

log = logging.getLogger(__name__)

STAGE = "crawl"
POLL_S = 0.2
INTERRUPT_REASONS = frozenset({"shutdown"})
_RAISED_IN_PARENT: dict[str, type[Exception]] = {
    "LockedError": LockedError, "ConfigError": ConfigError,
    "EnvironmentProblem": EnvironmentProblem, "DiskFull": DiskFull,
}


@dataclass(frozen=True, slots=True)
class Seeds:
    start_urls: list[str]  # normalised, deduplicated, in the order given
    sitemaps: list[str]
    invalid: list[str]  # given URLs that are not http(s) URLs

    @property
    def job(self) -> str:
        return job_id(self.start_urls + [f"sitemap:{u}" for u in self.sitemaps])


def make_seeds(urls: Sequence[str], cfg: CrawlConfig) -> Seeds:
    normalize = Normalizer.from_config(cfg)
    start: list[str] = []
    sitemaps: list[str] = []
    invalid: list[str] = []
    for given, out in [(u, start) for u in urls] + [(u, sitemaps) for u in cfg.sitemaps]:
        url = normalize(given)
        if url is None:
            invalid.append(given)
        elif url not in out:
            out.append(url)
    return Seeds(start, sitemaps, invalid)


def read_url_file(path: Path) -> list[str]:
    """URLs from a file, one a line; blank lines and # comments are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--url-file {path}: cannot read ({e.strerror})") from None
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def export_urls(root: DataRoot, seeds: Seeds, path: Path) -> int:
    """Write the URLs kept by the job's current generation to `path`, sorted; returns how many."""
    fetched = JobDir(root, seeds.job).fetched_log
    urls = sorted(FetchedLog(fetched).urls) if fetched.is_file() else []
    atomic_write_text(path, "".join(u + "\n" for u in urls))
    return len(urls)


# --- the child process --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CrawlTask:
    """Everything the child needs (pickled across the spawn)."""

    cfg: Config
    root: str
    start_urls: list[str]
    sitemaps: list[str]
    restart: bool = False
    log_level: int = logging.WARNING
    parent_pid: int = 0


def open_session(task: CrawlTask) -> Any:
    """The session of a crawl run, with its job opened (call inside the job's lock)."""
    from crawler.session import CrawlSession
    from crawler.urls import UrlPolicy

    cfg = task.cfg.crawl
    root = DataRoot.at(task.root)
    seeds = Seeds(task.start_urls, task.sitemaps, [])
    jobdir = JobDir(root, seeds.job)
    state, resumed = jobdir.begin(task.start_urls, task.sitemaps, task.restart)
    normalize = Normalizer.from_config(cfg)
    policy = UrlPolicy.from_config(cfg, task.start_urls + task.sitemaps, normalize)
    redis_key = f"cllm:{seeds.job}" if cfg.redis_url else ""
    session = CrawlSession(cfg, root, jobdir, state, resumed, normalize, policy, redis_key)
    session.parent_pid = task.parent_pid
    if resumed:
        log.info("crawl: resuming job %s (generation %d, %d pages kept so far)", seeds.job,
                 state.generation, len(session.fetched))
    return session


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
    return s


def run_in_this_process(task: CrawlTask,
                        report: Callable[[dict[str, Any]], None] | None = None) -> StageStats:
    """The crawl itself, blocking until Scrapy stops. Runs Twisted: call it once per process."""
    from scrapy.crawler import CrawlerProcess

    from crawler.spiders.site import SiteSpider
    from pipeline.lock import stage_lock
    from pipeline.rawstore import RawStore

    root = DataRoot.at(task.root)
    jobdir = JobDir(root, Seeds(task.start_urls, task.sitemaps, []).job)
    if task.cfg.crawl.redis_url:
        _check_redis(task.cfg.crawl.redis_url)
    with stage_lock(jobdir.path, STAGE):
        with RawStore(root) as store:
            store.remove_orphan_temps()
        session = open_session(task)
        session.report = report
        process = CrawlerProcess(scrapy_settings(task, session))
        crawler = process.create_crawler(SiteSpider)
        process.crawl(crawler, session=session)
        process.start()
        if session.disk_full is not None:  # stopped for it (DiskGuard): resumable later
            if session.result is None:
                session.finish("disk_full", crawler.stats.get_stats() if crawler.stats else {},
                               clean=False)
            raise session.disk_full
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


LIBRARY_LOGGERS = ("scrapy", "twisted", "protego", "py.warnings", "asyncio", "filelock")


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


def _setup_child_logging(level: int) -> None:
    from crawler.settings import scrapy_log_level

    logging.basicConfig(level=level, format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr, force=True)
    quiet = logging.getLevelName(scrapy_log_level(level))
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietLibraries(quiet))


def child_main(argv: Sequence[str] | None = None) -> int:
    """Entry of the crawl process (`python -m crawler.child FD`): the task comes pickled on
    stdin, progress and the result go back as messages on file descriptor FD."""
    import pickle

    argv = sys.argv[1:] if argv is None else argv
    conn = Connection(int(argv[0]), readable=False, writable=True)
    task: CrawlTask = pickle.load(sys.stdin.buffer)
    _setup_child_logging(task.log_level)

    def report(snapshot: dict[str, Any]) -> None:
        conn.send(("progress", snapshot))

    try:
        stats = run_in_this_process(task, report)
        _tell_parent(conn, ("done", stats.to_dict()))
        return 0
    except tuple(_RAISED_IN_PARENT.values()) as e:
        _tell_parent(conn, ("error", type(e).__name__, str(e)))
        return 1
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises
        full = disk_full_error(e, task.root)
        if full is not None:
            _tell_parent(conn, ("error", "DiskFull", str(full)))
        else:
            _tell_parent(conn, ("error", type(e).__name__,
                                "".join(traceback.format_exception(e))))
        return 1
    finally:
        conn.close()


def _tell_parent(conn: Connection, message: tuple[Any, ...]) -> None:
    """Send the result; a parent that was killed is told nothing (no traceback on its
    terminal): the job's state on disk says where the crawl stopped."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.send(message)


# --- the parent ---------------------------------------------------------------------------


def stats_from_dict(data: dict[str, Any]) -> StageStats:
    stats = StageStats(stage=data["stage"], seen=data["seen"], kept=data["kept"],
                       dropped=Counter(data["dropped"]), failed=Counter(data["failed"]),
                       skipped=Counter(data["skipped"]), bytes=data["bytes"],
                       units=data["units"], unit_name=data["unit_name"],
                       extra=dict(data["extra"]),
                       failures=[Failure.from_dict(f) for f in data["failures"]])
    stats.seconds = data["seconds"]
    return stats


def _spawn_child(task: CrawlTask, write_fd: int) -> subprocess.Popen[bytes]:
    """Start `python -m crawler.child` in its own process group and hand it the task.

    A fresh interpreter rather than multiprocessing: nothing of the caller's __main__ is
    re-imported (scripts, notebooks and Prefect workers call crawl() too).
    """
    import pickle

    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "crawler.child", str(write_fd)],
                            stdin=subprocess.PIPE, pass_fds=(write_fd,), env=env,
                            process_group=0)
    assert proc.stdin is not None
    try:
        proc.stdin.write(pickle.dumps(task))
        proc.stdin.close()
    except BrokenPipeError:
        pass  # it died at once; the relay sees the closed pipe and reports the exit code
    return proc


@contextlib.contextmanager
def _forwarding_signals() -> Iterator[tuple[list[int], Callable[[subprocess.Popen[bytes]], None]]]:
    """While the child runs, SIGINT/SIGTERM to us are passed on to it (not acted on here).

    The child is in its own process group, so a Ctrl-C reaches it once, through us.
    """
    received: list[int] = []
    child: list[subprocess.Popen[bytes]] = []

    def set_child(proc: subprocess.Popen[bytes]) -> None:
        child.append(proc)

    if threading.current_thread() is not threading.main_thread():
        yield received, set_child  # handlers can only be set from the main thread
        return

    def forward(signum: int, _frame: Any) -> None:
        received.append(signum)
        if child and child[0].poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child[0].send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received, set_child
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _relay(conn: Connection, proc: subprocess.Popen[bytes], live: StageStats, bar: Progress
           ) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    """Read the child's messages until it closes the pipe; returns (stats dict, error)."""
    result: dict[str, Any] | None = None
    error: tuple[str, str] | None = None
    stopping = False
    while True:
        try:
            if not conn.poll(POLL_S):
                if proc.poll() is not None and not conn.poll(0):
                    break
                if not stopping and not threading.main_thread().is_alive():
                    # called from a worker thread of an interpreter that is exiting: stop the
                    # crawl gracefully (resumable) instead of keeping the exit waiting on it
                    stopping = True
                    proc.send_signal(signal.SIGTERM)
                continue
            message = conn.recv()
        except (EOFError, OSError):
            break
        except InterruptedError:
            continue
        if message[0] == "progress":
            snap = message[1]
            live.seen, live.kept = snap["seen"], snap["kept"]
            bar.update(snap["units"] - bar.count, stored=snap["kept"], skipped=snap["skipped"],
                       refused=snap["refused"], failed=snap["failed"])
        elif message[0] == "done":
            result = message[1]
        elif message[0] == "error":
            error = (message[1], message[2])
    return result, error


def crawl(urls: list[str], cfg: Config, root: DataRoot, progress: bool = True, *,
          restart: bool = False) -> StageStats:
    """Crawl from `urls` (and `crawl.sitemaps`) into the raw store; returns the run's stats.

    A crawl of the same seeds that was stopped or killed is resumed; one that finished is
    crawled again with conditional requests. `restart` drops a stopped crawl's frontier.
    """
    seeds = make_seeds(urls, cfg.crawl)
    if not seeds.start_urls and not seeds.sitemaps:
        given = ", ".join(map(repr, seeds.invalid)) or "none"
        raise ConfigError(f"no http(s) start URL to crawl (given: {given}); pass URLs, "
                          "--url-file, or set sources.urls / crawl.sitemaps")
    root.raw.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, root.raw, STAGE)
    task = CrawlTask(cfg=cfg, root=str(root.path), start_urls=seeds.start_urls,
                     sitemaps=seeds.sitemaps, restart=restart,
                     log_level=logging.getLogger().getEffectiveLevel(), parent_pid=os.getpid())
    started = time.monotonic()
    live = StageStats(stage=STAGE, unit_name="pages")
    read_fd, write_fd = os.pipe()
    with _forwarding_signals() as (interrupts, set_child):
        try:
            proc = _spawn_child(task, write_fd)
        finally:
            os.close(write_fd)
        set_child(proc)
        with Connection(read_fd, readable=True, writable=False) as conn, \
                Progress(live, total=cfg.crawl.max_pages, unit="page", enabled=progress) as bar:
            result, error = _relay(conn, proc, live, bar)
        proc.wait()
    if error is not None:
        raise _RAISED_IN_PARENT.get(error[0], RuntimeError)(
            error[1] if error[0] in _RAISED_IN_PARENT else f"crawl process failed: {error[1]}")
    if result is None:
        raise RuntimeError(f"crawl process died (exit code {proc.returncode}) before reporting; "
                           "run the same crawl again to resume it")
    stats = stats_from_dict(result)
    stats.seconds = time.monotonic() - started  # end to end, child start-up included
    stats.extra["interrupted"] = bool(interrupts) or stats.extra.get("close_reason") in \
        INTERRUPT_REASONS
    _record_invalid(seeds, stats, root)
    log.debug("%s", stats.summary())
    return stats


def _record_invalid(seeds: Seeds, stats: StageStats, root: DataRoot) -> None:
    failures = [Failure(source=u, stage=STAGE, error="bad_url",
                        message="not an http(s) URL") for u in seeds.invalid]
    for f in failures:
        stats.fail(f)
    FailureLog(root.raw_failures).record(failures)


def standalone_session(urls: list[str]) -> Any:
    """A session for `scrapy crawl site -a urls=...` (config from ./cllm.toml, root from
    $CLLM_ROOT); the job is not locked against a concurrent `cllm crawl` of the same URLs."""
    cfg = load_config()
    seeds = make_seeds(urls, cfg.crawl)
    task = CrawlTask(cfg=cfg, root=os.environ.get("CLLM_ROOT", DEFAULT_ROOT),
                     start_urls=seeds.start_urls, sitemaps=seeds.sitemaps)
    return open_session(task)


# --- command lines ------------------------------------------------------------------------


def _report(stats: StageStats, strict: bool) -> int:
    from pipeline.cli import EXIT_INTERRUPTED, report_stats

    code = report_stats(stats, strict)
    if stats.extra.get("interrupted"):
        print(f"crawl stopped; run the same command again to resume job {stats.extra['job']}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def cli(args: argparse.Namespace, ctx: Any) -> int:
    """`cllm crawl [URL...] [--url-file F] [--export-urls F] [--restart]`."""
    urls = list(args.urls)
    if args.url_file:
        urls += read_url_file(Path(args.url_file))
    if not urls:
        urls = list(ctx.cfg.sources.urls)
    stats = crawl(urls, ctx.cfg, ctx.root, progress=ctx.progress,
                  restart=getattr(args, "restart", False))
    if args.export_urls:
        n = export_urls(ctx.root, make_seeds(urls, ctx.cfg.crawl), Path(args.export_urls))
        print(f"wrote {n} URLs to {args.export_urls}", file=sys.stderr)
    return _report(stats, ctx.strict)


def legacy_main(argv: Sequence[str] | None = None) -> int:
    """`cllm_crawler --start-url URL [--data-dir DIR] [--max-pages N]` (the original tool)."""
    from pipeline.cli import Failed, guarded

    p = argparse.ArgumentParser(prog="cllm_crawler",
                                description="Crawl web sites into the CLLM raw store.")
    p.add_argument("--start-url", action="append", required=True, metavar="URL",
                   help="where to start (repeatable)")
    p.add_argument("--data-dir", default=os.environ.get("CLLM_ROOT", DEFAULT_ROOT),
                   metavar="DIR", help="data root (default ./cllm-data)")
    p.add_argument("--max-pages", type=int, help="page budget")
    p.add_argument("--max-depth", type=int, help="link depth limit")
    p.add_argument("--allow-private", action="store_true",
                   help="allow loopback/private addresses (local sites)")
    p.add_argument("--config", metavar="FILE", help="cllm.toml to read")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname).1s %(message)s", datefmt="%H:%M:%S")
    flags: dict[str, Any] = {}
    if args.max_pages is not None:
        flags["max_pages"] = args.max_pages
    if args.max_depth is not None:
        flags["max_depth"] = args.max_depth
    if args.allow_private:
        flags["allow_private"] = True
    def run() -> StageStats:
        cfg = load_config(Path(args.config) if args.config else None,
                          extra={"crawl": flags} if flags else None)
        return crawl(args.start_url, cfg, DataRoot.at(args.data_dir), progress=not args.quiet)

    try:
        stats = guarded("cllm_crawler", run, lambda: args.data_dir)
    except Failed as e:
        return e.code
    return _report(stats, strict=False)
