"""Crawl benchmark: our crawler next to a bare Scrapy CrawlSpider, on the same local site.

A generated site of --pages documentation-like pages (a shared navigation bar of --nav links,
--links links in the text, --words words) is served on 127.0.0.1. In each run, measured side
by side:

  cllm        crawler.run.crawl(): link policy, guard, raw store (every page stored, fsynced)
  bare        a CrawlSpider with Rule(LinkExtractor(), follow=True) that only follows links
  fetch-only  a Spider fetching the same URLs from a list, no link extraction (the download
              cost alone: an upper bound for any crawler here)

All with the same concurrency, no delays, no AutoThrottle, robots.txt off. Rates are pages
per second between the spider opening and closing (process start-up excluded), medians of
--runs runs, in alternating order:

    .venv/bin/python bench/crawl.py [--pages 3000] [--runs 3] [--concurrency 16]
    .venv/bin/python bench/crawl.py --nav 50 --links 12 --words 800   # fewer links a page
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from crawler.localsite import LocalSite, generated_site
from crawler.run import crawl
from pipeline.config import build_config
from pipeline.layout import DataRoot


def run_cllm(url: str, pages: int, concurrency: int) -> dict[str, Any]:
    cfg = build_config([{"crawl": {
        "allow_private": True, "delay_s": 0.0, "autothrottle": False, "obey_robots": False,
        "concurrency": concurrency, "per_domain_concurrency": concurrency,
        "max_pages": pages + 10, "max_depth": 1000, "retries": 0}}])
    tmp = tempfile.mkdtemp(prefix="bench-crawl-")
    try:
        stats = crawl([url], cfg, DataRoot.at(tmp), progress=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"pages": stats.units, "stored": stats.kept,
            "seconds": stats.extra["crawl_seconds"]}


def run_scrapy(kind: str, url: str, concurrency: int, urls_file: str = "") -> dict[str, Any]:
    """The bare spiders run in their own process too (the reactor cannot restart)."""
    out = subprocess.run([sys.executable, __file__, "--child", kind, url, str(concurrency),
                          urls_file], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(kind: str, url: str, concurrency: int, urls_file: str) -> None:
    import scrapy
    from scrapy.crawler import CrawlerProcess
    from scrapy.linkextractors import LinkExtractor
    from scrapy.spiders import CrawlSpider, Rule

    class BareCrawlSpider(CrawlSpider):
        name = "bare"
        allowed_domains = ["127.0.0.1"]
        start_urls = [url]
        rules = (Rule(LinkExtractor(), follow=True),)

    class FetchOnlySpider(scrapy.Spider):
        name = "fetch"

        async def start(self):  # noqa: ANN202
            with open(urls_file) as fh:
                for line in fh:
                    yield scrapy.Request(line.strip(), callback=self.parse)

        def parse(self, response):  # noqa: ANN001, ANN201
            return None

    process = CrawlerProcess({
        "CONCURRENT_REQUESTS": concurrency, "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False, "ROBOTSTXT_OBEY": False,
        "LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False, "REMOTE_CONTROL_ENABLED": False,
        "RETRY_ENABLED": False,
    })
    crawler = process.create_crawler(BareCrawlSpider if kind == "bare" else FetchOnlySpider)
    process.crawl(crawler)
    process.start()
    stats = crawler.stats.get_stats()
    print(json.dumps({"pages": stats.get("response_received_count", 0),
                      "seconds": stats["elapsed_time_seconds"]}))


def rate(result: dict[str, Any]) -> float:
    return result["pages"] / result["seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=3000)
    # defaults shaped like a documentation site: a large sidebar, some links in the text
    p.add_argument("--nav", type=int, default=150, help="navigation links on every page")
    p.add_argument("--links", type=int, default=30, help="links in each page's text")
    p.add_argument("--words", type=int, default=1500)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--child", nargs=4, metavar=("KIND", "URL", "CONCURRENCY", "URLS"),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, url, conc, urls_file = args.child
        child(kind, url, int(conc), urls_file)
        return
    routes = generated_site(args.pages, links_per_page=args.links, text_words=args.words,
                            nav_links=args.nav)
    size = statistics.mean(len(r.body) for r in routes.values() if hasattr(r, "body"))
    results: dict[str, list[float]] = {"cllm": [], "bare": [], "fetch": []}
    with LocalSite(routes) as site, tempfile.NamedTemporaryFile("w", suffix=".txt") as urls:
        urls.write("".join(site.url(path) + "\n" for path in routes if path != "/robots.txt"))
        urls.flush()
        print(f"site: {args.pages} pages of {size / 1024:.1f} KB, {args.nav} nav + {args.links} "
              f"text links each, on {site.url('/')}; concurrency {args.concurrency}")
        for n in range(args.runs):
            order = ["cllm", "bare", "fetch"] if n % 2 == 0 else ["fetch", "bare", "cllm"]
            line = {}
            for kind in order:
                if kind == "cllm":
                    result = run_cllm(site.url("/"), args.pages, args.concurrency)
                else:
                    result = run_scrapy(kind, site.url("/"), args.concurrency, urls.name)
                results[kind].append(rate(result))
                line[kind] = f"{kind} {rate(result):7.1f} pages/s ({result['pages']} pages" + \
                    (f", {result['stored']} stored)" if "stored" in result else ")")
            print(f"run {n + 1}: " + " | ".join(line[k] for k in ("cllm", "bare", "fetch")),
                  flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"median of {args.runs}: cllm {med['cllm']:.1f} pages/s, bare CrawlSpider "
          f"{med['bare']:.1f} pages/s, ratio {med['cllm'] / med['bare']:.2f}x (target >= 0.7x); "
          f"fetch-only {med['fetch']:.1f} pages/s")


if __name__ == "__main__":
    main()
