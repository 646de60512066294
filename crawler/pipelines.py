"""Item pipeline: every kept page goes into the raw store, with its SourceRow.

Writes run on WRITERS threads, each with its own RawStore connection: every blob is fsynced
before its row (the raw store's contract), and fsyncs, not parsing, would otherwise bound the
crawl (about 7 ms each here; four in parallel take about 1.5 ms a page). The page budget and
per-domain cap (crawler/budget.py) are decided on the reactor thread, before a page is stored.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from scrapy.exceptions import DropItem
from scrapy.utils.defer import deferred_from_coro

from crawler.items import FetchedPage
from crawler.urls import Reason
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore
from pipeline.records import SourceRow

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from crawler.session import CrawlSession

log = logging.getLogger(__name__)

WRITERS = 4


class _Writer:
    """One writer thread and the RawStore connection only it uses (SQLite connections stay in
    the thread that made them)."""

    def __init__(self, root: DataRoot, n: int) -> None:
        self.root = root
        self.store: RawStore | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rawstore-{n}")

    def store_page(self, page: FetchedPage) -> tuple[str, bool]:
        """Store the page's content (if new) and its row; returns the row status, and whether
        it replaced other content of the same URL (a page that changed)."""
        if self.store is None:
            self.store = RawStore(self.root)
        store = self.store
        previous = store.get_source(page.source)
        if page.outcome == "unchanged":
            sha, status = page.sha256, "unchanged"
        else:
            sha, new = store.put_bytes(page.body, mime=page.mime, ext=page.ext,
                                       source=page.source, sha256=page.sha256)
            # a blob stored for this very page by a run that stopped before its row (killed,
            # disk full) is this page's own content, not a duplicate of another's
            blob = store.get_blob(sha) if not new and previous is None else None
            if new or (blob is not None and blob.source == page.source):
                status = "stored"
            elif previous is not None and previous.sha256 == sha:
                status = "unchanged"
            else:
                status = "duplicate"
        # a 304 answered without the stored copy (its links were in the job's notes) has no
        # body: the content, its size and validators are the previous row's
        same = previous if previous is not None and page.outcome == "unchanged" else None
        store.upsert_source(SourceRow(
            source=page.source, kind="web", status=status, sha256=sha, mime=page.mime,
            size=same.size if same else len(page.body), fetched_at=page.fetched_at,
            http_status=page.http_status, final_url=page.final_url, depth=page.depth,
            referrer=page.referrer, etag=page.etag or (same.etag if same else ""),
            last_modified=page.last_modified or (same.last_modified if same else ""),
        ))
        return status, previous is not None and bool(previous.sha256) and previous.sha256 != sha

    def _close(self) -> None:
        if self.store is not None:
            self.store.close()

    async def close(self) -> None:
        await asyncio.wrap_future(self.executor.submit(self._close))
        self.executor.shutdown(wait=True)


class RawStorePipeline:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self._writers: list[_Writer] = []
        self._next = 0
        self._closing = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RawStorePipeline:
        return cls(crawler)

    @property
    def session(self) -> CrawlSession:
        return self.crawler.spider.session  # type: ignore[attr-defined]

    def open_spider(self) -> None:
        self._writers = [_Writer(self.session.root, n) for n in range(WRITERS)]

    async def close_spider(self) -> None:
        for writer in self._writers:
            await writer.close()

    def _store(self, item: FetchedPage) -> asyncio.Future[tuple[str, bool]]:
        # each source reaches the pipeline once per run, so writers never race on a row; two
        # URLs with the same content may race on its blob, which the raw store settles
        writer = self._writers[self._next]
        self._next = (self._next + 1) % len(self._writers)
        return asyncio.wrap_future(writer.executor.submit(writer.store_page, item))

    def _give_back(self, item: FetchedPage) -> None:
        from scrapy import Request

        from crawler.frontier import give_back

        spider = self.crawler.spider
        give_back(self.crawler, Request(item.source, callback=spider.parse,
                                        errback=spider.on_error,
                                        meta={"depth": item.depth, "cllm_ref": item.referrer}))

    async def process_item(self, item: FetchedPage) -> FetchedPage:
        session = self.session
        # placed and listed before it is stored, on this (the reactor's) thread, so pages in
        # flight cannot overshoot the budget; a kill between the two leaves a listed page
        # that is fetched again, never a stored page that a resumed crawl would fetch twice
        refusal = session.take_place(item.source)
        if refusal is not None:
            session.refuse(item.source, refusal, "fetched after the limit was reached",
                           referrer=item.referrer, depth=item.depth)
            if session.redis_key and refusal == Reason.PAGE_BUDGET:
                self._give_back(item)
            raise DropItem(refusal)
        status, changed = await self._store(item)
        session.kept(item.source, status, len(item.body), changed=changed)
        if session.budget.spent and not self._closing:
            self._closing = True
            log.info("crawl: page budget of %d reached", session.max_pages)
            deferred_from_coro(self.crawler.engine.close_spider_async(reason="page_budget"))
        return item
