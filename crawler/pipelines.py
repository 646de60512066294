"""Item pipeline: every kept page goes into the raw store, with its SourceRow.

Writes run on one writer thread, in batches of the pages waiting (_Writer): every blob is
on disk before its row (the raw store's contract), and a page's process_item returns only
once its row is committed. The page budget and per-domain cap (crawler/budget.py) are
decided on the reactor thread, before a page is stored.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
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

MAX_BATCH = 64  # pages stored in one transaction, at most
Stored = tuple[str, bool]  # the row's status, and whether the page's content changed


class _Writer:
    """The writer thread and the RawStore connection only it uses (SQLite connections stay in
    the thread that made them). It takes every page waiting at once and stores them in one
    RawStore batch: their blobs made durable together, renamed into place, then all their
    rows committed in one transaction. The crawl waits for its writer: one that takes 2.5 ms
    a page, as an fsync of each blob and of its folder one after another did, made a
    500-page crawl take 1.85 s (a probe sleeping that long a page instead of storing), where
    1 ms a page left it at 1.48 s, as fast as storing nothing."""

    def __init__(self, root: DataRoot, loop: asyncio.AbstractEventLoop) -> None:
        self.root = root
        self.loop = loop
        self.waiting: queue.SimpleQueue[tuple[FetchedPage, asyncio.Future[Stored]] | None] = \
            queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="rawstore", daemon=True)
        self.thread.start()

    def submit(self, page: FetchedPage) -> asyncio.Future[Stored]:
        future: asyncio.Future[Stored] = self.loop.create_future()
        self.waiting.put((page, future))
        return future

    async def close(self) -> None:
        self.waiting.put(None)
        await asyncio.to_thread(self.thread.join)

    def _run(self) -> None:
        try:
            store = RawStore(self.root)
        except Exception as e:  # the index cannot be opened: every page fails with why
            self._fail_every_page(e)
            return
        try:
            closed = False
            while not closed:
                batch, closed = self._take()
                if batch:
                    self._store_batch(store, batch)
        finally:
            store.close()

    def _fail_every_page(self, error: Exception) -> None:
        while (item := self.waiting.get()) is not None:
            self.loop.call_soon_threadsafe(_fail, [item[1]], error)

    def _take(self) -> tuple[list[tuple[FetchedPage, asyncio.Future[Stored]]], bool]:
        """The pages waiting (the first waited for, at most MAX_BATCH), and whether the
        pipeline closed behind them."""
        batch = []
        item = self.waiting.get()
        while item is not None:
            batch.append(item)
            if len(batch) == MAX_BATCH:
                return batch, False
            try:
                item = self.waiting.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _store_batch(self, store: RawStore,
                     batch: list[tuple[FetchedPage, asyncio.Future[Stored]]]) -> None:
        try:
            with store.batch():
                store.look_up(sources=[page.source for page, _ in batch],
                              blobs=[page.sha256 for page, _ in batch])
                results = [store_page(store, page) for page, _ in batch]
        except Exception as e:
            if len(batch) > 1:  # one page's error must not cost the others their rows
                for item in batch:
                    self._store_batch(store, [item])
            else:
                self.loop.call_soon_threadsafe(_fail, [batch[0][1]], e)
        except BaseException as e:  # noqa: BLE001 - the page's caller gets the error
            self.loop.call_soon_threadsafe(_fail, [f for _, f in batch], e)
        else:
            self.loop.call_soon_threadsafe(_resolve, [f for _, f in batch], results)


def _resolve(futures: list[asyncio.Future[Stored]], results: list[Stored]) -> None:
    for future, result in zip(futures, results, strict=True):
        if not future.done():
            future.set_result(result)


def _fail(futures: list[asyncio.Future[Stored]], error: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)


def store_page(store: RawStore, page: FetchedPage) -> Stored:
    """Store the page's content (if new) and its row; returns the row status, and whether
    it replaced other content of the same URL (a page that changed)."""
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


class RawStorePipeline:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self._writer: _Writer | None = None
        self._closing = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RawStorePipeline:
        return cls(crawler)

    @property
    def session(self) -> CrawlSession:
        return self.crawler.spider.session  # type: ignore[attr-defined]

    async def close_spider(self) -> None:
        if self._writer is not None:
            await self._writer.close()

    def _store(self, item: FetchedPage) -> asyncio.Future[Stored]:
        if self._writer is None:  # made here, where the reactor's asyncio loop is running
            self._writer = _Writer(self.session.root, asyncio.get_running_loop())
        return self._writer.submit(item)

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
