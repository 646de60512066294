"""`cllm crawl` and the legacy `cllm_crawler` as a user runs them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from crawler.localsite import LocalSite, Page, html
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore


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
