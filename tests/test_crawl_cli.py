"""`cllm crawl` and the legacy `cllm_crawler` as a user runs them."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from crawler.job import JobDir
from crawler.localsite import LocalSite, Page, html
from crawler.run import make_seeds
from pipeline.config import build_config
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore

pytestmark = pytest.mark.slow  # every test crawls: a Scrapy process per crawl

SLOW_PAGES = 40
SLOW_PAGE_S = 0.5  # one page at a time: the crawl takes SLOW_PAGES * SLOW_PAGE_S at least
WAIT_S = 60.0
ONE_AT_A_TIME = ["--set", "crawl.concurrency=1", "--set", "crawl.per_domain_concurrency=1",
                 "--set", "crawl.delay_s=0"]


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def site_routes() -> dict[str, Page]:
    return {"/": Page(body=html("Home", ["/a", "/b", "/c", "/gone"])),
            "/a": Page(body=html("A")), "/b": Page(body=html("B")), "/c": Page(body=html("C"))}


def test_legacy_cllm_crawler(tmp_path: Path, cli_env: dict[str, str]) -> None:
    with LocalSite(site_routes()) as site:
        done = run(["cllm_crawler", "--start-url", site.url("/"), "--data-dir", "out",
                    "--max-pages", "3", "--allow-private", "-q"], cli_env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "crawl: " in done.stdout and "3 kept" in done.stdout
    with RawStore(DataRoot.at(tmp_path / "out")) as store:
        assert store.count_sources() == 3


def test_cllm_crawl_strict_and_usage_errors(tmp_path: Path, cli_env: dict[str, str]) -> None:
    with LocalSite(site_routes()) as site:
        strict = run(["cllm", "--root", "data", "crawl", site.url("/"), "--allow-private",
                      "--delay", "0", "--strict", "-q"], cli_env, tmp_path)
    assert strict.returncode == 1, strict.stderr  # /gone is a 404
    assert "failed [http_404]" in strict.stderr and "4 kept" in strict.stdout
    nothing = run(["cllm", "--root", "data", "crawl", "-q"], cli_env, tmp_path)
    assert nothing.returncode == 2
    assert "no http(s) start URL" in nothing.stderr
    bad = run(["cllm", "--root", "data", "crawl", "ftp://example.org/", "-q"], cli_env, tmp_path)
    assert bad.returncode == 2 and "'ftp://example.org/'" in bad.stderr


def slow_site() -> dict[str, Page]:
    routes = {"/": Page(body=html("Home", [f"/p/{i}" for i in range(SLOW_PAGES)]))}
    for i in range(SLOW_PAGES):
        routes[f"/p/{i}"] = Page(body=html(f"Page {i}"), delay_s=SLOW_PAGE_S)
    return routes


def crawl_job(root: DataRoot, url: str) -> JobDir:
    return JobDir(root, make_seeds([url], build_config([]).crawl).job)


def wait_for_pages(job: JobDir, proc: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if job.fetched_log.is_file() and job.fetched_log.read_text().count("\n") >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    pytest.fail(f"the crawl did not keep {count} pages in {WAIT_S} s")


@pytest.mark.slow
def test_extract_while_a_crawl_writes_raw_names_it_and_exits_3(tmp_path: Path,
                                                                cli_env: dict[str, str]) -> None:
    root = DataRoot.at(tmp_path / "data")
    with LocalSite(slow_site()) as slow, LocalSite(site_routes()) as other:
        crawling = subprocess.Popen(
            ["cllm", "--root", str(root.path), "crawl", slow.url("/"), "--allow-private",
             *ONE_AT_A_TIME, "-q"], env=cli_env, cwd=tmp_path, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            job = crawl_job(root, slow.url("/"))
            wait_for_pages(job, crawling, 2)
            # a crawl of other seeds may write raw/ at the same time: each holds its own lock
            beside = run(["cllm", "--root", str(root.path), "crawl", other.url("/"),
                          "--allow-private", "--delay", "0", "-q"], cli_env, tmp_path)
            assert beside.returncode == 0, beside.stderr
            extract = run(["cllm", "--root", str(root.path), "extract", "-q"], cli_env, tmp_path)
            assert crawling.poll() is None, "the crawl ended before extract ran: slow it down"
        finally:
            crawling.send_signal(signal.SIGINT)
            crawling.communicate(timeout=WAIT_S)
    assert extract.returncode == 3, extract.stderr
    assert extract.stderr.count("\n") == 1
    assert f"which crawl-{job.job} is writing now" in extract.stderr
    assert not root.docs.is_dir() or not any(root.docs.glob("part-*"))  # nothing half read
    after = run(["cllm", "--root", str(root.path), "extract", "-q"], cli_env, tmp_path)
    assert after.returncode == 0, after.stderr  # the crawl has stopped: raw/ is free


@pytest.mark.slow
def test_legacy_cllm_crawler_ctrl_c_and_bad_input(tmp_path: Path, cli_env: dict[str, str]
                                                  ) -> None:
    root = DataRoot.at(tmp_path / "out")
    (tmp_path / "cllm.toml").write_text(
        "[crawl]\nconcurrency = 1\nper_domain_concurrency = 1\ndelay_s = 0\n")
    with LocalSite(slow_site()) as site:
        proc = subprocess.Popen(
            ["cllm_crawler", "--start-url", site.url("/"), "--data-dir", "out",
             "--allow-private", "-q"], env=cli_env, cwd=tmp_path, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        job = crawl_job(root, site.url("/"))
        wait_for_pages(job, proc, 2)
        proc.send_signal(signal.SIGINT)  # a terminal's Ctrl-C reaches the tool alone
        out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 130, err
    assert err.splitlines() == [f"crawl stopped; run the same command again to resume job "
                                f"{job.job}"]
    assert "crawl: " in out
    assert json.loads(job.state_file.read_text())["status"] == "paused"  # resumable

    bad = run(["cllm_crawler", "--start-url", "ftp://example.org/", "--data-dir", "out"],
              cli_env, tmp_path)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.count("\n") == 1 and "'ftp://example.org/'" in bad.stderr
    assert bad.stderr.startswith("cllm_crawler: ")
