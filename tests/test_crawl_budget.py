"""The page budget across re-crawls (crawl.max_pages: the pages one crawl keeps in the
dataset), against a real site on 127.0.0.1: an unchanged site re-crawled stores nothing, a
changed page is updated in its place, new pages fill only the room left, a gone page gives
its place up; and what the stats of a crawl that got nothing say. The re-crawls check every
page (crawl.refresh): those that would not be due yet are tests/test_crawl_revisit.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.job import read_refused
from crawler.localsite import LocalSite, Page, Request, html
from crawler.run import crawl
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore
from tests.test_crawl import test_cfg

pytestmark = pytest.mark.slow  # every test crawls: a Scrapy process per crawl

BUDGET = 12
LINKED = 3 * BUDGET  # pages the home page links to: the site is larger than the budget
SLOW_S = 0.5  # a page this slow on a re-crawl answers after many others have


def stored_paths(root: DataRoot, site: LocalSite) -> set[str]:
    with RawStore(root) as store:
        return {r.source.removeprefix(site.url("")) for r in store.iter_sources()}


def blob_count(root: DataRoot) -> int:
    with RawStore(root) as store:
        return store.count_blobs()


def slow_on_revisit(path: str) -> object:
    """A page that answers at once the first time and slowly afterwards (a server under load
    on the day of the re-crawl): the re-crawl's pages then arrive in another order."""
    page = Page(body=html(path, text=f"the page {path}"), etag=f'"{path}"')

    def answer(req: Request) -> Page:
        return page if req.hits == 1 else Page(body=page.body, etag=page.etag, delay_s=SLOW_S)

    return answer


def big_site() -> dict[str, object]:
    routes: dict[str, object] = {
        "/": Page(body=html("Home", ["/missing", *(f"/p/{i}" for i in range(LINKED))]),
                  etag='"home"'),
        "/robots.txt": Page(body=b"User-agent: *\nAllow: /\n", content_type="text/plain"),
    }
    for i in range(LINKED):
        routes[f"/p/{i}"] = Page(body=html(f"Page {i}", ["/", f"/p/{(i + 1) % LINKED}"]),
                                 etag=f'"p{i}"')
    routes["/p/0"] = slow_on_revisit("/p/0")
    return routes


@pytest.mark.parametrize(("concurrency", "per_domain"), [(8, 4), (16, 4)])
def test_unchanged_site_recrawled_stores_nothing(tmp_path: Path, concurrency: int,
                                                 per_domain: int) -> None:
    root = DataRoot.at(tmp_path / "data")
    cfg = test_cfg(max_pages=BUDGET, concurrency=concurrency,
                   per_domain_concurrency=per_domain, refresh=True)
    with LocalSite(big_site()) as site:
        first = crawl([site.url("/")], cfg, root, progress=False)
        kept_first, blobs_first = stored_paths(root, site), blob_count(root)
        second = crawl([site.url("/")], cfg, root, progress=False)
        kept_second = stored_paths(root, site)
        hits = dict(site.hits)
    # the first crawl keeps exactly the budget, however many requests were in flight; the
    # room the broken link had reserved went to the next link, the others were refused
    assert first.kept == BUDGET and len(kept_first) == BUDGET
    assert first.failed == {"http_404": 1}
    assert first.dropped == {"page_budget": LINKED - (BUDGET - 1)}
    assert "/p/0" in kept_first
    # the re-crawl re-checks those pages (the slow one too) and adds none
    assert second.kept == 0
    assert second.skipped == {"unchanged": BUDGET}
    assert second.n_failed == 0  # the broken link is not asked for: no room for a new page
    assert kept_second == kept_first and blob_count(root) == blobs_first
    assert second.extra["new_pages"] == 0 and second.extra["changed_pages"] == 0
    assert second.extra["held_pages"] == BUDGET
    # pages beyond the budget are refused before any request, in both crawls
    assert all(hits.get(f"/p/{i}", 0) == 0 for i in range(LINKED)
               if f"/p/{i}" not in kept_first)
    assert second.dropped.keys() == {"page_budget"}


def news_site() -> dict[str, object]:
    return {
        "/": Page(body=html("Home", ["/old/1", "/old/2", "/old/3", "/gone"]), etag='"h1"'),
        "/old/1": Page(body=html("Old 1"), etag='"o1"'),
        "/old/2": Page(body=html("Old 2"), etag='"o2"'),
        "/old/3": Page(body=html("Old 3"), last_modified=1_700_000_000.0),
        "/gone": Page(body=html("Soon gone"), etag='"g1"'),
    }


def test_changed_pages_update_in_place_and_new_pages_fill_the_room(tmp_path: Path) -> None:
    """A site that grows, its newest pages linked first (as a news site's front page does):
    the kept pages keep their places, the changed ones are stored again, new pages take the
    room left and no more, and a page that is gone gives its place to the next run."""
    root = DataRoot.at(tmp_path / "data")
    budget = 8
    cfg = test_cfg(max_pages=budget, concurrency=8, per_domain_concurrency=4, refresh=True)
    fresh = [f"/new/{i}" for i in range(6)]
    with LocalSite(news_site()) as site:
        first = crawl([site.url("/")], cfg, root, progress=False)
        assert first.kept == 5 and first.extra["held_pages"] == 5

        site.routes.update({path: Page(body=html(path), etag=f'"{path}"') for path in fresh})
        site.routes["/"] = Page(body=html("Home", [*fresh, "/old/1", "/old/2", "/old/3"]),
                                etag='"h2"')
        site.routes["/old/2"] = Page(body=html("Old 2, edited"), etag='"o2b"')
        del site.routes["/gone"]  # no longer linked, and answers 404
        second = crawl([site.url("/")], cfg, root, progress=False)
        after_second = stored_paths(root, site)
        with RawStore(root) as store:
            old2 = store.get_source(site.url("/old/2"))
        hits_second = dict(site.hits)
        refused = {r["url"].removeprefix(site.url("")): r["reason"]
                   for r in read_refused(Path(second.extra["refused_log"]))}
        third = crawl([site.url("/")], cfg, root, progress=False)
        after_third = stored_paths(root, site)
        fourth = crawl([site.url("/")], cfg, root, progress=False)
        hits = dict(site.hits)

    # the home page and /old/2 changed: new content in their places; /old/1, /old/3 unchanged
    assert second.extra["changed_pages"] == 2
    assert second.skipped == {"unchanged": 2}
    assert old2 is not None and old2.status == "stored" and old2.etag == '"o2b"'
    # /gone is asked for although nothing links to it any more: a 404, its place given up
    assert second.failed == {"http_404": 1}
    assert second.extra["released_pages"] == 1
    # room for 8 - 5 = 3 new pages, the first linked; the others never requested
    assert second.extra["new_pages"] == 3
    assert second.kept == 2 + 3
    assert after_second == {"/", "/old/1", "/old/2", "/old/3", "/gone", *fresh[:3]}
    assert refused == {path: "page_budget" for path in fresh[3:]}
    assert all(hits_second.get(path, 0) == 0 for path in fresh[3:])
    # the next run has the place /gone left: one more new page, and /gone is not asked for
    assert third.extra["new_pages"] == 1 and third.kept == 1
    assert third.skipped == {"unchanged": 7} and third.n_failed == 0
    assert after_third == after_second | {fresh[3]}
    assert third.extra["held_pages"] == budget
    # the grown site, unchanged since: nothing new
    assert fourth.kept == 0 and fourth.skipped == {"unchanged": budget}
    assert fourth.extra["new_pages"] == 0 and fourth.n_failed == 0
    assert hits["/gone"] == 2 and hits.get(fresh[4], 0) == hits.get(fresh[5], 0) == 0


def test_raised_budget_fills_with_new_pages_only(tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path / "data")
    with LocalSite(big_site()) as site:
        first = crawl([site.url("/")], test_cfg(max_pages=BUDGET), root, progress=False)
        kept_first = stored_paths(root, site)
        raised = crawl([site.url("/")], test_cfg(max_pages=BUDGET + 5), root, progress=False)
        kept_raised = stored_paths(root, site)
    assert first.kept == BUDGET
    # the new pages come from the home page's links (a seed: always checked); the pages
    # checked a moment ago are not asked for
    assert raised.skipped == {"unchanged": 1, "not_due": BUDGET - 1}
    assert raised.kept == raised.extra["new_pages"] == 5
    assert kept_first < kept_raised and len(kept_raised) == BUDGET + 5


@pytest.mark.parametrize("recrawl", [False, True])
def test_every_seed_refused_is_a_failure(tmp_path: Path, recrawl: bool) -> None:
    """What the caller sees of a crawl that got nothing because its seeds were refused (here
    private addresses, not allowed): failures, nothing kept, nothing skipped as if done."""
    root = DataRoot.at(tmp_path / "data")
    routes = {"/": Page(body=html("Home", ["/a"])), "/a": Page(body=html("A", ["/b"])),
              "/b": Page(body=html("B"))}
    with LocalSite(routes) as site:
        seeds = [site.url("/"), site.url("/a")]
        if recrawl:  # the same job crawled fine before, with the address allowed
            assert crawl(seeds, test_cfg(), root, progress=False).kept == 3
        stats = crawl(seeds, test_cfg(private_allowlist=[], refresh=True), root, progress=False)
        asked = sum(n for path, n in site.hits.items() if path != "/robots.txt")
    assert stats.failed == {"private_address": 2}
    assert {f.source for f in stats.failures} == set(seeds)
    assert stats.kept == 0 and stats.units == 0
    assert stats.skipped == {}
    assert stats.extra["new_pages"] == stats.extra["changed_pages"] == 0
    assert asked == (3 if recrawl else 0)  # no request reached the site this time


def test_killed_after_placing_a_page_before_storing_it(tmp_path: Path) -> None:
    """A kill between a page's place (pages.txt, fetched.txt) and its row: the resumed
    crawl fetches it again and follows its links as deep as an uninterrupted crawl would."""
    import json

    from crawler.job import JobDir
    from crawler.run import make_seeds

    root = DataRoot.at(tmp_path / "data")
    routes = {"/": Page(body=html("Home", ["/a"])), "/a": Page(body=html("A", ["/a/b"])),
              "/a/b": Page(body=html("B", ["/a/b/c"])), "/a/b/c": Page(body=html("C"))}
    cfg = test_cfg(max_depth=3)
    with LocalSite(routes) as site:
        crawl([site.url("/")], cfg, root, progress=False)
        job = JobDir(root, make_seeds([site.url("/")], cfg.crawl).job)
        # what a kill leaves after /a was placed and listed, before its row was written
        for log in (job.pages_log, job.fetched_log):
            log.write_text(f"{site.url('/')}\n{site.url('/a')}\n")
        state = json.loads(job.state_file.read_text())
        job.state_file.write_text(json.dumps({**state, "status": "running"}))
        with RawStore(root) as store:
            store.db.execute("DELETE FROM sources WHERE source != ?", (site.url("/"),))
        resumed = crawl([site.url("/")], cfg, root, progress=False)
        assert stored_paths(root, site) == {"/", "/a", "/a/b", "/a/b/c"}
    assert resumed.extra["resumed"] is True
    assert resumed.skipped == {"already_fetched": 1}
