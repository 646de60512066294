"""A small real web site on 127.0.0.1, for the crawler's tests, its benchmark and demos.

Routes map a path (with its query) to a `Page`: a body with headers, or a function of the
request. The server speaks HTTP/1.1 with keep-alive, honours If-None-Match and
If-Modified-Since for pages with validators, and counts the requests each path received,
the TCP connections it accepted and the most requests it was answering at once.
A page with a `raw` writer writes its whole answer itself (status line, headers, body), for
servers that misbehave: bodies dribbled a byte at a time, endless, or shorter or longer than
their Content-Length.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO

Handler = Callable[["Request"], "Page"]
RawWriter = Callable[["RawConnection"], None]


@dataclass(slots=True)
class Page:
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str = ""  # served as ETag; If-None-Match with it gets a 304
    last_modified: float = 0.0  # epoch seconds; served as Last-Modified
    delay_s: float = 0.0  # wait before answering
    chunked: bool = False  # no Content-Length: the body ends with the connection
    raw: RawWriter | None = None  # writes the whole answer itself; the connection then closes


class SiteStopped(ConnectionError):
    """Raised in a raw writer when the site stops, so an endless answer ends with it."""


class RawConnection:
    """The client connection of one request, for a `Page.raw` writer."""

    def __init__(self, wfile: BinaryIO, stopping: threading.Event) -> None:
        self._wfile = wfile
        self._stopping = stopping

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def write(self, data: bytes) -> None:
        """Send `data` now (unbuffered); ConnectionError once the client or the site is gone."""
        if self._stopping.is_set():
            raise SiteStopped("site stopped")
        self._wfile.write(data)
        self._wfile.flush()

    def sleep(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            raise SiteStopped("site stopped")

    def head(self, status: int = 200, headers: dict[str, str] | None = None,
             reason: str = "") -> None:
        """Send a status line and headers (nothing is added: no Content-Length unless given)."""
        from http.client import responses

        lines = [f"HTTP/1.1 {status} {reason or responses.get(status, 'Status')}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    headers: dict[str, str]
    hits: int  # requests this path received, this one included


def html(title: str, links: list[str] = (), text: str = "", head: str = "") -> bytes:  # type: ignore[assignment]
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (f"<!doctype html><html><head><title>{title}</title>{head}</head><body>"
            f"<h1>{title}</h1><p>{text or title}</p><ul>{anchors}</ul></body></html>").encode()


def redirect(location: str, status: int = 302) -> Page:
    return Page(status=status, headers={"Location": location}, body=b"",
                content_type="text/plain")


class LocalSite:
    """`with LocalSite(routes) as site: crawl([site.url("/")], ...)`."""

    def __init__(self, routes: dict[str, Page | Handler] | None = None,
                 host: str = "127.0.0.1", fallback: Handler | None = None,
                 port: int = 0) -> None:
        self.routes: dict[str, Page | Handler] = dict(routes or {})
        self.fallback = fallback  # answers paths no route names (generated traps); else 404
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers) in order
        self.connections = 0  # TCP connections accepted
        self.in_flight = 0  # requests being answered now
        self.max_in_flight = 0  # the most requests answered at once
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server((host, port), self._handler_class())  # 0: any free port
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def host(self) -> str:
        return self._server.server_address[0]

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> LocalSite:
        self._thread = threading.Thread(target=self._server.serve_forever, name="localsite",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # raw writers still dribbling or streaming give up
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, path: str, headers: dict[str, str]) -> Page:
        with self._lock:
            self.hits[path] += 1
            self.requests.append((path, headers))
            hits = self.hits[path]
        route = self.routes.get(path, self.fallback)
        if route is None:
            return Page(status=404, body=b"<html><body>not found</body></html>")
        page = route(Request(path, headers, hits)) if callable(route) else route
        if page.status == 200 and _not_modified(page, headers):
            # a slow page is as slow to say it has not changed
            return Page(status=304, body=b"", etag=page.etag, last_modified=page.last_modified,
                        content_type="", delay_s=page.delay_s)
        return page

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out as two writes: with Nagle on, a small body waits for
            # the client's delayed ACK (about 40 ms a page on loopback)
            disable_nagle_algorithm = True

            def setup(self) -> None:
                with site._lock:
                    site.connections += 1
                super().setup()

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                with site._lock:
                    site.in_flight += 1
                    site.max_in_flight = max(site.max_in_flight, site.in_flight)
                try:
                    self._answer()
                finally:
                    with site._lock:
                        site.in_flight -= 1

            def _answer(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                page = site._answer(self.path, headers)
                if page.delay_s:
                    time.sleep(page.delay_s)
                if page.raw is not None:
                    self.close_connection = True
                    try:
                        page.raw(RawConnection(self.wfile, site._stopping))
                    except ConnectionError:  # the client hung up, or the site stopped
                        pass
                    return
                self.send_response(page.status)
                if page.content_type:
                    self.send_header("Content-Type", page.content_type)
                if page.etag:
                    self.send_header("ETag", page.etag)
                if page.last_modified:
                    self.send_header("Last-Modified", formatdate(page.last_modified, usegmt=True))
                for name, value in page.headers.items():
                    self.send_header(name, value)
                if page.chunked:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(page.body)))
                self.end_headers()
                if page.body and page.status != 304:
                    self.wfile.write(page.body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return _Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # a web server's listen queue (nginx: 511), not socketserver's 5: a burst of connections
    # would otherwise lose SYNs and wait out the kernel's 1 s retransmit, timing the loopback
    # server instead of the crawler
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # clients that hang up mid-answer (a crawler refusing a download) are expected
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _not_modified(page: Page, headers: dict[str, str]) -> bool:
    inm = headers.get("if-none-match")
    if inm and page.etag:
        return page.etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*"
    ims = headers.get("if-modified-since")
    if ims and page.last_modified:
        try:
            return page.last_modified <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def generated_site(pages: int, links_per_page: int = 10, text_words: int = 200,
                   nav_links: int = 8, seed: int = 0) -> dict[str, Page | Handler]:
    """A connected site of `pages` HTML pages (/p/0 ... /p/N-1), each linking forwards and
    elsewhere, under a navigation bar of `nav_links` links shared by all pages (as
    documentation sites have)."""
    import random

    rng = random.Random(seed)
    words = ("crawler document token shard model train page link text corpus data "
             "index store fetch parse robots sitemap budget depth domain").split()
    nav = [f"/p/{i}" for i in range(min(pages, nav_links))]
    routes: dict[str, Page | Handler] = {}
    for i in range(pages):
        links = [*nav, f"/p/{(i + 1) % pages}", f"/p/{(i * 7 + 3) % pages}"]
        links += [f"/p/{rng.randrange(pages)}" for _ in range(max(links_per_page - 2, 0))]
        text = " ".join(rng.choice(words) for _ in range(text_words))
        routes[f"/p/{i}"] = Page(body=html(f"Page {i}", links, text), etag=f'"p{i}"')
    routes["/"] = Page(body=html("Home", nav + ["/p/0"]), etag='"home"')
    routes["/robots.txt"] = Page(body=b"User-agent: *\nAllow: /\n", content_type="text/plain")
    return routes
