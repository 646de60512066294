"""The ingest flow: crawl (URLs) and/or ingest (folders) -> extract -> clean/dedup -> shards."""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from flows.common import resolve
from flows.runners import extract_fanned_out, task_runner_for, tokenize_fanned_out
from flows.tasks import crawl_task, ingest_task
from pipeline.config import Config
from pipeline.layout import DataRoot

log = logging.getLogger(__name__)


def run_ingest(cfg: Config, root: DataRoot, urls: list[str], paths: list[str]
               ) -> dict[str, Any]:
    """The body of the ingest flow, callable from other flows (retrain) as plain Python."""
    results: dict[str, Any] = {}
    if urls:
        results["crawl"] = crawl_task(urls, cfg, root)
    if paths:
        results["ingest"] = ingest_task(paths, cfg, root)
    results["extract"] = extract_fanned_out(cfg, root)
    results["tokenize"] = tokenize_fanned_out(cfg, root)
    return results


@flow(name="ingest", log_prints=True, task_runner=task_runner_for())
def ingest_flow(root: str = "cllm-data", config: str | None = None,
                overrides: list[str] | None = None, urls: list[str] | None = None,
                paths: list[str] | None = None) -> dict[str, Any]:
    """Bring new sources into the dataset; URLs/paths default to the config's [sources]."""
    cfg, data_root = resolve(root, config, overrides or ())
    return run_ingest(cfg, data_root, list(urls if urls is not None else cfg.sources.urls),
                      list(paths if paths is not None else cfg.sources.paths))
