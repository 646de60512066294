"""Request fingerprints for the dupefilter and the JOBDIR seen-set.

Our URLs are normalised once, when a link is kept (crawler.urls.Normalizer), so the
fingerprint hashes the URL as it is. Scrapy's default fingerprinter canonicalises every URL
again with w3lib, which costs more than fetching a page from a fast local server.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler


def url_fingerprint(method: str, url: str, body: bytes = b"") -> bytes:
    h = hashlib.sha1(method.encode("ascii"), usedforsecurity=False)
    h.update(b" ")
    h.update(url.encode("utf-8"))
    if body:
        h.update(b" ")
        h.update(body)
    return h.digest()


class UrlFingerprinter:
    def __init__(self, crawler: Crawler | None = None) -> None:
        pass

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> UrlFingerprinter:
        return cls(crawler)

    def fingerprint(self, request: Request) -> bytes:
        return url_fingerprint(request.method, request.url, request.body)
