"""Scale-out: a frontier shared by crawl workers on many machines, through Redis (scrapy-redis).

Set `crawl.redis_url` (or `cllm crawl --redis-url redis://host:6379/0 URL...`) on every
worker and give them the same start URLs: the request queue and the seen-set then live in
Redis under `cllm:<job>:*`, so each URL is fetched by one worker only, and workers may join
or leave at any time. Each worker stores what it fetches in its own data root (or a shared
one on a network file system); the raw stores merge by content hash.

A worker whose queue runs dry waits while another worker is still busy (it may add links),
and the last worker to finish deletes the job's keys, so the next crawl of the same seeds
starts a fresh generation (with conditional requests), as a local crawl does. A worker that
is stopped leaves the frontier in Redis for the others, or for its own restart.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import DontCloseSpider, NotConfigured
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.scheduler import Scheduler
from twisted.internet.task import LoopingCall

from crawler.fingerprint import url_fingerprint

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.crawler import Crawler

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
STALE_S = 30.0  # a worker silent this long is gone (killed): it no longer holds others back


def give_back(crawler: Crawler, request: Request) -> bool:
    """Return a request this worker will not fetch or keep (its page budget or per-domain cap
    is spent) to the shared queue, for another worker; False when there is no shared queue."""
    scheduler = getattr(getattr(crawler.engine, "_slot", None), "scheduler", None)
    if not isinstance(scheduler, RedisFrontierScheduler):
        return False
    scheduler.queue.push(request.replace(dont_filter=True))
    return True


class RedisFrontierDupeFilter(RFPDupeFilter):
    """scrapy-redis's shared seen-set, with our fingerprints (URLs are normalised already)."""

    def request_fingerprint(self, request: Request) -> str:
        return url_fingerprint(request.method, request.url, request.body).hex()


class RedisFrontierScheduler(Scheduler):
    """scrapy-redis's scheduler; the job's keys are removed by the last worker to finish."""

    def close(self, reason: str) -> None:
        workers = getattr(self.spider, "frontier_workers", None)
        if workers is not None:
            workers.leave()
            if reason == "finished" and not len(self.queue) and not workers.others():
                log.info("crawl: last worker done; removing the shared frontier %s",
                         self.queue.key.rsplit(":", 1)[0])
                self.flush()
        super().close(reason)


class Workers:
    """Who is crawling a job: a Redis hash of worker id -> {busy, at}."""

    def __init__(self, server: Any, key: str) -> None:
        self.server = server
        self.key = f"{key}:workers"
        self.me = f"{socket.gethostname()}:{os.getpid()}"
        self.busy = True
        self.left = False

    def beat(self, busy: bool | None = None) -> None:
        if busy is not None:
            self.busy = busy
        if self.left:
            return
        self.server.hset(self.key, self.me, json.dumps({"busy": self.busy, "at": time.time()}))

    def others(self, busy_only: bool = False) -> list[str]:
        now = time.time()
        out = []
        for worker, raw in self.server.hgetall(self.key).items():
            worker = worker.decode() if isinstance(worker, bytes) else worker
            if worker == self.me:
                continue
            state = json.loads(raw)
            if now - state["at"] < STALE_S and (state["busy"] or not busy_only):
                out.append(worker)
        return out

    def leave(self) -> None:
        self.left = True
        self.server.hdel(self.key, self.me)


class SharedFrontier:
    """Keeps this worker registered while it crawls, and open while others are busy."""

    def __init__(self, crawler: Crawler) -> None:
        if not crawler.settings.get("CLLM_REDIS_KEY"):
            raise NotConfigured
        self.crawler = crawler
        self.key = crawler.settings["CLLM_REDIS_KEY"]
        self.workers: Workers | None = None
        self._loop: LoopingCall | None = None
        crawler.signals.connect(self._opened, signal=signals.spider_opened)
        crawler.signals.connect(self._idle, signal=signals.spider_idle)
        crawler.signals.connect(self._busy, signal=signals.request_scheduled)
        crawler.signals.connect(self._closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SharedFrontier:
        return cls(crawler)

    def _opened(self, spider: Spider) -> None:
        scheduler = self.crawler.engine._slot.scheduler  # type: ignore[union-attr]
        self.workers = Workers(scheduler.server, self.key)
        spider.frontier_workers = self.workers  # type: ignore[attr-defined]
        self.workers.beat(busy=True)
        self._loop = LoopingCall(self.workers.beat)
        self._loop.start(HEARTBEAT_S, now=False)

    def _busy(self, request: Request, spider: Spider) -> None:
        if self.workers is not None and not self.workers.busy:
            self.workers.beat(busy=True)

    def _idle(self, spider: Spider) -> None:
        if self.workers is None:
            return
        self.workers.beat(busy=False)
        busy = self.workers.others(busy_only=True)
        if busy:
            log.debug("crawl: queue empty, waiting for %s", ", ".join(busy))
            raise DontCloseSpider

    def _closed(self, spider: Spider) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
