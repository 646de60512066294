"""The site spider: start URLs and sitemaps in, pages and documents out, links followed
within the crawl policy, breadth first, up to the depth limit.

Each response is classified by its bytes (checked against Content-Type); kept kinds become
FetchedPage items for the raw store pipeline. Refusals and failures are counted by the
session, one per URL, with their reason.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import replace
from typing import Any

import scrapy
from scrapy import Request, signals
from scrapy.exceptions import DontCloseSpider, StopDownload
from scrapy.http import Response
from scrapy.utils.gz import gunzip
from scrapy.utils.sitemap import Sitemap, sitemap_urls_from_robots
from twisted.python.failure import Failure as TwistedFailure

from crawler.budget import GO, WAIT
from crawler.content import announced_kind, classify, header_charset
from crawler.errors import FetchError, failure_kind, refusal_of
from crawler.items import FetchedPage
from crawler.links import PageScan, robots_directives, scan_html
from crawler.middlewares import STORED_FLAG, UNCHANGED_FLAG, is_control, source_url
from crawler.revisit import FRESHNESS_HEADERS, LIFETIME_HEADERS, PageNote, fresh_seconds
from crawler.session import CrawlSession, standalone_session
from crawler.settings import robots_agent
from crawler.urls import Reason, host_of

GZIP_MAGIC = b"\x1f\x8b"
log = logging.getLogger(__name__)


def _header(response: Response, name: str) -> str:
    value = response.headers.get(name)
    return value.decode("latin-1") if value else ""


def _fresh_s(response: Response) -> float:
    return fresh_seconds(*(_header(response, name) for name in FRESHNESS_HEADERS))


def _page_note(sha: str, scan: PageScan | None, fresh_s: float) -> PageNote:
    """What a re-check of this content needs: its links (none if not HTML), nofollow, and how
    long it said it stays fresh."""
    return PageNote(sha, tuple(scan.links) if scan else (), bool(scan and scan.nofollow),
                    fresh_s)


def _status_note(response: Response) -> str:
    """What an error or unfollowed redirect said beyond its status: where, and when again."""
    location, retry_after = _header(response, "Location"), _header(response, "Retry-After")
    if 300 <= response.status < 400 and location:
        return f" (redirect to {location} not followed: not an http(s) URL we may fetch)"
    return f" (Retry-After: {retry_after})" if retry_after else ""


class SiteSpider(scrapy.Spider):
    name = "site"

    def __init__(self, session: CrawlSession | None = None, urls: str = "", **kwargs: Any
                 ) -> None:
        super().__init__(**kwargs)
        if session is None:  # `scrapy crawl site -a urls=URL,URL`: a session of our own
            session = standalone_session([u for u in urls.split(",") if u.strip()])
        self.session = session
        self._seen_links: set[str] = set()  # absolute links met, before normalising
        # normal forms of links with a fragment, by the link without it: an index page's
        # thousands of anchors (page#entry-1, page#entry-2, ...) are normalised once a page
        self._defragged: dict[str, str | None] = {}
        self._queued: set[str] = set()  # normalised URLs requested by this run
        self._agent = robots_agent(session.cfg.user_agent).lower()

    @classmethod
    def update_settings(cls, settings: Any) -> None:
        super().update_settings(settings)
        if not settings.getbool("CLLM_CONFIGURED"):  # `scrapy crawl site`: ./cllm.toml [crawl]
            from crawler.settings import build_settings
            from pipeline.config import load_config

            settings.update(build_settings(load_config().crawl, None), priority="spider")

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> SiteSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider._headers_received, signal=signals.headers_received)
        crawler.signals.connect(spider._request_dropped, signal=signals.request_dropped)
        crawler.signals.connect(spider._idle, signal=signals.spider_idle)
        spider.session.send_waiting = spider._send_waiting
        return spider

    # --- seeds, and the pages kept before -------------------------------------------

    async def start(self) -> AsyncIterator[Request]:
        s = self.session
        # a shared frontier dedupes seeds across workers; alone, seeds are always fetched
        dont_filter = not s.redis_key
        for url in s.state.start_urls:
            self._queued.add(url)
            s.budget.offer(url)  # reserved while there is room; requested in any case
            yield Request(url, callback=self.parse, errback=self.on_error, dont_filter=dont_filter,
                          meta={"depth": 0, "cllm_seed": True})
        for url in s.state.sitemaps:
            yield self._sitemap_request(url, seed=True)
        for url, (depth, referrer) in s.revisits.items():
            request = self._revisit(url, depth, referrer)
            if request is not None:
                yield request

    def _revisit(self, url: str, depth: int, referrer: str) -> Request | None:
        """A page the crawl kept before, asked for again at its URL and at the depth it was
        kept at, whether or not a link still leads there (a re-crawl checks every page it
        keeps that is due); None if the config now refuses it or it is not due."""
        s = self.session
        if url in self._queued:
            return None
        reason = s.policy.check(url) or (Reason.MAX_DEPTH if depth > s.cfg.max_depth else None)
        if reason is not None:
            s.refuse(url, reason, "kept by an earlier run", referrer=referrer, depth=depth)
            return None
        if url in s.not_due:  # its links were followed when it was checked
            s.left_alone(url)
            return None
        self._queued.add(url)
        # kept already in this generation (a resumed run): answered from the raw store, and
        # followed again, so links that were waiting for room when the run stopped come back
        return self._request(url, {"depth": depth, "cllm_ref": referrer},
                             dont_filter=url in s.fetched)

    def _request(self, url: str, meta: dict[str, Any], dont_filter: bool = False) -> Request:
        """A page request made outside a callback: breadth first by its depth, as
        DepthMiddleware does for the requests callbacks yield."""
        meta.pop("depth_reset", None)
        return Request(url, callback=self.parse, errback=self.on_error, meta=meta,
                       priority=-meta["depth"], dont_filter=dont_filter)

    def _sitemap_request(self, url: str, seed: bool = False) -> Request:
        return Request(url, callback=self.parse_sitemap, errback=self.on_error, dont_filter=True,
                       meta={"cllm_control": True, "cllm_seed": seed})

    def parse_sitemap(self, response: Response) -> Iterator[Request]:
        s = self.session
        if response.status >= 300:
            s.fail(FetchError(response.url, f"http_{response.status}",
                              f"sitemap answered HTTP {response.status}"))
            return
        body = response.body
        if body.startswith(GZIP_MAGIC):
            try:
                body = gunzip(body, max_size=s.cfg.max_bytes)
            except (OSError, ValueError) as e:
                s.fail(FetchError(response.url, "corrupt", f"bad gzip sitemap: {e}"))
                return
        if response.url.endswith("/robots.txt"):
            listed = sitemap_urls_from_robots(body.decode("utf-8", "replace"), response.url)
            yield from self._nested_sitemaps(listed, response.url)
            return
        try:
            sitemap = Sitemap(body)
        except Exception as e:  # noqa: BLE001 - lxml raises many kinds on garbage
            s.fail(FetchError(response.url, "corrupt", f"not a sitemap: {e}"))
            return
        locs = [entry.get("loc", "") for entry in sitemap]
        if sitemap.type == "sitemapindex":
            yield from self._nested_sitemaps(locs, response.url)
        elif sitemap.type == "urlset":
            yield from self._follow([loc for loc in locs if loc], response.url, next_depth=0)

    def _nested_sitemaps(self, locs: Iterable[str], parent: str) -> Iterator[Request]:
        s = self.session
        for loc in filter(None, locs):
            url = s.normalize(loc)
            reason = s.policy.check_host(host_of(url)) if url else Reason.BAD_URL
            if reason is not None:
                s.refuse(url or loc, reason, "sitemap", referrer=parent)
            else:
                yield self._sitemap_request(url)

    # --- pages ------------------------------------------------------------------------

    def _headers_received(self, headers: Any, body_length: int, request: Request,
                          spider: scrapy.Spider) -> None:
        """Stop downloading content we would not keep as soon as its type is announced."""
        if is_control(request):
            return
        kind = announced_kind(headers.get(b"Content-Type"))
        if kind == "" or (kind is not None and kind != "html" and kind not in self.session.kinds):
            raise StopDownload(fail=True)

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        s = self.session
        request = response.request
        source = source_url(request)
        depth = response.meta.get("depth", 0)
        referrer = response.meta.get("cllm_ref", "")
        body = response.body
        if STORED_FLAG in response.flags or UNCHANGED_FLAG in response.flags:
            sha, mime, ext = response.meta["cllm_blob"]
            if STORED_FLAG in response.flags:
                s.served_from_store(source)
            else:
                yield FetchedPage(source=source, final_url=response.url, http_status=304,
                                  body=body, mime=mime, ext=ext, outcome="unchanged", sha256=sha,
                                  etag=_header(response, "ETag"),
                                  last_modified=_header(response, "Last-Modified"),
                                  depth=depth, referrer=referrer)
            note = self._note_stored(response, source, sha, ext)
            if not (note.nofollow and s.cfg.obey_robots):
                for request in self._follow(list(note.links), response.url, depth + 1):
                    yield request
            return
        if response.status >= 300 or response.status < 200:
            s.fail(FetchError(source, f"http_{response.status}",
                              f"HTTP {response.status} from {response.url}"
                              f"{_status_note(response)}"))
            return
        if not body:
            s.fail(FetchError(source, "empty", f"empty response from {response.url}"))
            return
        ctype = response.headers.get(b"Content-Type")
        verdict = classify(body, ctype, response.url, s.kinds)
        is_html = verdict.sniffed is not None and verdict.sniffed.ext == "html"
        scan, kept = None, None
        if is_html:
            scan, kept = await self._scan(body, response.url, header_charset(ctype))
            if s.cfg.obey_robots:
                noindex, nofollow = robots_directives(_header(response, "X-Robots-Tag"),
                                                      self._agent)
                scan.noindex |= noindex
                scan.nofollow |= nofollow
        # a start URL that gave nothing, not even links to follow, is a failure
        seed_lost = bool(response.meta.get("cllm_seed")) and not is_html
        try:
            if verdict.reason:
                s.refuse(source, verdict.reason, verdict.detail, referrer=referrer, depth=depth,
                         seed=seed_lost)
            elif scan is not None and scan.noindex and s.cfg.obey_robots:
                s.refuse(source, Reason.NOINDEX, "robots meta/X-Robots-Tag noindex",
                         referrer=referrer, depth=depth)
            else:
                assert verdict.sniffed is not None
                fresh_s = _fresh_s(response)
                # what a re-check needs: links, or how long to wait; noted with the content's
                # hash once the page is stored (the raw store's writer hashes it)
                noted = scan is not None or bool(fresh_s)
                page = FetchedPage(
                    source=source, final_url=response.url, http_status=response.status,
                    body=body, mime=verdict.sniffed.mime, ext=verdict.sniffed.ext,
                    etag=_header(response, "ETag"),
                    last_modified=_header(response, "Last-Modified"), depth=depth,
                    referrer=referrer, note=_page_note("", scan, fresh_s) if noted else None,
                    body_key=kept)
                kept = None  # the page's now: its storing takes the body, or drops it
                yield page
        finally:
            if kept is not None and s.writer is not None:
                s.writer.drop(kept)
        if scan is not None and not (scan.nofollow and s.cfg.obey_robots):
            for request in self._follow(scan.links, response.url, depth + 1):
                yield request

    async def _scan(self, body: bytes, url: str, charset: str | None
                    ) -> tuple[PageScan, int | None]:
        """The page's links and robots directives (scan_html), and the key of its body kept
        for its storing: scanned by the raw store's writer, beside the reactor thread, which
        this crawl's speed is bound by; here where no writer runs (or it stopped)."""
        writer = self.session.writer
        if writer is not None and writer.running:
            key, scanned = writer.scan(body, url, charset, self._agent)
            try:
                return await scanned, key
            except Exception:  # noqa: BLE001 - scanned here, which raises what is wrong
                log.debug("scanning %s here: the writer did not", url, exc_info=True)
                writer.drop(key)
        return scan_html(body, url, charset, self._agent), None

    def _note_stored(self, response: Response, source: str, sha: str, ext: str) -> PageNote:
        """The notes of a page answered from its stored copy: those kept with it (no parse),
        else made from the copy (and kept for the next time); its freshness as the 304 said."""
        note = response.meta.get("cllm_note")
        # a 304 that says nothing of freshness leaves it as it was (RFC 9111 4.3.4)
        said = any(_header(response, name) for name in LIFETIME_HEADERS)
        fresh_s = _fresh_s(response) if UNCHANGED_FLAG in response.flags and said else None
        if note is not None:
            if fresh_s is not None and fresh_s != note.fresh_s:  # the 304 says otherwise now
                note = replace(note, fresh_s=fresh_s)
                self.session.notes.put(source, note)
            return note
        scan = scan_html(response.body, response.url, None, self._agent) if ext == "html" \
            else None
        note = _page_note(sha, scan, fresh_s or 0.0)
        if scan is not None or note.fresh_s:
            self.session.notes.put(source, note)
        return note

    def _follow(self, links: list[str], page_url: str, next_depth: int) -> Iterator[Request]:
        """Requests for the links not seen before that the policy allows; refusals counted."""
        s = self.session
        seen, queued, defragged = self._seen_links, self._queued, self._defragged
        for link in links:
            if link in seen:
                continue
            seen.add(link)
            if "#" in link:  # the fragment never changes the normal form (it is dropped)
                base = link.partition("#")[0]
                if base not in defragged:
                    defragged[base] = s.normalize(base)
                url = defragged[base]
            else:
                url = s.normalize(link)
            if url is None:
                s.refuse(link, Reason.SCHEME if "://" in link else Reason.BAD_URL,
                         referrer=page_url, depth=next_depth)
                continue
            if url in queued:
                continue
            if url in s.revisits:
                # start() asks for it at the depth it was kept at: a longer path met first
                # must not refuse it (max_depth), which would give its place up
                continue
            reason = s.policy.check(url)
            if reason is None and next_depth > s.cfg.max_depth:
                reason = Reason.MAX_DEPTH
            verdict = s.budget.offer(url) if reason is None else reason
            if verdict not in (GO, WAIT):
                s.refuse(url, verdict, referrer=page_url, depth=next_depth)
                continue
            queued.add(url)
            meta: dict[str, Any] = {"depth": next_depth, "cllm_ref": page_url}
            if next_depth == 0:
                meta["depth_reset"] = True  # sitemap entries are seeds (DepthMiddleware)
            if verdict == WAIT:
                s.budget.wait(url, (url, meta))
                continue
            yield Request(url, callback=self.parse, errback=self.on_error, meta=meta)

    # --- links waiting for room in the budget -----------------------------------------

    def _send_waiting(self, idle: bool = False) -> int:
        """Request the waiting links that have room now, refuse those that never will;
        returns how many were requested."""
        s = self.session
        go, refused = s.budget.admit_waiting(idle=idle)
        for (url, meta), reason in refused:
            s.refuse(url, reason, referrer=meta["cllm_ref"], depth=meta["depth"])
        for url, meta in go:
            self.crawler.engine.crawl(self._request(url, meta))
        return len(go)

    def _request_dropped(self, request: Request, spider: scrapy.Spider) -> None:
        if self.session.budget.drop(source_url(request)):
            self._send_waiting()

    def _idle(self, spider: scrapy.Spider) -> None:
        # nothing in flight: a reservation still open was never settled; let links go
        if self.session.budget.waiting and self._send_waiting(idle=True):
            raise DontCloseSpider

    # --- errors -----------------------------------------------------------------------

    def on_error(self, failure: TwistedFailure) -> None:
        request = failure.request  # type: ignore[attr-defined]
        source = source_url(request)
        exc = failure.value
        seed = bool(request.meta.get("cllm_seed"))
        refusal = refusal_of(exc)
        if refusal is not None:
            reason, detail = refusal
            self.session.refuse(source, reason, detail, referrer=request.meta.get("cllm_ref", ""),
                                depth=request.meta.get("depth"), seed=seed)
            return
        kind, message = failure_kind(exc)
        self.session.fail(FetchError(source, kind, message))

    def closed(self, reason: str) -> None:
        self.session.finish(reason, self.crawler.stats.get_stats())
