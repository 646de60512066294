"""Item pipeline: every kept page goes into the raw store, with its SourceRow.

Pages are stored by the writer process (crawler/writer.py), in batches: every blob is on
disk before its row (the raw store's contract), and a page's process_item returns only once
its row is committed. The page budget and per-domain cap (crawler/budget.py) are decided on
the reactor thread, before a page is stored.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from scrapy.exceptions import DropItem
from scrapy.utils.defer import deferred_from_coro

from crawler import writer
from crawler.items import FetchedPage
from crawler.urls import Reason
from crawler.writer import StoreWriter, WriterStopped

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from crawler.session import CrawlSession

log = logging.getLogger(__name__)


class RawStorePipeline:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self._writer: StoreWriter | None = None
        self._closing = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RawStorePipeline:
        return cls(crawler)

    @property
    def session(self) -> CrawlSession:
        return self.crawler.spider.session  # type: ignore[attr-defined]

    async def open_spider(self) -> None:
        session = self.session
        # the crawl process starts it first thing (crawler.child), else it starts here
        proc = session.writer_process or writer.start(session.root.path)
        self._writer = session.writer = StoreWriter(proc, session.root,
                                                    asyncio.get_running_loop())

    async def close_spider(self) -> None:
        if self._writer is not None:
            await self._writer.close()

    @property
    def writer(self) -> StoreWriter:
        assert self._writer is not None, "open_spider starts the writer"
        return self._writer

    def _stop_for(self, error: WriterStopped) -> None:
        """The writer died (killed, or crashed): no page can be stored, so the crawl stops,
        its job left to resume, as a killed crawl's is."""
        session = self.session
        if session.writer_stopped is None:
            session.writer_stopped = error
            log.error("crawl: %s", error)
            deferred_from_coro(self.crawler.engine.close_spider_async(reason="writer_stopped"))

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
            if item.body_key is not None:
                self.writer.drop(item.body_key)
            session.refuse(item.source, refusal, "fetched after the limit was reached",
                           referrer=item.referrer, depth=item.depth)
            if session.redis_key and refusal == Reason.PAGE_BUDGET:
                self._give_back(item)
            raise DropItem(refusal)
        try:
            status, changed, sha = await self.writer.store(item, item.body_key)
        except WriterStopped as e:
            self._stop_for(e)
            raise DropItem(str(e)) from None
        if item.note is not None:  # noted now, with the hash of the content stored
            session.notes.put(item.source, replace(item.note, sha256=sha))
        session.kept(item.source, status, len(item.body), changed=changed)
        if session.budget.spent and not self._closing:
            self._closing = True
            log.info("crawl: page budget of %d reached", session.max_pages)
            deferred_from_coro(self.crawler.engine.close_spider_async(reason="page_budget"))
        return item
