"""Links and robots directives of an HTML page, from one lxml parse.

Cheaper than Scrapy's LinkExtractor, which builds parsel selectors and canonicalises every
link: here only `<a>`/`<area>` hrefs are read, joined to the base URL, and nothing is
canonicalised; the spider normalises only the links it has not seen before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urljoin, urlsplit

from lxml import etree

SKIP_PREFIXES = ("javascript:", "mailto:", "tel:", "data:", "about:", "#", "file:", "sms:")
# compiled XPath: the hrefs come out of libxml2 as one list, in document order, instead of
# a Python step per element (a page of 180 links: 0.57 ms a page became 0.33 ms)
_LINK_HREFS = etree.XPath("//a/@href | //area/@href", smart_strings=False)
_BASE_HREFS = etree.XPath("//base/@href", smart_strings=False)
_ROBOTS_METAS = etree.XPath("//meta[@name]", smart_strings=False)
CHARSET_PEEK = 2048  # bytes searched for a charset declaration


@dataclass(slots=True)
class PageScan:
    links: list[str] = field(default_factory=list)  # absolute, in page order, may repeat
    noindex: bool = False
    nofollow: bool = False


@lru_cache(maxsize=16)
def _parser(encoding: str | None) -> etree.HTMLParser:
    return etree.HTMLParser(encoding=encoding, remove_comments=True, remove_pis=True,
                            no_network=True, recover=True, default_doctype=False)


def robots_directives(content: str, agent: str) -> tuple[bool, bool]:
    """(noindex, nofollow) from a robots meta content or an X-Robots-Tag value."""
    content = content.lower()
    target, sep, rules = content.partition(":")
    target = target.strip()
    names_a_bot = bool(sep and target) and not any(c in target for c in " ,") \
        and target != "unavailable_after"
    if names_a_bot:  # "otherbot: noindex" is for that bot only
        if target != agent:
            return False, False
        content = rules
    tokens = {t.strip() for t in content.split(",")}
    none = "none" in tokens
    return none or "noindex" in tokens, none or "nofollow" in tokens


def _joiner(base: str):  # noqa: ANN202 - a small closure
    parts = urlsplit(base)
    origin = f"{parts.scheme}://{parts.netloc}"

    def join(href: str) -> str:
        if href.startswith(("http://", "https://")):
            return href
        if href.startswith("/") and not href.startswith("//") and "/." not in href:
            return origin + href
        return urljoin(base, href)

    return join


def scan_html(body: bytes, url: str, encoding: str | None = None, agent: str = "") -> PageScan:
    """Links (a/area href) and robots meta directives of an HTML document."""
    if encoding is None and b"charset" not in body[:CHARSET_PEEK].lower():
        encoding = "utf-8"  # no declaration anywhere: libxml2 would assume latin-1
    try:
        parser = _parser(encoding)
    except LookupError:  # a charset name Python does not know: let libxml2 guess
        parser = _parser(None)
    try:
        root = etree.fromstring(body, parser)
    except (etree.XMLSyntaxError, ValueError):
        return PageScan()
    if root is None:
        return PageScan()
    scan = PageScan()
    if agent:
        agent = agent.lower()
    for meta in _ROBOTS_METAS(root):
        name = (meta.get("name") or "").lower()
        if name == "robots" or (agent and name == agent):
            noindex, nofollow = robots_directives(meta.get("content") or "", agent)
            scan.noindex |= noindex
            scan.nofollow |= nofollow
    base = url
    for href in _BASE_HREFS(root):  # the last one wins, as the links are joined after all
        href = href.strip()
        if href:
            base = urljoin(url, href)
    join = _joiner(base)
    scan.links = [join(h) for h in (h.strip() for h in _LINK_HREFS(root))
                  if h and not h.lower().startswith(SKIP_PREFIXES)]
    return scan
