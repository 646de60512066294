"""The ingest flow: every data stage in pipeline order (crawl and/or ingest the sources,
extract, clean, tokenize), each a task of its own."""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from flows.common import resolve
from flows.runners import run_stage, task_runner_for, tokenize_fanned_out
from flows.stages import DATA_STAGES
from pipeline.config import Config, replace
from pipeline.layout import DataRoot

log = logging.getLogger(__name__)


def run_ingest(cfg: Config, root: DataRoot, urls: list[str], paths: list[str]
               ) -> dict[str, Any]:
    """The body of the ingest flow, callable from other flows (retrain) as plain Python:
    the data stages that apply to these sources, in order; stage name -> its result."""
    cfg = replace(cfg, "sources", urls=list(urls), paths=list(paths))
    results: dict[str, Any] = {}
    for stage in DATA_STAGES:
        if not stage.applies(cfg):
            continue
        if stage.name == "tokenize":
            results[stage.name] = tokenize_fanned_out(cfg, root)
        else:
            results[stage.name] = run_stage(stage.name, cfg, root)
    return results


@flow(name="ingest", log_prints=True, task_runner=task_runner_for())
def ingest_flow(root: str = "cllm-data", config: str | None = None,
                overrides: list[str] | None = None, urls: list[str] | None = None,
                paths: list[str] | None = None) -> dict[str, Any]:
    """Bring new sources into the dataset; URLs/paths default to the config's [sources]."""
    cfg, data_root = resolve(root, config, overrides or ())
    return run_ingest(cfg, data_root, list(urls if urls is not None else cfg.sources.urls),
                      list(paths if paths is not None else cfg.sources.paths))
