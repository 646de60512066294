"""Downloader middlewares: the guard (policy and address checks on every request, redirects
included), the raw store (resume without refetching, conditional re-crawls), retries with
backoff, and redirects that detect loops.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.downloadermiddlewares.redirect import MetaRefreshMiddleware, RedirectMiddleware
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import CannotResolveHostError, IgnoreRequest
from scrapy.http import HtmlResponse, Response
from scrapy.resolver import CachingThreadedResolver
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.error import DNSLookupError

from crawler.errors import PrivateAddressError, RedirectFailed, Refused
from crawler.netguard import AddressPolicy, parse_ip
from crawler.revisit import FRESHNESS_HEADERS
from crawler.urls import Reason

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

    from crawler.session import CrawlSession, Known

log = logging.getLogger(__name__)

# this worker's budget, not the crawl's: with a shared frontier the request goes back to it
SHARED_LIMITS = frozenset({Reason.PAGE_BUDGET})
STORED_FLAG = "cllm:stored"  # kept earlier in this generation: answered from the raw store
UNCHANGED_FLAG = "cllm:unchanged"  # 304 Not Modified: answered from the raw store


def source_url(request: Request) -> str:
    """The URL as first requested, before any redirect: the key of its SourceRow."""
    chain = request.meta.get("redirect_urls")
    return chain[0] if chain else request.url


def is_control(request: Request) -> bool:
    """robots.txt and sitemap requests: fetched for the crawl, never stored."""
    return bool(request.meta.get("dont_obey_robotstxt") or request.meta.get("cllm_control"))


def _session(crawler: Crawler) -> CrawlSession:
    return crawler.spider.session  # type: ignore[attr-defined]


def _redirect_note(request: Request) -> str:
    chain = request.meta.get("redirect_urls")
    return f" (redirected from {chain[0]})" if chain else ""


def _address_policy(settings: BaseSettings) -> AddressPolicy:
    return AddressPolicy.build(settings.getbool("CLLM_ALLOW_PRIVATE"),
                               settings.getlist("CLLM_PRIVATE_ALLOWLIST"))


class GuardedResolver(CachingThreadedResolver):
    """Scrapy's caching resolver that will not hand out refused addresses: the connection
    uses the same (cached) answer the guard checked, so DNS rebinding cannot slip through."""

    def __init__(self, reactor: Any, cache_size: int, timeout: float,
                 addresses: AddressPolicy) -> None:
        super().__init__(reactor, cache_size, timeout)
        self.addresses = addresses

    @classmethod
    def from_crawler(cls, crawler: Any, reactor: Any) -> GuardedResolver:
        s = crawler.settings
        cache_size = s.getint("DNSCACHE_SIZE") if s.getbool("DNSCACHE_ENABLED") else 0
        return cls(reactor, cache_size, s.getfloat("DNS_TIMEOUT"), _address_policy(s))

    def getHostByName(self, name: str, timeout: Any = ()) -> Any:  # noqa: N802 - Twisted API
        d = super().getHostByName(name, timeout)
        if not self.addresses.open:
            d.addCallback(self._check, name)
        return d

    def _check(self, address: str, name: str) -> str:
        why = self.addresses.refusal(address)
        if why:
            raise PrivateAddressError(f"{name} resolves to {why}")
        return address


class GuardMiddleware:
    """Refuse, with a counted reason, every request the policy does not allow: scheme,
    domains, blocklist, patterns, budget and per-domain cap, then private addresses (after
    DNS resolution). Redirected requests come through here again."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.addresses = _address_policy(crawler.settings)
        self._host_verdicts: dict[str, str] = {}  # host -> "" (allowed) or why refused

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> GuardMiddleware:
        return cls(crawler)

    async def process_request(self, request: Request) -> None:
        session = _session(self.crawler)
        if not session.first_request_at:
            session.first_request_at = time.monotonic()
        if not is_control(request):
            reason = session.policy.check(request.url)
            if reason is None:  # the budget counts the page as first asked for
                reason = session.admission(source_url(request))
            if reason is not None:
                if reason in SHARED_LIMITS and session.redis_key:
                    from crawler.frontier import give_back

                    give_back(self.crawler, request)
                raise Refused(reason, f"{request.url}{_redirect_note(request)}")
        if self.addresses.open:
            return
        host = urlparse_cached(request).hostname or ""
        why = self._host_verdicts.get(host)
        if why is None:
            why = await self._host_verdict(host)
            self._host_verdicts[host] = why
        if why:
            raise Refused(Reason.PRIVATE, f"{why}{_redirect_note(request)}")

    async def _host_verdict(self, host: str) -> str:
        literal = parse_ip(host)
        if literal is not None:
            why = self.addresses.refusal(literal)
            return f"host {why}" if why else ""
        from twisted.internet import reactor

        try:
            address = await maybe_deferred_to_future(reactor.resolve(host))
        except PrivateAddressError as e:
            return str(e)
        except DNSLookupError as e:
            raise CannotResolveHostError(f"cannot resolve {host}: {e}") from None
        why = self.addresses.refusal(address)
        return f"{host} resolves to {why}" if why else ""

    def process_response(self, request: Request, response: Response) -> Response:
        # the address actually connected to, whatever DNS said before
        addr = getattr(response, "ip_address", None)
        if addr is not None and not self.addresses.open:
            why = self.addresses.refusal(addr)
            if why:
                raise Refused(Reason.PRIVATE, f"connected to {why}{_redirect_note(request)}")
        return response


def stored_response(request: Request, known: Known, body: bytes, flag: str,
                    headers: dict[str, str] | None = None) -> Response:
    """A response made of the stored copy of a page, so the spider can follow its links."""
    request.meta["cllm_blob"] = (known.blob.sha256, known.blob.mime, known.blob.ext)
    cls = HtmlResponse if known.blob.mime == "text/html" else Response
    hdrs = {"Content-Type": known.blob.mime, **(headers or {})}
    return cls(url=known.row.final_url or request.url, status=200, headers=hdrs, body=body,
               request=request, flags=[flag])


def _stored_copy(session: CrawlSession, request: Request, known: Known) -> bytes | None:
    """What the spider needs of a page's stored copy to follow its links: nothing when its
    notes hold them (the note goes in the request's meta) or it is not HTML, else its bytes
    (None if they cannot be read)."""
    note = session.note_of(known)
    if note is not None:
        request.meta["cllm_note"] = note
        return b""
    return known.read(session.root) if known.blob.ext == "html" else b""


class RawStoreMiddleware:
    """Pages kept earlier in this generation (a resumed crawl) come from the raw store
    without a request; pages stored by an earlier generation are requested conditionally
    (If-None-Match / If-Modified-Since), and a 304 is answered from the store."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RawStoreMiddleware:
        return cls(crawler)

    def process_request(self, request: Request) -> Response | None:
        if is_control(request) or request.meta.get("redirect_urls"):
            return None
        session = _session(self.crawler)
        known = session.known(request.url)
        if known is None:
            return None
        if request.url in session.fetched:
            body = _stored_copy(session, request, known)
            if body is not None:
                return stored_response(request, known, body, STORED_FLAG)
            return None
        row = known.row
        if row.etag:
            request.headers[b"If-None-Match"] = row.etag
        if row.last_modified:
            request.headers[b"If-Modified-Since"] = row.last_modified
        if row.etag or row.last_modified:
            request.meta["cllm_conditional"] = True
        return None

    def process_response(self, request: Request, response: Response) -> Response | Request:
        session = _session(self.crawler)
        if STORED_FLAG not in response.flags:
            session.responses += 1
        if response.status != 304 or not request.meta.get("cllm_conditional"):
            return response
        known = session.known(source_url(request))
        body = _stored_copy(session, request, known) if known is not None else None
        if known is None or body is None:  # the stored copy is gone: ask again, unconditionally
            again = request.replace(dont_filter=True)
            again.meta["cllm_conditional"] = False
            again.meta.pop("cllm_note", None)
            for name in (b"If-None-Match", b"If-Modified-Since"):
                again.headers.pop(name, None)
            return again
        validators = {}  # and freshness: a 304 says again how long the page stays fresh
        for name in ("ETag", "Last-Modified", *FRESHNESS_HEADERS):
            value = response.headers.get(name)
            if value:
                validators[name] = value.decode("latin-1")
        return stored_response(request, known, body, UNCHANGED_FLAG, validators)


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's retries (5xx, 408, 429, timeouts, connection errors), after a wait that
    doubles with each retry of the same request and honours Retry-After."""

    def __init__(self, settings: BaseSettings) -> None:
        super().__init__(settings)
        self.backoff_s = settings.getfloat("RETRY_BACKOFF_S", 1.0)
        self.backoff_max_s = settings.getfloat("RETRY_BACKOFF_MAX_S", 60.0)

    async def process_response(self, request: Request, response: Response  # type: ignore[override]
                               ) -> Request | Response:
        if retry_after_s(response.headers.get(b"Retry-After")) > self.backoff_max_s:
            # asked to come back later than we wait: give up now rather than sleep on it
            # (a hostile or overloaded server could otherwise hold the crawl for hours)
            return response
        result = super().process_response(request, response)
        if isinstance(result, Request):
            await self._wait(result, response)
        return result

    async def process_exception(self, request: Request, exception: Exception  # type: ignore[override]
                                ) -> Request | Response | None:
        result = super().process_exception(request, exception)
        if isinstance(result, Request):
            await self._wait(result, None)
        return result

    def delay_for(self, retry_times: int, response: Response | None) -> float:
        delay = self.backoff_s * 2 ** max(retry_times - 1, 0)
        if response is not None:
            delay = max(delay, retry_after_s(response.headers.get(b"Retry-After")))
        return min(delay, self.backoff_max_s)

    async def _wait(self, retry: Request, response: Response | None) -> None:
        delay = self.delay_for(retry.meta.get("retry_times", 1), response)
        if delay > 0:
            await asyncio.sleep(delay)


def retry_after_s(value: bytes | None) -> float:
    """Seconds asked for by a Retry-After header (delta-seconds or an HTTP date); 0 if none."""
    if not value:
        return 0.0
    text = value.decode("latin-1").strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - time.time())


class _LoopDetectingRedirect:
    """Normalise redirect targets; a redirect back to a URL of the same chain is a loop."""

    crawler: Crawler
    max_redirect_times: int

    def _redirect(self, redirected: Request, request: Request, reason: Any) -> Request:
        url = _session(self.crawler).normalize(redirected.url) or redirected.url
        if url != redirected.url:
            redirected = redirected.replace(url=url)
        chain = [*request.meta.get("redirect_urls", []), request.url]
        if url in chain:
            raise RedirectFailed("redirect_loop", "redirect loop: " + " -> ".join([*chain, url]))
        try:
            out = super()._redirect(redirected, request, reason)  # type: ignore[misc]
        except IgnoreRequest:
            raise RedirectFailed("too_many_redirects",
                                 f"more than {self.max_redirect_times} redirects from "
                                 f"{chain[0]}") from None
        # a target seen before must still be fetched for this source, or the source would
        # vanish without a row: the dupefilter does not see redirects
        out.dont_filter = True
        return out


class SafeRedirectMiddleware(_LoopDetectingRedirect, RedirectMiddleware):
    pass


# Scrapy looks for a meta refresh in a page's first 4,096 characters (get_meta_refresh)
REFRESH_CHARS = 4096


def may_refresh(body: bytes) -> bool:
    """Whether a meta refresh can be in the first REFRESH_CHARS characters of `body`: the word
    "refresh", in any case, is in their bytes (at most 4 a character), as every encoding a
    page is served in writes ASCII letters; UTF-16 and UTF-32 do not (a NUL between letters),
    and go the whole way."""
    head = body[:4 * REFRESH_CHARS]
    return b"\x00" in head or b"refresh" in head.lower()


class SafeMetaRefreshMiddleware(_LoopDetectingRedirect, MetaRefreshMiddleware):
    def process_response(self, request: Request, response: Response) -> Request | Response:
        # Scrapy decodes the whole page to read those characters (a docs page: 0.05 ms)
        if isinstance(response, HtmlResponse) and not may_refresh(response.body):
            return response
        return super().process_response(request, response)
