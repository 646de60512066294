"""robots.txt as RFC 9309 says, in place of Scrapy's RobotsTxtMiddleware.

Scrapy parses whatever body comes back (a 500 error page, nothing after a timeout) and so
allows everything when a server is failing. RFC 9309 asks otherwise, and this middleware
follows it, per host:

- 2xx: the rules in the first ROBOTS_MAX_BYTES are obeyed (binary garbage holds no rules);
- 4xx, or redirects that loop or run too long: "unavailable", everything may be crawled;
- 5xx (after retries), timeouts, refused connections, a file too large to read: "unreachable",
  nothing is crawled on that host.

Each host's verdict is counted in the crawl's summary (`robots` in its extra figures) and a
page refused because of it says why.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scrapy import Request, signals
from scrapy.exceptions import NotConfigured, StopDownload
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.misc import build_from_crawler, load_object

from crawler.errors import RedirectFailed, Refused, failure_kind
from crawler.urls import Reason

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Response

log = logging.getLogger(__name__)

ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309 2.5: parse at least the first 500 KiB
ROBOTS_META = "cllm_robots"
PARSED, UNAVAILABLE, UNREACHABLE = "parsed", "unavailable", "unreachable"


@dataclass(frozen=True, slots=True)
class HostRules:
    """What robots.txt says for one host: its parser, or a verdict for everything."""

    verdict: str  # PARSED | UNAVAILABLE (all allowed) | UNREACHABLE (all disallowed)
    detail: str  # why, for the log and the refusals
    parser: Any = None  # a scrapy.robotstxt.RobotParser when PARSED

    def allows(self, url: str, agent: str) -> bool:
        if self.verdict == PARSED:
            return bool(self.parser.allowed(url, agent))
        return self.verdict == UNAVAILABLE


class RobotsMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        s = crawler.settings
        if not s.getbool("ROBOTSTXT_OBEY"):
            raise NotConfigured
        self.crawler = crawler
        self.agent = s.get("ROBOTSTXT_USER_AGENT") or s.get("USER_AGENT")
        self.parser_class = load_object(s.get("ROBOTSTXT_PARSER"))
        # bounded, so a robots.txt cannot be a decompression bomb either
        self.max_bytes = max(s.getint("DOWNLOAD_MAXSIZE"), 2 * ROBOTS_MAX_BYTES)
        self._hosts: dict[str, HostRules | asyncio.Future[HostRules]] = {}
        self._fetching = 0  # robots.txt downloads in flight: _bytes_received listens meanwhile

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RobotsMiddleware:
        return cls(crawler)

    async def process_request(self, request: Request) -> None:
        if request.meta.get("dont_obey_robotstxt") or not request.url.startswith("http"):
            return
        rules = await self.rules_for(request)
        if not rules.allows(request.url, self.agent):
            detail = "disallowed by robots.txt" if rules.verdict == PARSED else rules.detail
            raise Refused(Reason.ROBOTS, detail)

    async def rules_for(self, request: Request) -> HostRules:
        netloc = urlparse_cached(request).netloc
        rules = self._hosts.get(netloc)
        if isinstance(rules, asyncio.Future):  # being fetched for another request
            return await rules
        if rules is not None:
            return rules
        # an asyncio future, not a Deferred: every request waiting on it gets the rules
        waiting: asyncio.Future[HostRules] = asyncio.get_running_loop().create_future()
        self._hosts[netloc] = waiting
        try:
            rules = await self._fetch(request, netloc)
        except BaseException:  # cancelled (the crawl is stopping): the next request retries
            del self._hosts[netloc]
            waiting.cancel()
            raise
        self._hosts[netloc] = rules
        self._record(netloc, rules)
        waiting.set_result(rules)
        return rules

    async def _fetch(self, request: Request, netloc: str) -> HostRules:
        url = f"{urlparse_cached(request).scheme}://{netloc}/robots.txt"
        robots = Request(url, priority=1000, callback=NO_CALLBACK, meta={
            "dont_obey_robotstxt": True, ROBOTS_META: True, "download_maxsize": self.max_bytes})
        try:
            response = await self._download(robots)
        except RedirectFailed as e:  # RFC 9309 2.3.1.2: MAY be taken as unavailable
            return HostRules(UNAVAILABLE, f"robots.txt unavailable ({e.kind}): all allowed")
        except Exception as e:  # noqa: BLE001 - any failure to read it means "unreachable"
            kind, message = failure_kind(e)
            return HostRules(UNREACHABLE, f"robots.txt unreachable ({kind}: {message}): "
                                          "complete disallow assumed (RFC 9309)")
        return await self._parse(response, request)

    async def _download(self, robots: Request) -> Response:
        # bytes_received is sent for every chunk of every response: listened to only while a
        # robots.txt is downloading, the pages fetched meanwhile are the only others it sees
        signals_ = self.crawler.signals
        if not self._fetching:
            signals_.connect(self._bytes_received, signal=signals.bytes_received)
        self._fetching += 1
        try:
            return await self.crawler.engine.download_async(robots)
        finally:
            self._fetching -= 1
            if not self._fetching:
                signals_.disconnect(self._bytes_received, signal=signals.bytes_received)

    async def _parse(self, response: Response, request: Request) -> HostRules:
        status = response.status
        if 400 <= status < 500:
            return HostRules(UNAVAILABLE, f"robots.txt unavailable (HTTP {status}): all allowed")
        if not 200 <= status < 300:
            return HostRules(UNREACHABLE, f"robots.txt unreachable (HTTP {status}): complete "
                                          "disallow assumed (RFC 9309)")
        body = response.body[:ROBOTS_MAX_BYTES]
        parser = build_from_crawler(self.parser_class, self.crawler, body)
        await self.crawler.signals.send_catch_log_async(
            signal=signals.robots_parsed, robotparser=parser, request=request)
        cut = " (first 500 KiB)" if "download_stopped" in response.flags else ""
        return HostRules(PARSED, f"robots.txt parsed{cut}", parser)

    def _bytes_received(self, data: bytes, request: Request, spider: Any) -> None:
        """Stop reading a robots.txt after ROBOTS_MAX_BYTES: what came is parsed."""
        if not request.meta.get(ROBOTS_META):
            return
        got = request.meta.get("cllm_robots_bytes", 0) + len(data)
        request.meta["cllm_robots_bytes"] = got
        if got > ROBOTS_MAX_BYTES:
            raise StopDownload(fail=False)

    def _record(self, netloc: str, rules: HostRules) -> None:
        session = getattr(self.crawler.spider, "session", None)
        if session is not None:
            session.robots[netloc] = (rules.verdict, rules.detail)
        level = logging.WARNING if rules.verdict == UNREACHABLE else logging.DEBUG
        log.log(level, "crawl: %s: %s", netloc, rules.detail)
