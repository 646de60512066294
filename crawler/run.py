"""Run a crawl: `crawl()`, what `cllm crawl`, the flows and `cllm_crawler` call.

Every crawl runs in a fresh child process (a new interpreter, `python -m crawler.child`):
Twisted's reactor cannot be restarted, and the CLI and Prefect flows call `crawl()` many times
in one process. The child sends progress snapshots and, at the end, its StageStats through a
pipe. It runs in its own process group, so Ctrl-C reaches only the parent, which forwards it
once: the first SIGINT or SIGTERM stops the crawl gracefully (Scrapy saves its queue; the job
resumes next time), a second one forces it. If the parent dies, the child notices and stops
gracefully too.

This module is the parent's side only, and imports no Scrapy: the parent never needs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from crawler.job import FetchedLog, JobDir
from crawler.task import (
    DONE,
    ERROR,
    PROGRESS,
    RAISED_IN_PARENT,
    STAGE,
    CrawlTask,
    Seeds,
    make_seeds,
)
from pipeline.atomic import atomic_write_text
from pipeline.config import Config, save_resolved
from pipeline.errors import ConfigError
from pipeline.failures import FailureLog
from pipeline.layout import DataRoot
from pipeline.progress import Progress
from pipeline.records import Failure
from pipeline.stats import StageStats

log = logging.getLogger(__name__)

POLL_S = 0.2
INTERRUPT_REASONS = frozenset({"shutdown"})


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


def _console_level() -> int:
    """The level our console shows: the child writes its lines to our stderr (never to our
    log files), so it logs what a line on our stderr would be shown at. The root logger alone
    does not say it: a command with a log file sets it lower than its console's (`-q`)."""
    root = logging.getLogger()
    consoles = [h.level for h in root.handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    return max(root.getEffectiveLevel(), min(consoles, default=logging.NOTSET))


def _spawn_child(task: CrawlTask, write_fd: int) -> subprocess.Popen[bytes]:
    """Start `python -m crawler.child` in its own process group and hand it the task.

    A fresh interpreter rather than multiprocessing: nothing of the caller's __main__ is
    re-imported (scripts, notebooks and Prefect workers call crawl() too).
    """
    import pickle

    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    # -P: the folder the command runs in is not put first on the child's path, where a
    # crawler/ package of its own (a Scrapy project's, say) would be run instead of ours
    proc = subprocess.Popen([sys.executable, "-P", "-m", "crawler.child", str(write_fd)],
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
        if message[0] == PROGRESS:
            snap = StageStats.from_dict(message[1])
            live.seen, live.kept = snap.seen, snap.kept
            bar.update(snap.units - bar.count, stored=snap.kept,
                       skipped=sum(snap.skipped.values()), refused=sum(snap.dropped.values()),
                       failed=snap.n_failed)
        elif message[0] == DONE:
            result = message[1]
        elif message[0] == ERROR:
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
                     log_level=_console_level(), parent_pid=os.getpid())
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
        raise RAISED_IN_PARENT.get(error[0], RuntimeError)(
            error[1] if error[0] in RAISED_IN_PARENT else f"crawl process failed: {error[1]}")
    if result is None:
        raise RuntimeError(f"crawl process died (exit code {proc.returncode}) before reporting; "
                           "run the same crawl again to resume it")
    stats = StageStats.from_dict(result)
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
