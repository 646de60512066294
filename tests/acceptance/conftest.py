"""Fixtures of the acceptance tests: one web site per module, a project trained once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from acceptance.kit import cllm, site_routes, user_env, write_config, write_manuals


@pytest.fixture(scope="module")
def site() -> Iterator[object]:
    """One web site for the module, at one address (re-crawls find the same pages)."""
    from crawler.localsite import LocalSite

    with LocalSite(site_routes(8, seed=7)) as s:
        yield s


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory: pytest.TempPathFactory, site) -> Path:
    """A project after its first `cllm run`: a promoted model, shards, the crawl's job.
    Tests change copies of it (`kit.copy_project`)."""
    project = tmp_path_factory.mktemp("trained") / "project"
    write_manuals(project / "manuals", range(3))
    write_config(project, urls=[site.url("/")], paths=["manuals"])
    done = cllm(["run"], project, user_env(dict(os.environ)))
    assert done.returncode == 0, done.stderr[-3000:]
    return project
