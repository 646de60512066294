"""Re-runs of a finished crawl against a real site on 127.0.0.1 (crawler/revisit.py): pages
checked lately are not asked for again, seeds and sitemaps always are (so new pages are
found), a page checked longer ago than crawl.revisit_after_s or than it said it stays fresh is
checked, and `cllm crawl --refresh` checks every page."""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from crawler.job import JobDir
from crawler.localsite import LocalSite, Page, Request, html
from crawler.revisit import PageNotes
from crawler.run import crawl, make_seeds
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore
from tests.test_crawl import test_cfg
from tests.test_crawl_budget import blob_count, stored_paths

pytestmark = pytest.mark.slow  # every test crawls: a Scrapy process per crawl

CONTROL = {"/", "/robots.txt", "/sitemap.xml"}  # what a re-run asks for with nothing due
DAYS_2_S = 2 * 86400


def sitemap(paths: list[str]):  # noqa: ANN201 - a route
    def answer(req: Request) -> Page:
        base = f"http://{req.headers['host']}"
        locs = "".join(f"<url><loc>{base}{p}</loc></url>" for p in paths)
        body = ('<?xml version="1.0" encoding="UTF-8"?><urlset '
                f'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>')
        return Page(body=body.encode(), content_type="application/xml")

    return answer


def docs_site() -> dict[str, object]:
    """An index page (the seed) over a few levels of pages, and a page found only in the
    sitemap; every page with an ETag, so a check of an unchanged page is a 304."""
    return {
        "/": Page(body=html("Home", ["/a", "/b"]), etag='"home-1"'),
        "/robots.txt": Page(body=b"User-agent: *\nAllow: /\n", content_type="text/plain"),
        "/sitemap.xml": sitemap(["/listed"]),
        "/a": Page(body=html("A", ["/a/1", "/a/2"]), etag='"a"'),
        "/a/1": Page(body=html("A1", ["/a/1/x"]), etag='"a1"'),
        "/a/2": Page(body=html("A2"), etag='"a2"'),
        "/a/1/x": Page(body=html("A1x"), last_modified=1_700_000_000.0),
        "/b": Page(body=html("B"), etag='"b"'),
        "/listed": Page(body=html("Listed"), etag='"listed"'),
    }


PAGES = {"/", "/a", "/a/1", "/a/2", "/a/1/x", "/b", "/listed"}


def crawl_site(site: LocalSite, root: DataRoot, **crawl_cfg: object):  # noqa: ANN201
    """One run; returns its stats and the requests each path received in it."""
    site.hits.clear()
    stats = crawl([site.url("/")], test_cfg(sitemaps=[site.url("/sitemap.xml")], **crawl_cfg),
                  root, progress=False)
    return stats, Counter(site.hits)


def age(root: DataRoot, url: str, seconds: float) -> None:
    """Make a page's last check `seconds` older, as if the run had been that long ago."""
    from datetime import datetime, timedelta

    with RawStore(root) as store:
        row = store.get_source(url)
        assert row is not None
        then = datetime.fromisoformat(row.fetched_at) - timedelta(seconds=seconds)
        store.upsert_source(replace(row, fetched_at=then.isoformat(timespec="seconds")))


def test_a_rerun_with_nothing_new_asks_only_for_seeds_robots_and_sitemaps(tmp_path: Path
                                                                          ) -> None:
    root = DataRoot.at(tmp_path / "data")
    with LocalSite(docs_site()) as site:
        first, _ = crawl_site(site, root)
        blobs = blob_count(root)
        second, hits = crawl_site(site, root)
        job = JobDir(root, make_seeds([site.url("/")], test_cfg(
            sitemaps=[site.url("/sitemap.xml")]).crawl).job)
        notes = PageNotes(job.notes_db)
        note_a = notes.get(site.url("/a"))
        notes.close()
    assert first.kept == len(PAGES) and stored_paths(root, site) == PAGES
    assert set(hits) == CONTROL and set(hits.values()) == {1}
    assert second.kept == 0 and blob_count(root) == blobs  # nothing stored
    assert second.skipped == {"unchanged": 1, "not_due": len(PAGES) - 1}
    assert second.n_failed == 0 and second.extra["new_pages"] == 0
    assert second.extra["held_pages"] == len(PAGES)
    # what a check of /a that answers 304 follows, without reading its stored copy again
    assert note_a is not None and note_a.links == (site.url("/a/1"), site.url("/a/2"))


def test_new_pages_linked_from_the_seed_or_listed_in_the_sitemap_are_found(tmp_path: Path
                                                                           ) -> None:
    root = DataRoot.at(tmp_path / "data")
    with LocalSite(docs_site()) as site:
        crawl_site(site, root)
        site.routes["/"] = Page(body=html("Home", ["/a", "/b", "/new"]), etag='"home-2"')
        site.routes["/new"] = Page(body=html("New", ["/new/deeper", "/a"]), etag='"new"')
        site.routes["/new/deeper"] = Page(body=html("Deeper"), etag='"deeper"')
        site.routes["/sitemap.xml"] = sitemap(["/listed", "/listed-2"])
        site.routes["/listed-2"] = Page(body=html("Listed 2"), etag='"listed-2"')
        again, hits = crawl_site(site, root)
    fresh = {"/new", "/new/deeper", "/listed-2"}
    assert set(hits) == CONTROL | fresh  # the new pages, and what they link to that is new
    assert stored_paths(root, site) == PAGES | fresh
    assert again.extra["new_pages"] == len(fresh)
    assert again.extra["changed_pages"] == 1  # the home page
    assert again.kept == len(fresh) + 1
    assert again.skipped == {"not_due": len(PAGES) - 1}


def test_a_page_checked_longer_ago_than_revisit_after_is_checked(tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path / "data")
    with LocalSite(docs_site()) as site:
        crawl_site(site, root)
        age(root, site.url("/a"), DAYS_2_S)
        age(root, site.url("/a/1/x"), DAYS_2_S)
        site.routes["/a"] = Page(body=html("A", ["/a/1", "/a/2", "/a/3"]), etag='"a-2"')
        site.routes["/a/3"] = Page(body=html("A3"), etag='"a3"')
        again, hits = crawl_site(site, root)
        with RawStore(root) as store:
            dated = store.get_source(site.url("/a/1/x"))
    # /a changed: stored again, and its new link followed; /a/1/x unchanged (a 304 to its
    # If-Modified-Since); the pages checked lately are left alone
    assert set(hits) == CONTROL | {"/a", "/a/3", "/a/1/x"}
    assert again.skipped == {"unchanged": 2, "not_due": 4}
    assert again.extra["changed_pages"] == 1 and again.extra["new_pages"] == 1
    assert dated is not None and dated.status == "unchanged" and dated.http_status == 304


def test_a_page_that_says_it_stays_fresh_waits_longer(tmp_path: Path) -> None:
    """revisit_after_s = 0 checks every page every run, but not one whose Cache-Control
    max-age (or Expires) has not run out; no-cache is checked."""
    routes = docs_site()
    routes["/b"] = Page(body=html("B"), etag='"b"', headers={"Cache-Control": "max-age=3600"})
    routes["/a/2"] = Page(body=html("A2"), etag='"a2"',
                          headers={"Expires": "Thu, 01 Jan 2099 00:00:00 GMT"})
    routes["/a"] = Page(body=html("A", ["/a/1", "/a/2"]), etag='"a"',
                        headers={"Cache-Control": "no-cache"})
    root = DataRoot.at(tmp_path / "data")
    with LocalSite(routes) as site:
        crawl_site(site, root, revisit_after_s=0.0)
        again, hits = crawl_site(site, root, revisit_after_s=0.0)
        age(root, site.url("/b"), 7200)  # its hour is up
        third, hits_third = crawl_site(site, root, revisit_after_s=0.0)
    assert set(hits) == PAGES - {"/b", "/a/2"} | CONTROL
    assert again.skipped == {"unchanged": len(PAGES) - 2, "not_due": 2}
    assert "/b" in hits_third and "/a/2" not in hits_third
    assert third.skipped == {"unchanged": len(PAGES) - 1, "not_due": 1}


def test_cllm_crawl_refresh_checks_every_page(tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = DataRoot.at(tmp_path / "data")
    with LocalSite(docs_site()) as site:
        crawl_site(site, root)
        site.hits.clear()
        done = subprocess.run(
            ["cllm", "--root", str(root.path), "crawl", site.url("/"), "--sitemap",
             site.url("/sitemap.xml"), "--allow-private", "--delay", "0", "--refresh", "-q"],
            env=cli_env, capture_output=True, text=True, timeout=120)
        hits = Counter(site.hits)
    assert done.returncode == 0, done.stderr
    assert set(hits) == PAGES | CONTROL and set(hits.values()) == {1}
    assert f"unchanged={len(PAGES)}" in done.stdout and "not_due" not in done.stdout
