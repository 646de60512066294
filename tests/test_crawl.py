"""The crawler against a real site on 127.0.0.1: what is stored, refused (and why), failed."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from crawler.job import read_refused
from crawler.localsite import LocalSite, Page, Request, html, redirect
from crawler.run import crawl
from pipeline.config import Config, build_config
from pipeline.failures import FailureLog
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore

pytestmark = pytest.mark.slow  # every test crawls: a Scrapy process per crawl

MAX_BYTES = 64 * 1024


def make_png() -> bytes:
    import pymupdf

    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 8, 8), False)
    pix.clear_with(200)
    return pix.tobytes("png")


def make_epub() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        zf.writestr("META-INF/container.xml", "<container/>")
    return buf.getvalue()


def make_pdf(text: str) -> bytes:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), text)
    data = doc.tobytes()
    doc.close()
    return data


def test_cfg(**crawl: object) -> Config:
    base: dict[str, object] = {
        "allow_private": False, "private_allowlist": ["127.0.0.1"], "delay_s": 0.0,
        "retry_backoff_s": 0.01, "max_bytes": MAX_BYTES, "timeout_s": 10.0,
    }
    base.update(crawl)
    return build_config([{"crawl": base}])


test_cfg.__test__ = False  # type: ignore[attr-defined]


def flaky(req: Request) -> Page:
    if req.hits == 1:
        return Page(status=500, body=b"<html><body>try again</body></html>")
    return Page(body=html("Flaky", text="second time lucky"))


def site_routes(pdf: bytes, report: bytes) -> dict[str, object]:
    """A site with one of each case the crawler must get right."""
    home_links = [
        "/a", "/doc.pdf", "/notes.txt", "/report", "/readme.md", "/figure.png", "/book.epub",
        "/missing", "/flaky", "/loop-a",
        "/big.pdf", "/stream.txt", "/private/secret", "/calendar?m=1", "/style.css", "/media",
        "/noindex", "/empty", "/moved", "/go-private", "/page?utm_source=news&id=1#top",
        "http://127.0.0.2:{port}/internal", "http://example.org/elsewhere", "#top",
        "mailto:someone@example.org", "javascript:void(0)",
    ]
    calendar = {f"/calendar?m={m}": Page(body=html(f"Month {m}", [f"/calendar?m={m + 1}"]))
                for m in range(1, 30)}
    return {
        "/": lambda req: Page(body=html("Home", [link.format(port=req.headers["host"]
                                                             .split(":")[1])
                                                 for link in home_links])),
        "/robots.txt": Page(body=b"User-agent: *\nDisallow: /private/\n",
                            content_type="text/plain"),
        "/a": Page(body=html("A", ["/a/b"])),
        "/a/b": Page(body=html("B", ["/a/b/c"])),
        "/a/b/c": Page(body=html("C", ["/a/b/c/d"])),
        "/a/b/c/d": Page(body=html("D")),
        "/doc.pdf": Page(body=pdf, content_type="application/pdf"),
        "/notes.txt": Page(body=b"Plain notes.\nSecond line.\n", content_type="text/plain"),
        "/report": Page(body=report, content_type="application/octet-stream"),
        "/readme.md": Page(body=b"# Read me\n\nSome *markdown*.\n", content_type="text/markdown"),
        "/figure.png": Page(body=make_png(), content_type="image/png"),
        "/book.epub": Page(body=make_epub(), content_type="application/epub+zip"),
        "/flaky": flaky,
        "/loop-a": redirect("/loop-b"),
        "/loop-b": redirect("/loop-a"),
        "/big.pdf": Page(body=b"%PDF-1.4\n" + b"0" * (MAX_BYTES * 2),
                         content_type="application/pdf"),
        "/stream.txt": Page(body=b"line\n" * MAX_BYTES, content_type="text/plain", chunked=True),
        "/private/secret": Page(body=html("Secret")),
        "/private/start": Page(body=html("Secret start")),
        "/style.css": Page(body=b"body{}", content_type="text/css"),
        "/media": Page(body=b"\x00\x00\x00\x18ftypmp42" * 100, content_type="video/mp4"),
        "/noindex": Page(body=html("No index", ["/from-noindex"],
                                   head='<meta name="robots" content="noindex">')),
        "/from-noindex": Page(body=html("Linked from a noindex page")),
        "/empty": Page(body=b"", content_type="text/html"),
        "/moved": redirect("/a", 301),
        "/go-private": redirect("http://127.0.0.2:9/x"),
        "/page?id=1": Page(body=html("Page one")),
        **calendar,
    }


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory):
    """One crawl of the case site, shared by the assertions below."""
    root = DataRoot.at(tmp_path_factory.mktemp("crawl") / "data")
    cfg = test_cfg(max_depth=3, allowed_domains=["127.0.0.1", "127.0.0.2"])
    routes = site_routes(make_pdf("Hello from a PDF"), make_pdf("A report"))
    with LocalSite(routes) as site:
        stats = crawl([site.url("/"), site.url("/private/start")], cfg, root, progress=False)
        yield site, root, stats


def rows_by_path(root: DataRoot, site: LocalSite) -> dict[str, object]:
    with RawStore(root) as store:
        return {r.source.removeprefix(site.url("")): r for r in store.iter_sources()}


def test_stores_exactly_the_pages_and_documents(crawled) -> None:
    site, root, stats = crawled
    rows = rows_by_path(root, site)
    assert set(rows) == {
        "/", "/a", "/a/b", "/a/b/c", "/doc.pdf", "/notes.txt", "/report", "/flaky",
        "/readme.md", "/figure.png", "/book.epub",
        "/calendar?m=1", "/calendar?m=2", "/calendar?m=3", "/from-noindex", "/moved",
        "/page?id=1",
    }
    kinds = {path: (row.mime, row.http_status) for path, row in rows.items()}
    assert kinds["/doc.pdf"] == ("application/pdf", 200)
    assert kinds["/report"] == ("application/pdf", 200)  # octet-stream, sniffed as PDF
    assert kinds["/notes.txt"] == ("text/plain", 200)
    assert kinds["/readme.md"] == ("text/markdown", 200)
    assert kinds["/figure.png"] == ("image/png", 200)
    assert kinds["/book.epub"] == ("application/epub+zip", 200)
    assert kinds["/a"] == ("text/html", 200)
    # redirects: the row is keyed by the URL asked for and names where it ended
    assert rows["/moved"].final_url == site.url("/a")
    assert rows["/moved"].sha256 == rows["/a"].sha256
    assert {rows["/moved"].status, rows["/a"].status} == {"stored", "duplicate"}
    # depth, referrer, validators
    assert rows["/a/b/c"].depth == 3 and rows["/a/b/c"].referrer == site.url("/a/b")
    assert rows["/"].depth == 0 and rows["/"].referrer == ""
    # blobs hold the bytes served
    with RawStore(root) as store:
        blob = store.get_blob(rows["/doc.pdf"].sha256)
        assert root.blob(blob.sha256, blob.ext).read_bytes() == site.routes["/doc.pdf"].body
        assert blob.ext == "pdf"
    assert stats.kept == 16  # /moved or /a is a duplicate of the other
    assert stats.skipped == {"duplicate_content": 1}


def test_refuses_with_reasons(crawled) -> None:
    site, root, stats = crawled
    refused = {(r["url"].removeprefix(site.url("")), r["reason"])
               for r in read_refused(Path(stats.extra["refused_log"]))}
    port = site.port
    assert refused == {
        ("http://example.org/elsewhere", "offsite"),
        (f"http://127.0.0.2:{port}/internal", "private_address"),
        ("/go-private", "private_address"),  # after the redirect
        ("/private/secret", "robots_txt"),
        ("/calendar?m=4", "max_depth"),  # the trap ends at the depth limit
        ("/a/b/c/d", "max_depth"),
        ("/style.css", "file_type"),  # by its suffix, never fetched
        ("/media", "file_type"),  # by its Content-Type, download stopped
        ("/noindex", "robots_noindex"),
    }
    assert stats.dropped == {"offsite": 1, "private_address": 2, "robots_txt": 1,
                             "max_depth": 2, "file_type": 2, "robots_noindex": 1}
    assert site.hits["/style.css"] == 0 and site.hits["/private/secret"] == 0
    assert site.hits["/calendar?m=4"] == 0


def test_failures_are_counted_and_logged(crawled) -> None:
    site, root, stats = crawled
    failures = {(f.source.removeprefix(site.url("")), f.error)
                for f in FailureLog(root.raw_failures).read()}
    assert failures == {
        ("/missing", "http_404"),
        ("/loop-a", "redirect_loop"),
        ("/big.pdf", "too_large"),  # Content-Length over the limit
        ("/stream.txt", "too_large"),  # no Content-Length: cut while streaming
        ("/empty", "empty"),
        ("/private/start", "robots_txt"),  # a refused start URL is a failure
    }
    assert stats.failed == {"http_404": 1, "redirect_loop": 1, "too_large": 2, "empty": 1,
                            "robots_txt": 1}


def test_retries_then_succeeds_and_normalises_urls(crawled) -> None:
    site, root, stats = crawled
    assert site.hits["/flaky"] == 2  # a 500, then the retry
    assert stats.extra["retries"] >= 1
    assert site.hits["/page?id=1"] == 1  # utm_source and the fragment were dropped
    assert site.hits["/missing"] == 1  # a 404 is not retried
    paths = [path for path, _ in site.requests]
    assert all("utm_" not in p for p in paths)
    agents = {headers.get("user-agent") for _, headers in site.requests}
    assert agents == {test_cfg().crawl.user_agent}


def test_recrawl_sends_conditional_requests(tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path / "data")
    routes = {
        "/": Page(body=html("Home", ["/one", "/two", "/dated"]), etag='"h1"'),
        "/one": Page(body=html("One"), etag='"o1"'),
        "/two": Page(body=html("Two"), etag='"t1"'),
        "/dated": Page(body=html("Dated"), last_modified=1_700_000_000.0),
    }
    cfg = test_cfg()
    with LocalSite(routes) as site:
        first = crawl([site.url("/")], cfg, root, progress=False)
        assert first.kept == 4
        with RawStore(root) as store:
            before = {r.source: r for r in store.iter_sources()}
            blobs_before = store.count_blobs()
        routes["/two"] = Page(body=html("Two, edited"), etag='"t2"')
        site.routes.update(routes)
        site.requests.clear()
        # every page, though checked a moment ago (crawl.refresh: `cllm crawl --refresh`)
        second = crawl([site.url("/")], test_cfg(refresh=True), root, progress=False)
        conditional = {path: headers for path, headers in site.requests if path != "/robots.txt"}
    assert conditional["/one"]["if-none-match"] == '"o1"'
    assert conditional["/dated"]["if-modified-since"].endswith("GMT")
    assert second.kept == 1  # only the edited page is new content
    assert second.skipped == {"unchanged": 3}
    assert second.extra["generation"] == 2
    with RawStore(root) as store:
        after = {r.source: r for r in store.iter_sources()}
        assert store.count_blobs() == blobs_before + 1
    two = site.url("/two")
    assert after[two].sha256 != before[two].sha256 and after[two].status == "stored"
    assert after[two].etag == '"t2"'
    one = site.url("/one")
    assert after[one].status == "unchanged" and after[one].http_status == 304
    assert after[one].sha256 == before[one].sha256 and after[one].etag == '"o1"'


def test_page_budget_and_domain_cap(tmp_path: Path) -> None:
    from crawler.localsite import generated_site

    with LocalSite(generated_site(40, links_per_page=6)) as site:
        budget = crawl([site.url("/")], test_cfg(max_pages=10), DataRoot.at(tmp_path / "a"),
                       progress=False)
        local = site.url("/").replace("127.0.0.1", "localhost")
        capped = crawl([site.url("/"), local],
                       test_cfg(max_pages=100, max_pages_per_domain=4,
                                private_allowlist=["127.0.0.0/8"]),
                       DataRoot.at(tmp_path / "b"), progress=False)
    assert budget.kept == 10
    assert budget.extra["close_reason"] == "page_budget"
    assert budget.extra["status"] == "finished"
    with RawStore(DataRoot.at(tmp_path / "b")) as store:
        hosts = [r.source.split("/")[2].split(":")[0] for r in store.iter_sources()]
    assert sorted(hosts) == ["127.0.0.1"] * 4 + ["localhost"] * 4
    assert capped.dropped["domain_cap"] > 0


def test_sitemaps_seed_the_crawl(tmp_path: Path) -> None:
    urlset = ('<?xml version="1.0" encoding="UTF-8"?>'
              '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
              '<url><loc>{base}/s1</loc></url><url><loc>{base}/s2</loc></url>'
              '<url><loc>http://example.org/x</loc></url></urlset>')

    def sitemap_gz(req: Request) -> Page:
        base = f"http://{req.headers['host']}"
        return Page(body=gzip.compress(urlset.format(base=base).encode()),
                    content_type="application/gzip")

    def index(req: Request) -> Page:
        base = f"http://{req.headers['host']}"
        body = ('<?xml version="1.0"?><sitemapindex '
                'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f'<sitemap><loc>{base}/sitemap-1.xml.gz</loc></sitemap>'
                '<sitemap><loc>http://example.org/sitemap.xml</loc></sitemap></sitemapindex>')
        return Page(body=body.encode(), content_type="application/xml")

    routes = {"/": Page(body=html("Home")), "/s1": Page(body=html("S1", ["/s3"])),
              "/s2": Page(body=html("S2")), "/s3": Page(body=html("S3")),
              "/sitemap.xml": index, "/sitemap-1.xml.gz": sitemap_gz}
    root = DataRoot.at(tmp_path / "data")
    with LocalSite(routes) as site:
        stats = crawl([site.url("/")], test_cfg(sitemaps=[site.url("/sitemap.xml")]), root,
                      progress=False)
        rows = rows_by_path(root, site)
    assert set(rows) == {"/", "/s1", "/s2", "/s3"}
    assert rows["/s3"].depth == 1
    assert stats.dropped == {"offsite": 2}  # a page and a sitemap on another site


def test_config_filters_keep_only_what_is_asked(tmp_path: Path) -> None:
    """file_types=[pdf]: HTML is fetched to find links but not stored; blocklist, exclude
    patterns and denied domains refuse before any request."""
    pdf = make_pdf("The manual")
    routes = {
        "/": Page(body=html("Home", ["/guide", "/old/x.pdf", "/guide/print", "/notes.txt",
                                     "http://127.0.0.1.nip.io/y.pdf"])),
        "/guide": Page(body=html("Guide", ["/guide/manual.pdf"])),
        "/guide/manual.pdf": Page(body=pdf, content_type="application/pdf"),
        "/old/x.pdf": Page(body=pdf, content_type="application/pdf"),
        "/guide/print": Page(body=html("Print")),
        "/notes.txt": Page(body=b"notes", content_type="text/plain"),
    }
    root = DataRoot.at(tmp_path / "data")
    with LocalSite(routes) as site:
        blocklist = tmp_path / "blocklist.txt"
        blocklist.write_text(f"prefix:{site.url('/old/')}\n")
        cfg = test_cfg(file_types=["pdf"], blocklist_file=str(blocklist),
                       exclude_patterns=["/print$"], allowed_domains=["127.0.0.1", "nip.io"],
                       denied_domains=["127.0.0.1.nip.io"])
        stats = crawl([site.url("/")], cfg, root, progress=False)
        rows = rows_by_path(root, site)
        hits = dict(site.hits)
    assert set(rows) == {"/guide/manual.pdf"}
    refused = {(r["url"].removeprefix(site.url("")), r["reason"])
               for r in read_refused(Path(stats.extra["refused_log"]))}
    assert refused == {("/", "file_type"), ("/guide", "file_type"),
                       ("/old/x.pdf", "blocklisted"), ("/guide/print", "excluded_pattern"),
                       ("/notes.txt", "file_type"),
                       ("http://127.0.0.1.nip.io/y.pdf", "denied_domain")}
    assert stats.n_failed == 0
    assert hits.get("/old/x.pdf", 0) == hits.get("/guide/print", 0) == 0


def test_private_address_found_by_dns_is_refused(tmp_path: Path) -> None:
    """localhost is a name: it is resolved, and its loopback address refused, before any
    connection (no server runs here: a connection attempt would fail differently)."""
    stats = crawl(["http://localhost:9/x"], test_cfg(private_allowlist=[]),
                  DataRoot.at(tmp_path / "data"), progress=False)
    (failure,) = stats.failures
    assert (failure.source, failure.error) == ("http://localhost:9/x", "private_address")
    assert "localhost resolves to 127.0.0.1" in failure.message


def test_a_crawl_started_beside_another_crawler_package_runs_ours(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The crawl process is started with -P: a crawler/ package in the folder the command
    runs in (a Scrapy project's, say) is not what it runs, and it ends as ours does."""
    decoy = tmp_path / "project" / "crawler"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("")
    (decoy / "child.py").write_text("raise SystemExit('the decoy ran')\n")
    monkeypatch.chdir(decoy.parent)
    with LocalSite({"/": Page(body=html("Home", ["/a"])), "/a": Page(body=html("A"))}) as site:
        stats = crawl([site.url("/")], test_cfg(), DataRoot.at(tmp_path / "data"),
                      progress=False)
    assert (stats.kept, stats.n_failed) == (2, 0)
    with RawStore(DataRoot.at(tmp_path / "data")) as store:
        assert store.count_sources() == 2
