"""Extensions: politeness per host (AutoThrottle, robots.txt Crawl-delay) and the link to
the parent process (progress snapshots; a graceful stop when the parent is gone)."""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.task import LoopingCall

from crawler.netguard import is_loopback_host

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.crawler import Crawler
    from scrapy.http import Response

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 0.5


class PoliteThrottle:
    """Per-host delays: at least `crawl.delay_s` and the host's robots.txt Crawl-delay, and
    with `crawl.autothrottle` Scrapy's AutoThrottle policy (delay follows the server's
    latency). Loopback hosts are this machine: they get no delay."""

    def __init__(self, crawler: Crawler) -> None:
        s = crawler.settings
        self.crawler = crawler
        self.auto = s.getbool("AUTOTHROTTLE_ENABLED")
        self.target = max(s.getfloat("AUTOTHROTTLE_TARGET_CONCURRENCY"), 1e-3)
        self.min_delay = s.getfloat("DOWNLOAD_DELAY")
        self.max_delay = s.getfloat("AUTOTHROTTLE_MAX_DELAY")
        self.start_delay = max(self.min_delay, s.getfloat("AUTOTHROTTLE_START_DELAY"))
        self.agent = s.get("ROBOTSTXT_USER_AGENT") or s.get("USER_AGENT")
        self.floors: dict[str, float] = {}  # host -> Crawl-delay it asked for
        crawler.signals.connect(self._spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self._response_downloaded, signal=signals.response_downloaded)
        crawler.signals.connect(self._robots_parsed, signal=signals.robots_parsed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PoliteThrottle:
        return cls(crawler)

    def _slots(self) -> dict[str, Any]:
        return self.crawler.engine.downloader.slots

    def _spider_opened(self, spider: Spider) -> None:
        if self.auto:
            self.crawler.engine.downloader._delay = self.start_delay

    def _robots_parsed(self, robotparser: Any, request: Request) -> None:
        crawl_delay = getattr(robotparser, "crawl_delay", None)
        delay = crawl_delay(self.agent) if crawl_delay else None
        host = urlparse_cached(request).hostname or ""
        if not delay or is_loopback_host(host):
            return
        delay = min(float(delay), self.max_delay)
        self.floors[host] = delay
        slot = self._slots().get(host)
        if slot is not None:
            slot.delay = max(slot.delay, delay)
        log.info("crawl: %s asks for a Crawl-delay of %.1f s", host, delay)

    def _response_downloaded(self, response: Response, request: Request, spider: Spider) -> None:
        key = request.meta.get("download_slot")
        slot = self._slots().get(key) if key is not None else None
        if slot is None:
            return
        if is_loopback_host(key):
            slot.delay = 0.0
            return
        latency = request.meta.get("download_latency")
        if self.auto and latency is not None:
            slot.delay = self._adjusted(slot.delay, latency, response.status)
        slot.delay = max(slot.delay, self.min_delay, self.floors.get(key, 0.0))

    def _adjusted(self, delay: float, latency: float, status: int) -> float:
        # Scrapy's AutoThrottle policy: move halfway towards latency/target concurrency, never
        # lower on error responses (they are small and fast, and would speed us up)
        target = latency / self.target
        new = min(max(target, (delay + target) / 2.0), self.max_delay)
        return delay if status != 200 and new <= delay else new


class CrawlReporter:
    """Sends the session's counts to the parent every REPORT_INTERVAL_S, and stops the crawl
    gracefully (as SIGTERM would: the job stays resumable) when the parent has died."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self._loop: LoopingCall | None = None
        self._stopping = False
        crawler.signals.connect(self._spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self._spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlReporter:
        return cls(crawler)

    def _spider_opened(self, spider: Spider) -> None:
        self._loop = LoopingCall(self._tick, spider)
        self._loop.start(REPORT_INTERVAL_S, now=False)

    def _spider_closed(self, spider: Spider) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._tick(spider)

    def _tick(self, spider: Spider) -> None:
        session = getattr(spider, "session", None)
        if session is None:
            return
        parent_gone = bool(session.parent_pid) and os.getppid() != session.parent_pid
        if session.report is not None and not parent_gone:
            try:
                session.report(session.snapshot())
            except (BrokenPipeError, EOFError, OSError):
                parent_gone = True
        if parent_gone and not self._stopping:
            self._stopping = True
            log.warning("crawl: the parent process is gone; stopping (the job can be resumed)")
            os.kill(os.getpid(), signal.SIGTERM)


class DiskGuard:
    """Stops the crawl when the disk is full, instead of letting every later page fail the
    same way (Scrapy logs an item or spider error and goes on). ENOSPC while storing a page,
    listing it or logging a refusal closes the spider with reason "disk_full"; the job is left
    as a killed one is (resumed from the seeds, stored pages read back) and the crawl
    reports a DiskFull to the parent."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        crawler.signals.connect(self._item_error, signal=signals.item_error)
        crawler.signals.connect(self._spider_error, signal=signals.spider_error)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DiskGuard:
        return cls(crawler)

    def _item_error(self, item: Any, response: Any, spider: Spider, failure: Any) -> None:
        self.check(failure.value)

    def _spider_error(self, failure: Any, response: Any, spider: Spider) -> None:
        self.check(failure.value)

    def check(self, exc: BaseException) -> bool:
        """Stop the crawl if `exc` means the disk is full; returns whether it did."""
        from scrapy.utils.defer import deferred_from_coro

        from pipeline.errors import disk_full_error

        session = getattr(self.crawler.spider, "session", None)
        if session is None:
            return False
        full = disk_full_error(exc, str(session.root.path))
        if full is None:
            return False
        if session.disk_full is None:
            session.disk_full = full
            log.error("crawl: %s", full)
            deferred_from_coro(self.crawler.engine.close_spider_async(reason="disk_full"))
        return True
