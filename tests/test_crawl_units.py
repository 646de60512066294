"""The crawler's decisions without a network: URL normalisation and policy, content kinds,
links and robots directives, the address guard, job generations, the page budget, retry
waits."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path, PurePosixPath

import pytest

from crawler.budget import GO, WAIT, PageBudget
from crawler.content import classify
from crawler.job import FetchedLog, JobDir, PlaceLog
from crawler.links import robots_directives, scan_html
from crawler.netguard import AddressPolicy, is_loopback_host
from crawler.urls import Blocklist, Normalizer, Reason, UrlPolicy, path_suffix
from pipeline.config import build_config
from pipeline.errors import ConfigError
from pipeline.layout import DataRoot

KINDS = frozenset({"html", "pdf", "txt", "md"})


def crawl_cfg(**values: object):  # noqa: ANN201
    return build_config([{"crawl": values}]).crawl


@pytest.fixture
def normalize() -> Normalizer:
    return Normalizer.from_config(crawl_cfg())


@pytest.mark.parametrize(("given", "expected"), [
    ("HTTP://Docs.Example.ORG:80/a#frag", "http://docs.example.org/a"),
    ("https://example.org:443", "https://example.org/"),
    ("https://example.org:8443/x", "https://example.org:8443/x"),
    ("https://example.org/p?utm_source=x&id=2&utm_medium=y&fbclid=z", "https://example.org/p?id=2"),
    ("https://example.org/p?utm_source=x", "https://example.org/p"),
    ("https://example.org/a b/ü?q=ä b", "https://example.org/a%20b/%C3%BC?q=%C3%A4%20b"),
    ("https://example.org/a%20b", "https://example.org/a%20b"),
    ("https://bücher.example/x", "https://xn--bcher-kva.example/x"),
    ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ("ftp://example.org/file", None),
    ("mailto:a@example.org", None),
    ("https://example.org:99999/", None),
    ("not a url", None),
])
def test_normalize(normalize: Normalizer, given: str, expected: str | None) -> None:
    assert normalize(given) == expected


@pytest.mark.parametrize("link", [
    "HTTP://Docs.Example.ORG:80/a#frag", "https://example.org/p?utm_source=x#a?b=c",
    "https://example.org/a b/#ü", "http://[::1]:8080/x#[", "https://example.org:99999/#x",
    "https://example.org#", "  https://example.org/x#y  ", "https://example.org/a\n#b\tc",
    "https://exa mple.org/#x", "mailto:a@example.org#x", "#only", "http://h:1/#frag#again",
])
def test_a_fragment_never_changes_the_normal_form(normalize: Normalizer, link: str) -> None:
    # the spider normalises a link with a fragment by the link without it, once for all
    assert normalize(link) == normalize(link.partition("#")[0])


def policy(**values: object) -> UrlPolicy:
    cfg = crawl_cfg(**values)
    return UrlPolicy.from_config(cfg, ["https://docs.example.org/"], Normalizer.from_config(cfg))


def test_policy_domains_and_suffixes() -> None:
    p = policy(denied_domains=["private.docs.example.org"], file_types=["html", "pdf"])
    assert p.check("https://docs.example.org/guide") is None
    assert p.check("https://api.docs.example.org/x") is None  # a subdomain of an allowed host
    assert p.check("https://example.org/") == Reason.OFFSITE
    assert p.check("https://evildocs.example.org/") == Reason.OFFSITE
    assert p.check("https://private.docs.example.org/x") == Reason.DENIED_DOMAIN
    assert p.check("https://docs.example.org/a.pdf") is None
    assert p.check("https://docs.example.org/a.txt") == Reason.FILE_TYPE  # not a kept kind
    assert p.check("https://docs.example.org/a.zip") == Reason.FILE_TYPE
    assert p.check("https://docs.example.org/a.php") is None  # unknown: fetched and sniffed
    assert p.check("https://docs.example.org/" + "x" * 3000) == Reason.URL_TOO_LONG
    assert p.check("https://docs.example.org/a/b/a/b/a/b/a/b") == Reason.TRAP
    assert p.check("https://docs.example.org/a/b/c/d/e/f") is None


def test_policy_patterns_and_blocklist(tmp_path: Path) -> None:
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("# blocked\n"
                         "https://docs.example.org/exact?utm_source=x\n"
                         "domain:ads.docs.example.org\n"
                         "prefix:https://docs.example.org/old/\n"
                         "regex:/v[0-9]+/\n\n")
    p = policy(exclude_patterns=[r"\?page=\d{3,}", "/print$"], blocklist_file=str(blocklist))
    assert p.check("https://docs.example.org/list?page=999") == Reason.EXCLUDED
    assert p.check("https://docs.example.org/list?page=9") is None
    assert p.check("https://docs.example.org/x/print") == Reason.EXCLUDED
    assert p.check("https://docs.example.org/exact") == Reason.BLOCKLISTED  # normalised
    assert p.check("https://ads.docs.example.org/banner") == Reason.BLOCKLISTED
    assert p.check("https://docs.example.org/old/page") == Reason.BLOCKLISTED
    assert p.check("https://docs.example.org/api/v2/x") == Reason.BLOCKLISTED
    assert p.check("https://docs.example.org/new/page") is None


@pytest.mark.parametrize(("line", "message"), [
    ("exact:ftp://example.org/x", ":2: not an http(s) URL"),
    ("regex:(", ":2: bad regex"),
    ("path:/x", ":2: unknown rule 'path'"),
])
def test_blocklist_errors_name_the_line(normalize: Normalizer, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Blocklist.parse(["# header", line], normalize, origin="blocklist.txt")


def test_config_checks_crawl_lists() -> None:
    with pytest.raises(ConfigError, match=r"crawl.exclude_patterns\[0\]"):
        crawl_cfg(exclude_patterns=["("])
    with pytest.raises(ConfigError, match=r"crawl.file_types\[1\]"):
        crawl_cfg(file_types=["pdf", "exe"])  # zip is a kind since archives are read
    with pytest.raises(ConfigError, match=r"crawl.private_allowlist\[0\]"):
        crawl_cfg(private_allowlist=["localhost"])
    with pytest.raises(ConfigError, match="crawl.redis_url"):
        crawl_cfg(redis_url="http://localhost:6379")


PDF = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n"


@pytest.mark.parametrize(("body", "ctype", "url", "kind", "reason"), [
    (PDF, "application/octet-stream", "http://x/report", "pdf", ""),
    (PDF, "text/html", "http://x/a.html", "pdf", ""),  # the bytes win over the header
    (b"<div>fragment</div>", "text/html; charset=utf-8", "http://x/f", "html", ""),
    (b"<!doctype html><p>x", None, "http://x/", "html", ""),
    (b"# Title\ntext", "text/plain", "http://x/README.md", "md", ""),
    (b"# Title\ntext", "text/markdown", "http://x/readme", "md", ""),
    (b"<!doctype html><p>x", "text/plain", "http://x/source", "txt", ""),
    (b"plain words", "application/octet-stream", "http://x/notes", "txt", ""),
    (b"\x00\x01\x02\x03" * 100, "application/octet-stream", "http://x/blob", None,
     Reason.UNSUPPORTED),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "image/png", "http://x/a.png", "png", Reason.FILE_TYPE),
])
def test_classify(body: bytes, ctype: str | None, url: str, kind: str | None,
                  reason: str) -> None:
    verdict = classify(body, ctype, url, KINDS)
    assert verdict.reason == reason
    if kind is not None:
        assert verdict.sniffed is not None and verdict.sniffed.ext == kind


@pytest.mark.parametrize("path", [
    "", "/", "/a/b.html", "/a/b.HTML", "/a/b.tar.gz", "/a/b.", "/a/.hidden", "/a/.hidden.txt",
    "/a/b.html/", "/a/b.pdf/.", "/a.b/c", "/a//b.pdf", "/a/./b.csv", "noslash.js", "/a/b..c",
])
def test_path_suffix_is_purepath_suffix(path: str) -> None:
    assert path_suffix(path) == PurePosixPath(path).suffix


def test_scan_html_links_base_and_robots() -> None:
    page = ('<html><head><base href="/docs/"><meta name="robots" content="NOINDEX">'
            '</head><body><a href="intro.html">i</a> <a href=" /abs ">a</a>'
            '<a href="https://other.org/x">o</a><a href="#top">t</a>'
            '<a href="mailto:x@y">m</a><a href="JavaScript:go()">j</a><area href="../up">'
            '<a>no href</a><a href="caf\u00e9">c</a></body></html>').encode()
    scan = scan_html(page, "https://ex.org/start/page")
    assert scan.links == ["https://ex.org/docs/intro.html", "https://ex.org/abs",
                          "https://other.org/x", "https://ex.org/up",
                          "https://ex.org/docs/caf\u00e9"]
    assert (scan.noindex, scan.nofollow) == (True, False)
    assert scan_html(b"\x00\x01 not html", "https://ex.org/").links == []
    odd = scan_html(b'<a href="/x">x</a>', "https://ex.org/", encoding="no-such-charset")
    assert odd.links == ["https://ex.org/x"]


def test_scan_html_reads_links_as_a_browser_does() -> None:
    """Not links: those in a comment or a script; one link: an <a> with href twice (the first
    counts); entities are decoded."""
    page = (b'<!-- <a href="/commented">c</a> --><script>var s = "<a href=/scripted>";</script>'
            b'<a href="/q?a=1&amp;b=2" HREF="/second">q</a><A Href=/bare>b</A>')
    assert scan_html(page, "https://ex.org/").links == ["https://ex.org/q?a=1&b=2",
                                                         "https://ex.org/bare"]


@pytest.mark.parametrize(("body", "header_charset"), [
    ('<meta charset="iso-8859-1"><a href="/caf\u00e9">c</a>'.encode("latin-1"), None),
    ('<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
     '<a href="/\u0436">c</a>'.encode("cp1251"), None),
    ('<a href="/caf\u00e9">c</a>'.encode("latin-1"), "ISO-8859-1"),  # said by Content-Type
    ('<a href="/caf\u00e9">c</a>'.encode("utf-8"), None),  # nothing declared: UTF-8
    ('<a href="/caf\u00e9">c</a>'.encode("utf-8"), "utf8"),
    ('\ufeff<a href="/caf\u00e9">c</a>'.encode("utf-16-le"), None),  # its BOM says
])
def test_scan_html_decodes_hrefs_in_the_pages_encoding(body: bytes, header_charset: str | None
                                                       ) -> None:
    expected = "https://ex.org/\u0436" if b"1251" in body else "https://ex.org/caf\u00e9"
    assert scan_html(body, "https://ex.org/", encoding=header_charset).links == [expected]


@pytest.mark.parametrize(("content", "expected"), [
    ("noindex, nofollow", (True, True)),
    ("none", (True, True)),
    ("index, follow", (False, False)),
    ("cllm-crawler: nofollow", (False, True)),
    ("otherbot: noindex", (False, False)),
    ("unavailable_after: 2030-01-01", (False, False)),
    ("", (False, False)),
])
def test_robots_directives(content: str, expected: tuple[bool, bool]) -> None:
    assert robots_directives(content, "cllm-crawler") == expected


def test_address_policy() -> None:
    strict = AddressPolicy.build(False, [])
    for private in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.4", "169.254.169.254",
                    "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1",
                    "224.0.0.1", "240.0.0.1"):
        assert strict.refusal(private), private
    for public in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "1.1.1.1"):
        assert strict.refusal(public) is None, public
    some = AddressPolicy.build(False, ["127.0.0.1", "10.0.0.0/8"])
    assert some.refusal("127.0.0.1") is None and some.refusal("10.9.9.9") is None
    assert some.refusal("127.0.0.2") and some.refusal("192.168.1.1")
    assert AddressPolicy.build(True, []).refusal("10.0.0.1") is None
    assert is_loopback_host("localhost") and is_loopback_host("127.0.0.5")
    assert is_loopback_host("[::1]") and not is_loopback_host("example.org")


def test_job_generations(tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path)
    job = JobDir(root, "j1")
    state, resumed = job.begin(["https://ex.org/"], [])
    assert (state.generation, resumed, state.status) == (1, False, "running")
    job.scrapy_dir.mkdir(parents=True)
    job.end(state, "shutdown")  # SIGINT: paused, Scrapy's queue kept
    state, resumed = job.begin(["https://ex.org/"], [])
    assert (state.generation, resumed, state.runs) == (1, True, 2)
    assert job.scrapy_dir.is_dir()
    # killed while running: resumed, but Scrapy's unclosed queue is dropped
    state, resumed = job.begin(["https://ex.org/"], [])
    assert (state.generation, resumed) == (1, True) and not job.scrapy_dir.exists()
    log = FetchedLog(job.fetched_log)
    log.add("https://ex.org/a")
    log.close()
    job.end(state, "finished")
    state, resumed = job.begin(["https://ex.org/"], [])
    assert (state.generation, resumed, state.runs) == (2, False, 1)
    assert not job.fetched_log.exists()  # a new generation starts from nothing
    job.end(state, "shutdown")
    state, resumed = job.begin(["https://ex.org/"], [], restart=True)  # --restart
    assert (state.generation, resumed) == (3, False)


def test_fetched_log_ignores_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "fetched.txt"
    path.write_text("https://a.org/1\nhttps://b.org/2\nhttps://b.org/3\nhttps://b.or")
    log = FetchedLog(path)
    assert len(log) == 3 and log.per_host["b.org"] == 2 and "https://b.or" not in log
    log.close()


def test_place_log_survives_generations_and_compacts(tmp_path: Path) -> None:
    job = JobDir(DataRoot.at(tmp_path), "j1")
    state, _ = job.begin(["https://ex.org/"], [])
    places = PlaceLog(job.pages_log, max_pages=10, per_host=10)
    for url in ("https://ex.org/", "https://ex.org/a", "https://ex.org/b"):
        places.add(url)
    places.release("https://ex.org/a")
    places.close()
    job.end(state, "finished")
    job.begin(["https://ex.org/"], [])  # a new generation: fetched.txt goes, pages.txt stays
    assert job.pages_log.read_text() == \
        "https://ex.org/\nhttps://ex.org/a\nhttps://ex.org/b\n-https://ex.org/a\n"
    with open(job.pages_log, "a") as fh:
        fh.write("https://ex.org/c\nhttps://ex.org/d\nhttps://ex.o")  # torn by a kill
    reopened = PlaceLog(job.pages_log, max_pages=10, per_host=10)
    assert list(reopened.urls) == ["https://ex.org/", "https://ex.org/b", "https://ex.org/c",
                                   "https://ex.org/d"]
    reopened.close()
    # a lowered budget keeps the oldest places, and the file says so
    lowered = PlaceLog(job.pages_log, max_pages=2, per_host=10)
    assert list(lowered.urls) == ["https://ex.org/", "https://ex.org/b"]
    lowered.close()
    assert job.pages_log.read_text() == "https://ex.org/\nhttps://ex.org/b\n"


def test_job_from_before_pages_log_keeps_its_pages(tmp_path: Path) -> None:
    """A job crawled before pages.txt existed: the pages its last generation kept."""
    job = JobDir(DataRoot.at(tmp_path), "j1")
    state, _ = job.begin(["https://ex.org/"], [])
    log = FetchedLog(job.fetched_log)
    log.add("https://ex.org/")
    log.add("https://ex.org/a")
    log.close()
    job.end(state, "finished")
    assert not job.pages_log.exists()
    job.begin(["https://ex.org/"], [])
    assert PlaceLog(job.pages_log, 10, 10).urls.keys() == {"https://ex.org/", "https://ex.org/a"}


def budget(folder: Path, held: list[str], max_pages: int, per_host: int = 100,
           shared: bool = False) -> PageBudget:
    folder.mkdir(exist_ok=True)
    places = PlaceLog(folder / "pages.txt", max_pages, per_host)
    for url in held:
        places.add(url)
    return PageBudget(places, max_pages, per_host, shared=shared)


def test_budget_reserves_room_for_pages_in_flight(tmp_path: Path) -> None:
    b = budget(tmp_path, [], max_pages=2)
    assert [b.offer(u) for u in ("https://a.org/1", "https://a.org/2", "https://a.org/3")] == \
        [GO, GO, WAIT]  # two in flight fill the room: the third waits, it is not refused
    b.wait("https://a.org/3", "payload-3")
    assert b.take("https://a.org/1") is None
    assert b.admit_waiting() == ([], [])  # the room is still reserved by /2
    assert b.settle("https://a.org/2")  # /2 was a 404: its room goes to the waiting link
    assert b.admit_waiting() == (["payload-3"], [])
    assert b.take("https://a.org/3") is None
    assert b.full and b.spent
    assert b.offer("https://a.org/4") == Reason.PAGE_BUDGET
    assert b.take("https://a.org/5") == Reason.PAGE_BUDGET  # fetched without a reservation
    assert b.figures()["new_pages"] == 2


def test_budget_keeps_held_pages_and_frees_room_for_the_next_run(tmp_path: Path) -> None:
    held = ["https://a.org/", "https://a.org/x", "https://b.org/y"]
    b = budget(tmp_path, held, max_pages=3)
    assert b.offer("https://a.org/new") == Reason.PAGE_BUDGET  # no room: refused, not waiting
    assert all(b.offer(u) == GO and b.refusal(u) is None for u in held)
    assert not b.spent  # held pages are still to be re-checked
    assert not b.settle("https://a.org/x", release=True)  # gone: its place is given up ...
    assert b.offer("https://a.org/new") == Reason.PAGE_BUDGET  # ... for the next run
    b.checked("https://a.org/")
    assert b.take("https://b.org/y") is None and b.spent
    b.places.close()
    nxt = PageBudget(PlaceLog(tmp_path / "pages.txt", 3, 100), 3, 100)
    assert nxt.held == ["https://a.org/", "https://b.org/y"]
    assert nxt.offer("https://a.org/new") == GO


def test_budget_per_host_cap_and_shared_frontier(tmp_path: Path) -> None:
    b = budget(tmp_path, ["https://a.org/1"], max_pages=10, per_host=2)
    assert b.offer("https://a.org/2") == GO
    assert b.offer("https://a.org/3") == WAIT  # a.org's last place is reserved
    assert b.offer("https://b.org/1") == GO
    assert b.take("https://a.org/2") is None
    assert b.offer("https://a.org/3") == Reason.DOMAIN_CAP
    b.places.close()
    shared = budget(tmp_path / "s", [], max_pages=1, shared=True)
    # other workers take the requests: nothing is reserved, the pipeline gives back
    assert [shared.offer("https://a.org/1"), shared.offer("https://a.org/2")] == [GO, GO]
    assert shared.take("https://a.org/1") is None
    assert shared.take("https://a.org/2") == Reason.PAGE_BUDGET


def test_retry_waits() -> None:
    from scrapy.http import Response
    from scrapy.settings import Settings

    from crawler.middlewares import BackoffRetryMiddleware, retry_after_s

    mw = BackoffRetryMiddleware(Settings({"RETRY_BACKOFF_S": 0.5, "RETRY_BACKOFF_MAX_S": 10}))
    assert [mw.delay_for(n, None) for n in (1, 2, 3, 6)] == [0.5, 1.0, 2.0, 10.0]
    busy = Response("https://ex.org/", status=503, headers={"Retry-After": "7"})
    assert mw.delay_for(1, busy) == 7.0
    assert retry_after_s(b"Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_s(b"soon") == 0.0


def test_polite_throttle_honours_crawl_delay_and_spares_loopback() -> None:
    from scrapy import Request
    from scrapy.core.downloader import Slot
    from scrapy.core.engine import ExecutionEngine
    from scrapy.http import Response
    from scrapy.robotstxt import ProtegoRobotParser
    from scrapy.utils.test import get_crawler

    from crawler.extensions import PoliteThrottle

    crawler = get_crawler(settings_dict={
        "AUTOTHROTTLE_ENABLED": True, "DOWNLOAD_DELAY": 0.25, "AUTOTHROTTLE_START_DELAY": 0.25,
        "AUTOTHROTTLE_MAX_DELAY": 60.0, "AUTOTHROTTLE_TARGET_CONCURRENCY": 1.0,
        "ROBOTSTXT_USER_AGENT": "cllm-crawler",
        # no download handlers: nothing is fetched, and they would want a running reactor
        "DOWNLOAD_HANDLERS": {"http": None, "https": None}})
    crawler.engine = ExecutionEngine(crawler, lambda _: None)  # its real downloader's slots
    slots = crawler.engine.downloader.slots
    slots.update({h: Slot(4, 0.25, 0.0) for h in ("docs.example.org", "b.org", "127.0.0.1")})
    throttle = PoliteThrottle.from_crawler(crawler)
    robots = ProtegoRobotParser(b"User-agent: cllm-crawler\nCrawl-delay: 2\n", None)
    throttle._robots_parsed(robots, Request("https://docs.example.org/robots.txt"))
    assert slots["docs.example.org"].delay == 2.0

    def downloaded(host: str, latency: float) -> float:
        request = Request(f"https://{host}/page", meta={"download_slot": host,
                                                         "download_latency": latency})
        throttle._response_downloaded(Response(request.url, request=request), request, None)
        return slots[host].delay

    assert downloaded("docs.example.org", 0.01) == 2.0  # a fast server: still its Crawl-delay
    assert downloaded("b.org", 1.0) == 1.0  # a slow server: AutoThrottle backs off
    assert downloaded("b.org", 0.01) == pytest.approx(0.505)  # and comes back, halfway
    assert downloaded("127.0.0.1", 0.5) == 0.0  # this machine: no delay


def test_saved_queue_touches_disk_only_when_closed_with_requests_left(tmp_path: Path) -> None:
    from types import SimpleNamespace

    import scrapy

    from crawler.queues import FifoSavedQueue

    class Spider(scrapy.Spider):
        name = "s"

        def parse(self, response):  # noqa: ANN001, ANN201
            return None

    crawler = SimpleNamespace(spider=Spider())
    key = tmp_path / "requests.queue" / "-1"
    queue = FifoSavedQueue(crawler, str(key))
    for i in range(5):
        queue.push(scrapy.Request(f"https://ex.org/{i}", callback=crawler.spider.parse,
                                  meta={"depth": 1}))
    assert queue.pop().url == "https://ex.org/0" and not key.exists()  # nothing written yet
    queue.close()  # a stop: the four left are saved for the next run
    again = FifoSavedQueue(crawler, str(key))
    assert [again.pop() for _ in range(2)][1].meta == {"depth": 1}
    assert len(again) == 2 and again.peek().url == "https://ex.org/3"
    assert again.pop().callback == crawler.spider.parse
    again.pop()
    again.close()  # drained: nothing left on disk
    assert not key.exists()
    assert len(FifoSavedQueue(crawler, str(key))) == 0


def test_saved_queue_spills_past_its_memory_share_and_keeps_fifo_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import scrapy

    import crawler.queues
    from crawler.queues import FifoSavedQueue

    class Spider(scrapy.Spider):
        name = "s"

        def parse(self, response):  # noqa: ANN001, ANN201
            return None

    monkeypatch.setattr(crawler.queues, "MEMORY_REQUESTS", 3)
    crawler_ = SimpleNamespace(spider=Spider())
    key = tmp_path / "requests.queue" / "-1"
    spill = Path(f"{key}.spill")
    queue = FifoSavedQueue(crawler_, str(key))

    def push(i: int) -> None:
        queue.push(scrapy.Request(f"https://ex.org/{i}", callback=crawler_.spider.parse))

    for i in range(8):
        push(i)
    assert len(queue) == 8 and len(queue._requests) == 3 and spill.is_dir()
    got = [queue.pop().url for _ in range(4)]  # memory ran dry after 3: refilled from disk
    push(8)  # behind the spilled ones, not in memory ahead of them
    got += [queue.pop().url for _ in range(2)]
    queue.close()  # a stop with 3 left (6, 7, 8): saved in order, the spill removed
    assert not spill.exists()
    again = FifoSavedQueue(crawler_, str(key))
    got += [again.pop().url for _ in range(len(again))]
    assert got == [f"https://ex.org/{i}" for i in range(9)]
    assert again.pop() is None and not spill.exists()


@pytest.mark.parametrize(("cache_control", "expires", "fresh_s"), [
    ("max-age=600", "", 600.0),
    ("public, max-age=\"60\"", "", 60.0),
    ("no-cache, max-age=600", "", 0.0),
    ("", "Thu, 01 Jan 1970 00:10:00 GMT", 600.0),  # against Date below
    ("max-age=999999999", "", 30 * 86400.0),  # a year or more is a month: it is re-checked
    ("max-age=soon", "", 0.0),
    ("", "", 0.0),
])
def test_fresh_seconds(cache_control: str, expires: str, fresh_s: float) -> None:
    from crawler.revisit import fresh_seconds

    assert fresh_seconds(cache_control, expires, "Thu, 01 Jan 1970 00:00:00 GMT") == fresh_s


def test_is_due() -> None:
    from crawler.revisit import is_due

    now = 1_800_000_000.0
    hour_ago = "2027-01-15T07:00:00+00:00"  # now is 2027-01-15T08:00:00Z
    assert not is_due(hour_ago, 0.0, 2 * 3600, now)
    assert is_due(hour_ago, 0.0, 1800, now)
    assert not is_due(hour_ago, 7200.0, 1800, now)  # it said it stays fresh for two hours
    assert is_due("not a date", 0.0, 3600, now) and is_due("2030-01-01T00:00:00+00:00", 0, 60,
                                                         now)


def test_settings_leave_out_the_components_they_switch_off() -> None:
    from scrapy.settings import Settings
    from scrapy.utils.misc import is_generator_with_return_value

    from crawler import settings as ours
    from crawler.spiders.site import SiteSpider

    s = Settings()
    s.setmodule(ours, priority="project")
    ours.drop_unused_components(s)
    for name, unused in ours.UNUSED_COMPONENTS.items():
        assert not set(unused) & set(s.getwithbase(name.removesuffix("_BASE")))
    assert "crawler.middlewares.GuardMiddleware" in s.getwithbase("DOWNLOADER_MIDDLEWARES")
    assert "scrapy.downloadermiddlewares.useragent.UserAgentMiddleware" in \
        s.getwithbase("DOWNLOADER_MIDDLEWARES")
    assert not s.getbool("COOKIES_ENABLED") and not s.getbool("TELNETCONSOLE_ENABLED")
    assert not s.getbool("REMOTE_CONTROL_ENABLED") and not s.getbool("DOWNLOADER_STATS")
    # the warning switched off (WARN_ON_GENERATOR_RETURN_VALUE) has nothing to find here
    assert not s.getbool("WARN_ON_GENERATOR_RETURN_VALUE")
    for callback in (SiteSpider.parse, SiteSpider.parse_sitemap):
        assert not is_generator_with_return_value(callback)


def test_page_notes_are_written_in_batches_and_read_before_their_commit(tmp_path: Path
                                                                         ) -> None:
    import sqlite3

    from crawler.revisit import COMMIT_EVERY, PageNote, PageNotes

    path = tmp_path / "notes.sqlite"
    notes = PageNotes(path)
    first = PageNote("a" * 64, ("https://ex.org/b", "https://ex.org/c#x"), False, 60.0)
    notes.put("https://ex.org/a", first)
    notes.put("https://ex.org/a", PageNote("b" * 64, (), True))  # the last note of a URL wins
    assert notes.get("https://ex.org/a") == PageNote("b" * 64, (), True)  # before its commit

    def rows() -> list[tuple]:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT * FROM notes ORDER BY url").fetchall()

    assert rows() == []  # not committed yet: a kill now loses them, as a cache may
    for n in range(COMMIT_EVERY - 2):
        notes.put(f"https://ex.org/p{n:04d}", first)
    assert len(rows()) == COMMIT_EVERY - 2 + 1  # committed at COMMIT_EVERY notes
    notes.put("https://ex.org/z", first)
    notes.close()
    again = PageNotes(path)
    assert again.get("https://ex.org/a") == PageNote("b" * 64, (), True)
    assert again.get("https://ex.org/z") == first
    assert again.fresh_s()["https://ex.org/z"] == ("a" * 64, 60.0)
    assert rows()[0] == ("https://ex.org/a", "b" * 64, "[]", 1, 0.0)
    again.close()


def test_scrapy_logger_makes_only_the_records_our_handler_shows() -> None:
    import logging

    from crawler.child import quiet_scrapy_logger

    logger = logging.getLogger("scrapy.core.engine")
    before = logging.getLogger("scrapy").level
    try:
        quiet_scrapy_logger(logging.WARNING)  # scrapy's lines shown from ERROR up
        assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.ERROR)
        quiet_scrapy_logger(logging.DEBUG)  # -v: from INFO up
        assert not logger.isEnabledFor(logging.DEBUG) and logger.isEnabledFor(logging.INFO)
    finally:
        logging.getLogger("scrapy").setLevel(before)


def test_scrapys_deprecated_aliases_keep_their_module_without_a_stack_walk() -> None:
    """crawler.child.find_callers_cheaply: Scrapy's TLS and HTTP modules import as before,
    each deprecated alias named after the module that made it, and inspect.stack (65 ms of
    every crawl's start) is never called; a fresh interpreter, as the crawl process is."""
    script = textwrap.dedent("""
        import inspect, sys
        import crawler.child
        crawler.child.find_callers_cheaply()
        calls = []
        real = inspect.stack
        inspect.stack = lambda *a, **k: calls.append(1) or real(*a, **k)
        import scrapy.core.downloader.handlers.http11
        from scrapy.core.downloader import contextfactory, tls
        print(tls.ScrapyClientTLSOptions.__module__,
              contextfactory.ScrapyClientContextFactory.__module__, len(calls))
    """)
    out = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.split() == ["scrapy.core.downloader.tls",
                                  "scrapy.core.downloader.contextfactory", "0"]


@pytest.mark.parametrize(("body", "may"), [
    (b'<html><head><meta http-equiv="Refresh" content="0; url=/b"></head></html>', True),
    (b'<html><head><META HTTP-EQUIV="REFRESH" CONTENT="0;URL=/b"></head></html>', True),
    ('<meta http-equiv="refresh" content="0; url=/b">'.encode("utf-16"), True),
    ("<p>é</p>".encode() * 3000 + b'<meta http-equiv="refresh" content="0">', False),
    (b"<html><body>" + b"x" * 20000 + b"</body></html>", False),
])
def test_a_meta_refresh_is_looked_for_only_where_scrapy_could_find_one(body: bytes,
                                                                       may: bool) -> None:
    """crawler.middlewares.may_refresh: it says yes where Scrapy's get_meta_refresh itself
    finds a refresh (a UTF-16 page too) and no where it finds none (one past its first
    4,096 characters, none at all), so no page is passed by that Scrapy would redirect."""
    from scrapy.http import HtmlResponse
    from scrapy.utils.response import get_meta_refresh

    from crawler.middlewares import may_refresh

    encoding = "utf-16" if body.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8"
    response = HtmlResponse("http://127.0.0.1/a", body=body, encoding=encoding)
    assert (get_meta_refresh(response)[1] is not None) is may
    assert may_refresh(body) is may
