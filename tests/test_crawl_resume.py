"""Stop a crawl (SIGINT through `cllm crawl`, or SIGKILL) and start it again: it continues
without fetching again what it stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from crawler.job import JobDir
from crawler.localsite import LocalSite, Page, html
from crawler.run import crawl, make_seeds
from pipeline.config import build_config
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore

PAGES = 24
STOP_AFTER = 6  # pages stored before the crawl is stopped
WAIT_S = 60.0


def slow_site() -> dict[str, Page]:
    routes = {"/": Page(body=html("Home", [f"/p/{i}" for i in range(PAGES)]))}
    for i in range(PAGES):
        routes[f"/p/{i}"] = Page(body=html(f"Page {i}", [f"/p/{(i + 1) % PAGES}"]),
                                 delay_s=0.04)
    return routes


def crawl_cfg():  # noqa: ANN201
    return build_config([{"crawl": {"allow_private": True, "delay_s": 0.0, "concurrency": 1,
                                    "per_domain_concurrency": 1}}])


def job_dir(root: DataRoot, url: str) -> JobDir:
    return JobDir(root, make_seeds([url], crawl_cfg().crawl).job)


def wait_for_pages(job: JobDir, proc: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if job.fetched_log.is_file() and \
                job.fetched_log.read_text().count("\n") >= count:
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.02)
    pytest.fail(f"the crawl did not store {count} pages in {WAIT_S} s")


def cllm_crawl(root: DataRoot, url_file: Path, export: Path, env: dict[str, str]
               ) -> subprocess.Popen:
    return subprocess.Popen(
        ["cllm", "--root", str(root.path), "crawl", "--url-file", str(url_file),
         "--export-urls", str(export), "--allow-private", "--delay", "0", "--concurrency", "1",
         "--set", "crawl.per_domain_concurrency=1", "-q"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def crawl_partly(root: DataRoot, site: LocalSite, tmp_path: Path, env: dict[str, str]
                 ) -> tuple[JobDir, subprocess.Popen]:
    """`cllm crawl` of the slow site, once it has stored STOP_AFTER pages."""
    url_file = tmp_path / "urls.txt"
    url_file.write_text(site.url("/") + "\n")
    job = job_dir(root, site.url("/"))
    proc = cllm_crawl(root, url_file, tmp_path / "stored.txt", env)
    wait_for_pages(job, proc, STOP_AFTER)
    return job, proc


def page_paths() -> set[str]:
    return {"/", *(f"/p/{i}" for i in range(PAGES))}


@pytest.mark.slow
def test_sigint_pauses_and_the_next_run_resumes(tmp_path: Path, cli_env: dict[str, str]
                                                ) -> None:
    root = DataRoot.at(tmp_path / "data")
    with LocalSite(slow_site()) as site:
        url_file = tmp_path / "urls.txt"
        url_file.write_text(f"# start here\n{site.url('/')}\n")
        export = tmp_path / "stored.txt"
        job = job_dir(root, site.url("/"))
        first = cllm_crawl(root, url_file, export, cli_env)
        wait_for_pages(job, first, STOP_AFTER)
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=WAIT_S)
        assert first.returncode == 130, err
        assert "resume" in err
        state = json.loads(job.state_file.read_text())
        assert state["status"] == "paused" and state["reason"] == "shutdown"
        with RawStore(root) as store:
            stored_first = store.count_sources()
        assert STOP_AFTER <= stored_first < len(page_paths())

        second = cllm_crawl(root, url_file, export, cli_env)
        out, err = second.communicate(timeout=WAIT_S)
        assert second.returncode == 0, err
        hits = {path: site.hits[path] for path in page_paths()}
    assert hits == {path: 1 for path in page_paths()}  # nothing fetched twice
    with RawStore(root) as store:
        assert {r.source.removeprefix(site.url("")) for r in store.iter_sources()} == page_paths()
    state = json.loads(job.state_file.read_text())
    assert (state["status"], state["generation"], state["runs"]) == ("finished", 1, 2)
    exported = export.read_text().splitlines()
    assert exported == sorted(site.url(p) for p in page_paths())
    assert "kept" in out


@pytest.mark.slow
def test_killed_crawl_resumes_without_refetching(tmp_path: Path, cli_env: dict[str, str]
                                                 ) -> None:
    root = DataRoot.at(tmp_path / "data")
    with LocalSite(slow_site()) as site:
        job, first = crawl_partly(root, site, tmp_path, cli_env)
        child = json.loads(job.state_file.read_text())["pid"]
        os.kill(child, signal.SIGKILL)
        first.kill()
        first.communicate(timeout=WAIT_S)
        assert json.loads(job.state_file.read_text())["status"] == "running"
        with RawStore(root) as store:
            before = {r.source.removeprefix(site.url("")) for r in store.iter_sources()}
        stats = crawl([site.url("/")], crawl_cfg(), root, progress=False)
        hits = dict(site.hits)
    assert stats.extra["resumed"] is True
    assert all(hits[path] == 1 for path in before)  # what was stored is not fetched again
    assert stats.skipped["already_fetched"] >= len(before)
    assert stats.kept + stats.skipped["already_fetched"] == len(page_paths())
    with RawStore(root) as store:
        assert {r.source.removeprefix(site.url("")) for r in store.iter_sources()} == page_paths()


def the_writer_of(crawl_pid: int) -> psutil.Process:
    """The raw store's writer process (crawler.writer) of the crawl process `crawl_pid`."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for proc in psutil.Process(crawl_pid).children():
            if "crawler.writer" in proc.cmdline():
                return proc
        time.sleep(0.02)
    pytest.fail(f"the crawl process {crawl_pid} has no writer process")


@pytest.mark.slow
def test_a_crawl_whose_writer_dies_stops_saying_so_and_the_next_run_resumes(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = DataRoot.at(tmp_path / "data")
    with LocalSite(slow_site()) as site:
        job, first = crawl_partly(root, site, tmp_path, cli_env)
        the_writer_of(json.loads(job.state_file.read_text())["pid"]).kill()
        _, err = first.communicate(timeout=WAIT_S)  # it stops: it does not fetch on, unstored
        assert first.returncode == 3, err
        assert "the raw store writer" in err and "exit code -9" in err and "resumes" in err
        assert json.loads(job.state_file.read_text())["status"] == "running"
        with RawStore(root) as store:
            before = {r.source.removeprefix(site.url("")) for r in store.iter_sources()}
        # pages are listed before they are stored: those the writer had when it died are
        # listed, not stored, and the next run fetches them
        assert 1 <= len(before) < len(page_paths())
        stats = crawl([site.url("/")], crawl_cfg(), root, progress=False)
        hits = dict(site.hits)
    assert stats.extra["resumed"] is True
    assert all(hits[path] == 1 for path in before)  # what was stored is not fetched again
    with RawStore(root) as store:
        assert {r.source.removeprefix(site.url("")) for r in store.iter_sources()} == page_paths()
