"""Raising `crawl.concurrency` above `crawl.per_domain_concurrency` never slows a one-site
crawl: the site sees the same crawl, counted at the server (no timing asserts).

Before crawler/downloader.py, global concurrency 16 with per-domain 4 sent up to 16 requests
to the one host at once, over a new TCP connection every second request (the connection pool
keeps per-domain-concurrency idle connections), and a server that dropped SYNs of those
bursts stalled the crawl for a second each time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.localsite import LocalSite, Page, generated_site
from crawler.run import crawl
from pipeline.config import build_config
from pipeline.layout import DataRoot

pytestmark = pytest.mark.slow  # every test crawls: a Scrapy process per crawl

PAGES = 60
PER_DOMAIN = 4
# each answer takes this long, so the crawler always has its full share in flight
ANSWER_S = 0.05


def slow_site() -> dict[str, object]:
    routes = generated_site(PAGES, links_per_page=8)
    for page in routes.values():
        if isinstance(page, Page):
            page.delay_s = ANSWER_S
    return routes


def crawl_counted(tmp_path: Path, concurrency: int) -> tuple[LocalSite, int]:
    cfg = build_config([{"crawl": {
        "allow_private": True, "delay_s": 0.0, "autothrottle": False, "timeout_s": 20.0,
        "concurrency": concurrency, "per_domain_concurrency": PER_DOMAIN}}])
    with LocalSite(slow_site()) as site:
        stats = crawl([site.url("/")], cfg, DataRoot.at(tmp_path / f"c{concurrency}"),
                      progress=False)
    return site, stats.kept


@pytest.mark.parametrize("concurrency", [PER_DOMAIN, 16])
def test_one_site_gets_its_per_domain_share_over_persistent_connections(
        tmp_path: Path, concurrency: int) -> None:
    site, kept = crawl_counted(tmp_path, concurrency)
    assert kept == PAGES + 1  # the pages and the home page, every one stored
    assert len(site.requests) == PAGES + 2  # each fetched once, and robots.txt
    # the limit holds, and the slot is kept full: the frontier does not sit idle
    assert site.max_in_flight == PER_DOMAIN
    # no connection closed and opened again: the crawl costs no extra handshakes
    assert site.connections <= PER_DOMAIN
