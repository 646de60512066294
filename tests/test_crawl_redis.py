"""Scale-out: two crawl workers (two data roots, as on two machines) share one frontier
through a real Redis server started by the test. Without redis-server the test skips, except
under CI=true, where it fails: CI installs it (scripts/setup.sh)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import skip_unless_ci

from crawler.job import read_refused
from crawler.localsite import LocalSite, Page, html
from crawler.run import crawl
from pipeline.config import build_config
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore

pytestmark = pytest.mark.slow  # a Redis server and two crawls, each in its own process

PAGES = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        skip_unless_ci("redis-server is not installed (apt-get install redis-server)")
    import redis

    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    skip_unless_ci("could not start redis-server")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_workers_share_one_frontier(tmp_path: Path, redis_url: str) -> None:
    import redis

    routes = {"/": Page(body=html("Home", [f"/p/{i}" for i in range(PAGES)]))}
    for i in range(PAGES):
        routes[f"/p/{i}"] = Page(body=html(f"Page {i}", [f"/p/{(i * 3) % PAGES}"]))
    cfg_a = build_config([{"crawl": {"allow_private": True, "delay_s": 0.0, "max_pages": 8,
                                     "concurrency": 2, "redis_url": redis_url}}])
    cfg_b = build_config([{"crawl": {"allow_private": True, "delay_s": 0.0,
                                     "redis_url": redis_url}}])
    root_a, root_b = DataRoot.at(tmp_path / "a"), DataRoot.at(tmp_path / "b")
    client = redis.Redis.from_url(redis_url)
    with LocalSite(routes) as site:
        # worker A stops at its page budget; the frontier it leaves stays in Redis
        a = crawl([site.url("/")], cfg_a, root_a, progress=False)
        assert a.extra["close_reason"] == "page_budget"
        assert client.zcard(f"cllm:{a.extra['job']}:requests") > 0
        # worker B, elsewhere, takes over the same frontier: the same start URL is not
        # fetched again, the seen-set keeps A's pages from being fetched twice
        b = crawl([site.url("/")], cfg_b, root_b, progress=False)
        hits = {path: n for path, n in site.hits.items() if path != "/robots.txt"}

    def stored(root: DataRoot) -> set[str]:
        with RawStore(root) as store:
            return {r.source.removeprefix(site.url("")) for r in store.iter_sources()}

    pages_a, pages_b = stored(root_a), stored(root_b)
    assert len(pages_a) == 8 and pages_b
    assert pages_a.isdisjoint(pages_b)
    assert pages_a | pages_b == {"/", *(f"/p/{i}" for i in range(PAGES))}
    # each page fetched once, except those A had in flight when its budget ran out: it gave
    # them back to the frontier, and B fetched them again
    given_back = {r["url"].removeprefix(site.url("")) for r in read_refused(
        Path(a.extra["refused_log"])) if r["detail"] == "fetched after the limit was reached"}
    assert {path for path, n in hits.items() if n > 1} == given_back
    assert set(hits.values()) <= {1, 2}
    assert b.extra["close_reason"] == "finished"
    # the last worker done removed the job's queue, seen-set and worker list
    assert client.keys(f"cllm:{a.extra['job']}:*") == []
    client.close()
