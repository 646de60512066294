"""Crawl benchmark: our crawler next to a tuned bare Scrapy spider and the fetch-only ceiling.

Two site shapes are served on 127.0.0.1, each by an aiohttp server in a process of its own
(SiteServer: so that the crawlers, not the server, are measured):

  docs   documentation-like: 12 to 50 links a page, pages of 20 to 200 KB, a few index pages
         with thousands of links (as the Python docs' genindex)
  dense  the generated site of crawler.localsite with a 150-link sidebar and 30 links in the
         text of every page (180 links a page)

On each shape, four fetches of the site, every one a whole process timed from its start to
its exit:

  cllm        crawler.run.crawl(): link policy, guard, budget, raw store (every page stored
              and fsynced, its row written); two processes, the crawl's and its raw store
              writer's, which scans, hashes and stores the pages beside Scrapy's reactor
  bare        a plain scrapy.Spider that follows every same-site link through a seen-set
              (no fingerprinting of links met twice), storing nothing
  fetch-only  a scrapy.Spider fetching the site's URLs from a list: the download cost alone,
              the ceiling of a crawler that does all its work in Scrapy's one process
  client      aiohttp fetching the URL list, no Scrapy: the server's ceiling, to show that
              the server is not what bounds the others

The same settings on every Scrapy side: cookies off, downloader stats off, robots.txt
obeyed, no delay, no AutoThrottle, no retries, the same concurrency and per-domain
concurrency, CONCURRENT_ITEMS 4 (bare_settings). Rates are pages per second of
whole-process time, medians of --runs runs in rotating order; next to them each side's CPU
per page (its process's user + system time, which the machine's load stretches far less
than wall time) and its start-up and exit (process time outside the crawl itself).
Two more rows time our crawl of the docs site at per-domain concurrency 1, 2, 4, 8 and 16
under a global concurrency of 16: one site, and four sites of a quarter of the pages each
served at once (on 127.0.0.1-4). The last times a re-crawl of a finished crawl of the dense
site (--recrawl-pages, 3000): the first crawl, the same command again (nothing due: seeds,
robots.txt and sitemaps only), and with --refresh (every page a 304). Results go to
bench/results/crawl.json.

    .venv/bin/python bench/crawl.py [--pages 500] [--runs 5] [--concurrency 16]
                                    [--recrawl-pages 3000]
    .venv/bin/python bench/crawl.py --quick | --smoke   # see bench/common.py
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crawler.localsite import Page, generated_site, html
from crawler.run import crawl
from pipeline.config import build_config
from pipeline.layout import DataRoot

RESULTS = Path(__file__).resolve().parent / "results" / "crawl.json"
SIDES = ("cllm", "bare", "fetch", "client")
SWEEP = (1, 2, 4, 8, 16)
WORDS = ("the of and to a in is that for it as with be on not this by are or from at an "
         "crawler document token shard model train page link text corpus data index store "
         "fetch parse robots sitemap budget depth domain function module class return value "
         "argument object method attribute exception keyword default string number").split()
INDEX_PAGES = 3  # genindex-like pages, linked from every page's sidebar
ANCHORS_PER_PAGE = 18  # an index links each page this many times (its entries' anchors):
# 500 pages give 3 index pages of ~3000 links, as the Python docs' genindex pages have


# --- the sites ----------------------------------------------------------------------------


def _text(rng: random.Random, size: int) -> str:
    """About `size` bytes of words in paragraphs."""
    words = rng.choices(WORDS, k=size // 6)
    return "</p><p>".join(" ".join(words[i:i + 80]) for i in range(0, len(words), 80))


def docs_site(pages: int, seed: int = 0) -> dict[str, Page]:
    """A documentation-like site: /d/0 ... /d/N-1 of 20-200 KB (log-uniform) with 12-50
    links each (a short sidebar, next/previous, cross references), and INDEX_PAGES index
    pages that link every page's anchors."""
    rng = random.Random(seed)
    paths = [f"/d/{i}.html" for i in range(pages)]
    index = [f"/genindex-{k}.html" for k in range(INDEX_PAGES)]
    routes: dict[str, Page] = {}
    for i, path in enumerate(paths):
        n_links = rng.randint(12, 50)
        links = index + [paths[(i + 1) % pages], paths[i - 1]]
        links += [rng.choice(paths) for _ in range(n_links - len(links))]
        size = int(20_000 * 10 ** rng.uniform(0, 1))
        routes[path] = Page(body=html(f"Section {i}", links, _text(rng, size)))
    for k, path in enumerate(index):
        part = paths[k::INDEX_PAGES]
        links = [f"{p}#entry-{a}" for p in part for a in range(ANCHORS_PER_PAGE)]
        routes[path] = Page(body=html(f"Index {k}", links + index))
    routes["/"] = Page(body=html("Contents", index + paths[:20]))
    routes["/robots.txt"] = Page(body=b"User-agent: *\nAllow: /\n", content_type="text/plain")
    return routes


def dense_site(pages: int) -> dict[str, Any]:
    return generated_site(pages, links_per_page=30, text_words=1500, nav_links=150)


def html_paths(routes: dict[str, Any]) -> list[str]:
    return [path for path in routes if path != "/robots.txt"]


def plain_site(pages: int, seed: int = 0) -> dict[str, Any]:
    """Pages of ~5 KB with 20 links each under a 20-link navigation bar: small enough that
    bench/scale.py's 20,000 pages are 100 MB, served from memory."""
    return generated_site(pages, links_per_page=20, text_words=600, nav_links=20, seed=seed)


def site_routes(shape: str, pages: int, seed: int = 0) -> dict[str, Any]:
    shapes = {"docs": docs_site, "dense": lambda n, _: dense_site(n), "plain": plain_site}
    return shapes[shape](pages, seed)


# --- the server, a process of its own -----------------------------------------------------


class SiteServer:
    """A site shape served by aiohttp in a process of its own (`crawl.py --serve`).

    Not crawler.localsite's LocalSite, an http.server thread in this process, which shares
    the process (and its GIL) with the benchmark. It also wrote headers and body apart with
    Nagle on, so a body under the loopback MSS waited for the client's delayed ACK (40 ms;
    LocalSite now turns Nagle off). Measured with an aiohttp client fetching the URL list at
    concurrency 16, before that fix: LocalSite ~590 pages/s (docs) and ~345 (dense), this
    server 2100-3500.
    """

    def __init__(self, shape: str, pages: int, host: str = "127.0.0.1", seed: int = 0) -> None:
        self.args = [shape, str(pages), host, str(seed)]
        self.host = host
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> SiteServer:
        self._proc = subprocess.Popen([sys.executable, __file__, "--serve", *self.args],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the site server did not start (said {line!r})")
        self.port = int(line)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # its end of the pipe: the server stops
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(shape: str, pages: int, host: str, seed: int) -> None:
    """Serve a site shape until stdin closes; the port goes out on stdout first."""
    import asyncio

    from aiohttp import web

    answers = {}
    for path, page in site_routes(shape, pages, seed).items():
        headers = {"Content-Type": page.content_type, **page.headers}
        if page.etag:
            headers["ETag"] = page.etag
        answers[path] = (page.status, page.body, headers)

    async def answer(request: web.Request) -> web.Response:
        found = answers.get(request.path_qs)
        if found is None:
            return web.Response(status=404, body=b"<html><body>not found</body></html>")
        status, body, headers = found
        if status == 200 and headers.get("ETag") and \
                request.headers.get("If-None-Match") == headers["ETag"]:
            return web.Response(status=304, headers={"ETag": headers["ETag"]})  # a re-crawl's
        return web.Response(status=status, body=body, headers=headers)

    async def main() -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, 0, backlog=511).start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
        await runner.cleanup()

    asyncio.run(main())


# --- the crawls, each a process ---------------------------------------------------------


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's children that have exited: around a
    crawl, what its process used, which the machine's load does not stretch as it does
    wall time (the site servers are children too, but exit only after the rows)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cllm_config(pages: int, concurrency: int, per_domain: int, **crawl_keys: Any) -> Any:
    return build_config([{"crawl": {
        "allow_private": True, "delay_s": 0.0, "autothrottle": False, "obey_robots": True,
        "concurrency": concurrency, "per_domain_concurrency": per_domain,
        "max_pages": pages + 10, "max_depth": 1000, "retries": 0, **crawl_keys}}])


def timed_crawl(seeds: list[str], cfg: Any, root: str) -> dict[str, Any]:
    """One crawl process into `root`, timed from its start to its exit."""
    cpu, began = children_cpu_s(), time.perf_counter()
    stats = crawl(seeds, cfg, DataRoot.at(root), progress=False)
    seconds, cpu = time.perf_counter() - began, children_cpu_s() - cpu
    return {"pages": stats.units, "stored": stats.kept, "process_s": seconds, "cpu_s": cpu,
            "spider_s": stats.extra["crawl_seconds"], "responses": stats.extra["responses"],
            "skipped": dict(stats.skipped)}


def run_cllm(url: str | list[str], pages: int, concurrency: int, per_domain: int
             ) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="bench-crawl-")
    try:
        return timed_crawl([url] if isinstance(url, str) else url,
                           cllm_config(pages, concurrency, per_domain), tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_scrapy(kind: str, url: str, concurrency: int, per_domain: int, urls_file: str
               ) -> dict[str, Any]:
    """A bare spider in its own process, as ours is (the reactor cannot restart)."""
    cpu, began = children_cpu_s(), time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", kind, url, str(concurrency),
                          str(per_domain), urls_file], capture_output=True, text=True,
                         check=True)
    seconds, cpu = time.perf_counter() - began, children_cpu_s() - cpu
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "process_s": seconds,
            "cpu_s": cpu}


def bare_settings(concurrency: int, per_domain: int) -> dict[str, Any]:
    """Ours, as far as a bare spider has them (crawler/settings.py)."""
    return {
        "CONCURRENT_REQUESTS": concurrency, "CONCURRENT_REQUESTS_PER_DOMAIN": per_domain,
        "COOKIES_ENABLED": False, "DOWNLOADER_STATS": False, "ROBOTSTXT_OBEY": True,
        "DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False, "RETRY_ENABLED": False,
        "LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False, "STATS_DUMP": False,
        "REMOTE_CONTROL_ENABLED": False,
        # ours too: Scrapy's default of 100 starts 100 asyncio tasks per response to run
        # its callback's output (500 docs pages: ~3.6 CPU s for the bare spider, ~2.6 with 4)
        "CONCURRENT_ITEMS": 4,
        # ours too: else Scrapy parses the callback's source on every response
        "WARN_ON_GENERATOR_RETURN_VALUE": False,
    }


def client(urls_file: str, concurrency: int) -> None:
    """The server's ceiling as a process sees it: aiohttp fetching the URL list, no Scrapy."""
    import asyncio

    import aiohttp

    async def main() -> tuple[int, float]:
        with open(urls_file) as fh:
            todo = [line.strip() for line in fh if line.strip()][::-1]
        done = 0
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def worker() -> None:
                nonlocal done
                while todo:
                    async with session.get(todo.pop()) as response:
                        await response.read()
                        done += 1

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return done, time.perf_counter() - began

    pages, seconds = asyncio.run(main())
    print(json.dumps({"pages": pages, "spider_s": seconds}))


def child(kind: str, url: str, concurrency: int, per_domain: int, urls_file: str) -> None:
    if kind == "client":
        client(urls_file, concurrency)
        return
    import scrapy
    from scrapy.crawler import CrawlerProcess

    prefix = url.rstrip("/") + "/"

    class BareSpider(scrapy.Spider):
        name = "bare"
        pages = 0

        async def start(self):  # noqa: ANN202
            self.seen = {url}
            yield scrapy.Request(url, callback=self.parse, dont_filter=True)

        def parse(self, response):  # noqa: ANN001, ANN201
            self.pages += 1
            for href in response.css("a::attr(href)").getall():
                link = response.urljoin(href).split("#", 1)[0]
                if link.startswith(prefix) and link not in self.seen:
                    self.seen.add(link)
                    yield scrapy.Request(link, callback=self.parse, dont_filter=True)

    class FetchOnlySpider(scrapy.Spider):
        name = "fetch"
        pages = 0

        async def start(self):  # noqa: ANN202
            with open(urls_file) as fh:
                for line in fh:
                    yield scrapy.Request(line.strip(), callback=self.parse, dont_filter=True)

        def parse(self, response):  # noqa: ANN001, ANN201
            self.pages += 1

    process = CrawlerProcess(bare_settings(concurrency, per_domain))
    crawler = process.create_crawler(BareSpider if kind == "bare" else FetchOnlySpider)
    process.crawl(crawler)
    process.start()
    stats = crawler.stats.get_stats()
    print(json.dumps({"pages": crawler.spider.pages,
                      "spider_s": stats["elapsed_time_seconds"]}))


def run_side(kind: str, site: SiteServer, pages: int, concurrency: int, per_domain: int,
             urls_file: str) -> dict[str, Any]:
    if kind == "cllm":
        return run_cllm(site.url("/"), pages, concurrency, per_domain)
    return run_scrapy(kind, site.url("/"), concurrency, per_domain, urls_file)


# --- the rows -----------------------------------------------------------------------------


def rate(result: dict[str, Any]) -> float:
    return result["pages"] / result["process_s"]


def compare(shape: str, args: argparse.Namespace) -> dict[str, Any]:
    """Ours, bare and fetch-only on one site shape, interleaved."""
    routes = site_routes(shape, args.pages)
    pages = len(html_paths(routes))
    sizes = [len(r.body) for path, r in routes.items() if path != "/robots.txt"]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in SIDES}
    with SiteServer(shape, args.pages) as site, \
            tempfile.NamedTemporaryFile("w", suffix=".txt") as urls:
        urls.write("".join(site.url(path) + "\n" for path in html_paths(routes)))
        urls.flush()
        print(f"{shape}: {pages} pages, median {statistics.median(sizes) / 1024:.0f} KB, "
              f"{sum(sizes) / 2**20:.1f} MB in all; concurrency {args.concurrency}, "
              f"per domain {args.per_domain}", flush=True)
        for n in range(args.runs):
            order = SIDES[n % len(SIDES):] + SIDES[:n % len(SIDES)]
            for kind in order:
                runs[kind].append(run_side(kind, site, pages, args.concurrency,
                                           args.per_domain, urls.name))
            print(f"  run {n + 1}: " + " | ".join(
                f"{k} {rate(runs[k][-1]):6.1f} pages/s ({runs[k][-1]['pages']} pages"
                + (f", {runs[k][-1]['stored']} stored)" if k == "cllm" else ")")
                for k in SIDES), flush=True)
    med = {k: statistics.median(rate(r) for r in runs[k]) for k in SIDES}
    cpu = {k: statistics.median(1000 * r["cpu_s"] / r["pages"] for r in runs[k]) for k in SIDES}
    start = {k: statistics.median(r["process_s"] - r["spider_s"] for r in runs[k])
             for k in SIDES}
    row = {"shape": shape, "pages": pages, "bytes": sum(sizes),
           "pages_per_s": {k: round(v, 1) for k, v in med.items()},
           # the crawl process's CPU per page (start-up included), and the seconds of its
           # process outside the crawl (start-up and exit): before the first request (ours)
           # or the spider's opening (Scrapy's), and after the spider closed
           "cpu_ms_per_page": {k: round(v, 2) for k, v in cpu.items()},
           "start_s": {k: round(v, 2) for k, v in start.items()},
           "load_avg_1m": round(os.getloadavg()[0], 2),
           "ours_over_bare": round(med["cllm"] / med["bare"], 2),
           "ours_over_fetch_only": round(med["cllm"] / med["fetch"], 2),
           "all_stored": all(r["stored"] == pages for r in runs["cllm"]), "runs": runs}
    print(f"  median of {args.runs}: cllm {med['cllm']:.1f}, bare {med['bare']:.1f}, "
          f"fetch-only {med['fetch']:.1f} pages/s; ours {row['ours_over_bare']:.2f}x bare "
          f"(target >= 1.5x), {row['ours_over_fetch_only']:.2f}x the fetch-only ceiling of a "
          "Scrapy process", flush=True)
    print("  CPU per page " + ", ".join(f"{k} {v:.2f} ms" for k, v in cpu.items())
          + "; start-up and exit " + ", ".join(f"{k} {v:.2f} s" for k, v in start.items())
          + f"; load {row['load_avg_1m']}", flush=True)
    return row


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Our crawl time against per-domain concurrency, the global concurrency fixed."""
    pages = len(html_paths(docs_site(args.pages)))
    levels = args.sweep
    runs: dict[int, list[dict[str, Any]]] = {p: [] for p in levels}
    print(f"per-domain sweep on docs ({pages} pages), concurrency {args.concurrency}:",
          flush=True)
    with SiteServer("docs", args.pages) as site:
        for n in range(args.runs):
            order = levels if n % 2 == 0 else levels[::-1]
            for per in order:
                runs[per].append(run_cllm(site.url("/"), pages, args.concurrency, per))
    seconds = {p: statistics.median(r["process_s"] for r in runs[p]) for p in levels}
    print("  " + " | ".join(f"per-domain {p}: {s:.1f} s" for p, s in seconds.items()),
          flush=True)
    return {"concurrency": args.concurrency, "pages": pages,
            "process_s": {str(p): round(s, 2) for p, s in seconds.items()},
            "runs": {str(p): r for p, r in runs.items()}}


def four_sites_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep with four docs sites of a quarter of the pages each, served at once on
    127.0.0.1-4 (four hosts: Scrapy's per-domain slots are per host, whatever the port)."""
    quarter = max(args.pages // 4, 8)
    sites = [SiteServer("docs", quarter, host=f"127.0.0.{k + 1}", seed=k) for k in range(4)]
    levels = args.sweep
    runs: dict[int, list[dict[str, Any]]] = {p: [] for p in levels}
    print(f"per-domain sweep on four docs sites at once ({quarter} pages each), concurrency "
          f"{args.concurrency}:", flush=True)
    for site in sites:
        site.start()
    try:
        seeds = [site.url("/") for site in sites]
        pages = 4 * len(html_paths(docs_site(quarter)))
        for n in range(args.runs):
            for per in levels if n % 2 == 0 else levels[::-1]:
                runs[per].append(run_cllm(seeds, pages, args.concurrency, per))
    finally:
        for site in sites:
            site.stop()
    seconds = {p: statistics.median(r["process_s"] for r in runs[p]) for p in levels}
    print("  " + " | ".join(f"per-domain {p}: {s:.1f} s" for p, s in seconds.items()),
          flush=True)
    return {"concurrency": args.concurrency, "pages": pages, "sites": 4,
            "process_s": {str(p): round(s, 2) for p, s in seconds.items()},
            "runs": {str(p): r for p, r in runs.items()}}


def recrawl(args: argparse.Namespace) -> dict[str, Any]:
    """A finished crawl of the dense site run again at once: with nothing due (the revisit
    policy: seeds, robots.txt and sitemaps only), and with --refresh (every page asked for,
    each a 304), against the first crawl's time; in one data root per round."""
    pages = len(html_paths(dense_site(args.recrawl_pages)))
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in RECRAWL_RUNS}
    print(f"re-crawl of the dense site ({pages} pages), concurrency {args.concurrency}:",
          flush=True)
    with SiteServer("dense", args.recrawl_pages) as site:
        for _ in range(args.runs):
            tmp = tempfile.mkdtemp(prefix="bench-recrawl-")
            try:
                for kind, keys in RECRAWL_RUNS.items():
                    cfg = cllm_config(pages, args.concurrency, args.per_domain, **keys)
                    runs[kind].append(timed_crawl([site.url("/")], cfg, tmp))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    seconds = {k: statistics.median(r["process_s"] for r in runs[k]) for k in RECRAWL_RUNS}
    spider = {k: statistics.median(r["spider_s"] for r in runs[k]) for k in RECRAWL_RUNS}
    print("  " + " | ".join(f"{k} {seconds[k]:.2f} s ({spider[k]:.2f} s crawling)"
                            for k in RECRAWL_RUNS), flush=True)
    return {"pages": pages, "process_s": {k: round(v, 2) for k, v in seconds.items()},
            "spider_s": {k: round(v, 3) for k, v in spider.items()},
            "rerun_over_first": round(seconds["rerun"] / seconds["first"], 3),
            "refresh_over_first": round(seconds["refresh"] / seconds["first"], 3),
            "runs": runs}


RECRAWL_RUNS: dict[str, dict[str, Any]] = {"first": {}, "rerun": {}, "refresh": {"refresh": True}}
SIZES = {"smoke": (12, 1, [4], 30), "quick": (200, 3, [1, 4, 16], 1000),
         "full": (500, 5, list(SWEEP), 3000)}


def main() -> None:
    from common import add_mode_args, environment, mode, write_results

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, help="pages of each site (full: 500)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--per-domain", type=int, default=16,
                   help="per-domain concurrency of the comparison (one site: the same)")
    p.add_argument("--runs", type=int)
    p.add_argument("--recrawl-pages", type=int,
                   help="pages of the re-crawled dense site (full: 3000; 0: no re-crawl)")
    p.add_argument("--sweep", type=int, nargs="*",
                   help="per-domain concurrencies of the sweeps (none: no sweep)")
    add_mode_args(p)
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    p.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, url, conc, per, urls_file = args.child
        child(kind, url, int(conc), int(per), urls_file)
        return
    if args.serve:
        shape, pages, host, seed = args.serve
        serve(shape, int(pages), host, int(seed))
        return
    for key, value in zip(("pages", "runs", "sweep", "recrawl_pages"), SIZES[mode(args)],
                          strict=True):
        if getattr(args, key) is None:
            setattr(args, key, value)
    env = environment("scrapy", "twisted")
    print(f"{env['cpu']}, {env['threads']} threads, load {env['load_avg_1m']}: figures on a "
          "shared, loaded machine are provisional", flush=True)
    result = {"settings": {"concurrency": args.concurrency, "per_domain": args.per_domain,
                           "runs": args.runs, "cookies": False, "robots": True,
                           "delay_s": 0.0, "autothrottle": False, "retries": 0,
                           "timed": "whole process, start to exit"},
              "shapes": [compare("docs", args), compare("dense", args)]}
    if args.sweep:
        result["per_domain_sweep"] = sweep(args)
        result["four_sites_sweep"] = four_sites_sweep(args)
    if args.recrawl_pages:
        result["recrawl"] = recrawl(args)
    write_results("crawl", result, args, "scrapy", "twisted")


if __name__ == "__main__":
    main()
