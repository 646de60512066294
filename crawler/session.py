"""The state of one crawl run inside the crawling process, shared by spider, middlewares,
pipeline and extensions (they reach it as `crawler.spider.session`).

It owns the decisions that are counted: every refusal (one per distinct URL, with its
reason, also written to the job's refused.jsonl), every failure (a Failure row in
raw/failures.jsonl at the end), every kept page, and the page budget and per-domain cap
(crawler/budget.py), which every outcome of a page is reported to.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any

from crawler.budget import PageBudget
from crawler.errors import FetchError
from crawler.job import FetchedLog, JobDir, JobState, PlaceLog
from crawler.revisit import PageNote, PageNotes, is_due
from crawler.task import STAGE, CrawlTask, make_seeds
from crawler.urls import Normalizer, Reason, UrlPolicy
from pipeline.config import CrawlConfig
from pipeline.errors import DiskFull, disk_full_error
from pipeline.failures import FailureLog
from pipeline.layout import DataRoot
from pipeline.rawstore import Blob, RawStore
from pipeline.records import Failure, SourceRow
from pipeline.stats import StageStats

if TYPE_CHECKING:
    from crawler.writer import StoreWriter

log = logging.getLogger(__name__)

DONE_STATUSES = frozenset({"stored", "unchanged", "duplicate"})
KEPT_STATUS_SKIPS = {"unchanged": "unchanged", "duplicate": "duplicate_content"}
# outcomes that end a kept page's place: the site says it is gone, or the config (domains,
# patterns, blocklist, file types, depth) or the page itself (noindex) now refuses it. Not
# those that may pass (5xx, timeouts, robots.txt unreachable, DNS), nor the budget itself.
RELEASING = frozenset({
    "http_404", "http_410", Reason.SCHEME, Reason.BAD_URL, Reason.OFFSITE,
    Reason.DENIED_DOMAIN, Reason.EXCLUDED, Reason.BLOCKLISTED, Reason.FILE_TYPE,
    Reason.UNSUPPORTED, Reason.URL_TOO_LONG, Reason.TRAP, Reason.MAX_DEPTH, Reason.NOINDEX,
})


@dataclass(frozen=True, slots=True)
class Known:
    """A URL's row in the raw store and the blob holding its last content."""

    row: SourceRow
    blob: Blob

    def read(self, root: DataRoot) -> bytes | None:
        try:
            return root.blob(self.blob.sha256, self.blob.ext).read_bytes()
        except OSError:
            return None


class CrawlSession:
    def __init__(self, cfg: CrawlConfig, root: DataRoot, jobdir: JobDir, state: JobState,
                 resumed: bool, normalize: Normalizer, policy: UrlPolicy,
                 redis_key: str = "") -> None:
        self.cfg = cfg
        self.root = root
        self.jobdir = jobdir
        self.state = state
        self.resumed = resumed
        self.normalize = normalize
        self.policy = policy
        self.redis_key = redis_key
        self.kinds = frozenset(cfg.file_types)
        self.seeds = frozenset(state.start_urls) | frozenset(state.sitemaps)
        self.max_pages = cfg.max_pages
        self.stats = StageStats(stage=STAGE, unit_name="pages")
        self.failures: list[Failure] = []
        self.succeeded: list[str] = []
        self.close_reason = ""
        self.first_request_at = 0.0
        self.responses = 0  # from the network, robots.txt and sitemaps included
        self.report: Callable[[dict[str, Any]], None] | None = None  # progress to the parent
        # the raw store's writer process, started by the crawl process (crawler.child), and
        # the pipeline's end of it, which scans pages too (crawler.writer.StoreWriter)
        self.writer_process: subprocess.Popen[bytes] | None = None
        self.writer: StoreWriter | None = None
        self.parent_pid = 0  # when set, the crawl stops if this process is no longer our parent
        self.result: StageStats | None = None  # set by finish()
        self.disk_full: DiskFull | None = None  # set when a write failed for lack of space
        self.writer_stopped: Exception | None = None  # set when the raw store's writer died
        self.fetched = FetchedLog(jobdir.fetched_log)
        per_host = cfg.max_pages_per_domain or cfg.max_pages
        self.budget = PageBudget(PlaceLog(jobdir.pages_log, cfg.max_pages, per_host),
                                 cfg.max_pages, per_host, fetched=self.fetched.urls,
                                 shared=bool(redis_key))
        self.changed = 0  # kept pages whose content changed: stored again in their place
        self.reader = RawStore(root)
        # a first crawl into a data root knows no page: no lookup per request (each was a
        # query on the crawl's one thread); a page this run stores is not asked for again
        self.store_was_empty = not self.reader.has_sources()
        self.notes = PageNotes(jobdir.notes_db)
        self.not_due: set[str] = set()  # kept pages this run leaves alone (set by _revisits)
        self.revisits = self._revisits()
        # set by the spider: sends the links waiting for room that may go now, refuses the
        # rest once none is left
        self.send_waiting: Callable[[], None] | None = None
        self.robots: dict[str, tuple[str, str]] = {}  # host:port -> (verdict, why): robots.py
        self._refused: set[str] = set()
        self._refused_fh: IO[str] = open(jobdir.refused_log, "a", encoding="utf-8")  # noqa: SIM115

    # --- refusals and failures --------------------------------------------------------

    def refuse(self, url: str, reason: str, detail: str = "", *, referrer: str = "",
               depth: int | None = None, seed: bool = False) -> None:
        """Count a refused URL once; a refused start URL is a failure (the user asked for it)."""
        if seed:
            self.fail(FetchError(url, reason, detail or reason))
            return
        self._settle(url, reason)
        if url in self._refused:
            return
        self._refused.add(url)
        self.stats.drop(reason)
        row = {"url": url, "reason": reason, "detail": detail, "referrer": referrer,
               "depth": depth}
        self._refused_fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def fail(self, err: FetchError) -> None:
        failure = Failure(source=err.source, stage=STAGE, error=err.kind, message=err.reason)
        self.stats.fail(failure)
        self.failures.append(failure)
        self._settle(err.source, err.kind)
        log.info("crawl: %s failed [%s]: %s", err.source, err.kind, err.reason)

    def _settle(self, url: str, outcome: str) -> None:
        """A page that will not be kept in this run: its reservation (if any) is free for a
        waiting link, and its place (if any) is given up when the outcome says so."""
        if self.budget.settle(url, release=outcome in RELEASING) and self.send_waiting is not None:
            self.send_waiting()

    # --- kept pages, budget -----------------------------------------------------------

    def admission(self, url: str) -> str | None:
        """Why `url` could not be kept if fetched now (page budget, per-domain cap), or None."""
        return self.budget.refusal(url)

    def take_place(self, url: str) -> str | None:
        """Place `url` in the budget before it is stored (listed first: see FetchedLog);
        returns why it may not be kept, or None."""
        refused = self.budget.take(url)
        if refused is None:
            self.fetched.add(url)
            if self.budget.full and self.budget.waiting and self.send_waiting is not None:
                self.send_waiting()  # the links still waiting are refused now
        return refused

    def kept(self, source: str, status: str, size: int, *, changed: bool = False) -> None:
        """A page taken from the network and kept: stored, unchanged or duplicate content;
        `changed`: new content of a URL the raw store held other content for."""
        if status == "stored":
            self.stats.keep()
            self.stats.bytes += size
            self.changed += changed
        else:
            self.stats.skip(KEPT_STATUS_SKIPS.get(status, status))
        self.stats.units += 1
        self.succeeded.append(source)

    def served_from_store(self, source: str) -> None:
        self.budget.checked(source)
        self.stats.skip("already_fetched")
        self.succeeded.append(source)

    def left_alone(self, source: str) -> None:
        """A kept page not due for a check (crawler/revisit.py): not asked for, nor followed."""
        self.budget.checked(source)
        self.stats.skip("not_due")

    # --- the raw store, read side (the pipeline writes from its own thread) -------------

    def _revisits(self) -> dict[str, tuple[int, str]]:
        """The kept pages the spider asks for again by itself: url -> (depth, referrer) of
        their rows, oldest first; those not due yet go into `not_due`. A page placed but
        never stored (a kill between the two) has no depth to go by: links lead to it, as in
        the run that placed it."""
        out = {}
        fresh = {} if self.cfg.refresh else self.notes.fresh_s()
        now = time.time()
        rows = self.reader.get_sources(self.budget.held)
        for url in self.budget.held:
            row = rows.get(url)
            if row is not None and row.kind == "web" and row.depth is not None:
                out[url] = (row.depth, row.referrer)
                sha, fresh_s = fresh.get(url, ("", 0.0))  # what its content said, not older
                if self._may_wait(row, fresh_s if sha == row.sha256 else 0.0, now):
                    self.not_due.add(url)
        return out

    def _may_wait(self, row: SourceRow, fresh_s: float, now: float) -> bool:
        """Whether a kept page may go unchecked this run: not a seed, not kept already in
        this generation (a resumed run serves those from the store and follows them again),
        and checked lately (crawl.revisit_after_s, or as long as it said it stays fresh)."""
        if self.cfg.refresh or row.source in self.seeds or row.source in self.fetched:
            return False
        if row.status not in DONE_STATUSES:
            return False
        return not is_due(row.fetched_at, fresh_s, self.cfg.revisit_after_s, now)

    def known(self, source: str) -> Known | None:
        if self.store_was_empty:
            return None
        row = self.reader.get_source(source)
        if row is None or row.kind != "web" or row.status not in DONE_STATUSES or not row.sha256:
            return None
        blob = self.reader.get_blob(row.sha256)
        if blob is None or not self.root.blob(blob.sha256, blob.ext).is_file():
            return None
        return Known(row, blob)

    def note_of(self, known: Known) -> PageNote | None:
        """The notes of a page's stored content (its links, freshness), if they are of it."""
        note = self.notes.get(known.row.source)
        return note if note is not None and note.sha256 == known.blob.sha256 else None

    # --- progress and the end ---------------------------------------------------------

    def _note_disk_full(self, exc: Exception) -> None:
        """Keep a disk-full error for the end of the run; re-raise anything else."""
        full = disk_full_error(exc, str(self.root.path))
        if full is None:
            raise exc
        self.disk_full = self.disk_full or full

    def snapshot(self) -> dict[str, Any]:
        """The counts so far, for the parent's progress: the stats without their failures."""
        return replace(self.stats, failures=[]).to_dict()

    def crawl_seconds(self) -> float:
        if not self.first_request_at:
            return 0.0
        return time.monotonic() - self.first_request_at

    def finish(self, reason: str, scrapy_stats: dict[str, Any], clean: bool = True
               ) -> StageStats:
        """Record failures, close the job, return the run's statistics (once).

        `clean` is False when Scrapy did not close the spider (a forced stop): its queue
        files cannot be trusted, so the job stays "running" and resumes like a killed one.
        """
        if self.result is not None:
            return self.result
        self.close_reason = reason
        seconds = self.crawl_seconds()
        try:
            failure_log = FailureLog(self.root.raw_failures)
            failure_log.clear(STAGE, self.succeeded)
            failure_log.record(self.failures)
            # out of space or its writer gone, the job stays "running": the next run resumes
            # it as a killed one
            if clean and self.disk_full is None and self.writer_stopped is None:
                self.jobdir.end(self.state, reason)
        except Exception as e:
            self._note_disk_full(e)
        finally:
            for handle in (self._refused_fh, self.fetched, self.budget.places, self.reader,
                           self.notes):
                try:
                    handle.close()
                except Exception as e:  # noqa: BLE001 - a buffered write may fail at close
                    self._note_disk_full(e)
        stats = self.stats.finish()
        stats.extra.update({
            "job": self.jobdir.job,
            "generation": self.state.generation,
            "resumed": self.resumed,
            "close_reason": reason,
            "status": self.state.status,
            "crawl_seconds": round(seconds, 3),
            "pages_per_s": round(stats.units / seconds, 2) if seconds > 0 else 0.0,
            "responses": self.responses,
            "retries": int(scrapy_stats.get("retry/count", 0)),
            "refused_log": str(self.jobdir.refused_log),
            "kept_this_generation": len(self.fetched),
            **self.budget.figures(),
            "changed_pages": self.changed,
            "robots": dict(Counter(verdict for verdict, _ in self.robots.values())),
            "robots_problems": {host: why for host, (verdict, why) in self.robots.items()
                                if verdict != "parsed"},
        })
        self.result = stats
        return stats


def open_session(task: CrawlTask) -> CrawlSession:
    """The session of a crawl run, with its job opened (call inside the job's lock)."""
    cfg = task.cfg.crawl
    root = DataRoot.at(task.root)
    jobdir = JobDir(root, task.seeds.job)
    state, resumed = jobdir.begin(task.start_urls, task.sitemaps, task.restart)
    normalize = Normalizer.from_config(cfg)
    policy = UrlPolicy.from_config(cfg, task.start_urls + task.sitemaps, normalize)
    redis_key = f"cllm:{jobdir.job}" if cfg.redis_url else ""
    session = CrawlSession(cfg, root, jobdir, state, resumed, normalize, policy, redis_key)
    session.parent_pid = task.parent_pid
    if resumed:
        log.info("crawl: resuming job %s (generation %d, %d pages kept so far)", jobdir.job,
                 state.generation, len(session.fetched))
    return session


def standalone_session(urls: list[str]) -> CrawlSession:
    """A session for `scrapy crawl site -a urls=...` (config from ./cllm.toml, root from
    $CLLM_ROOT); the job is not locked against a concurrent `cllm crawl` of the same URLs."""
    from pipeline.config import load_config
    from pipeline.layout import DEFAULT_ROOT

    cfg = load_config()
    seeds = make_seeds(urls, cfg.crawl)
    task = CrawlTask(cfg=cfg, root=os.environ.get("CLLM_ROOT", DEFAULT_ROOT),
                     start_urls=seeds.start_urls, sitemaps=seeds.sitemaps)
    return open_session(task)
