"""The whole chain as one flow: ingest -> train -> validate. `cllm run` and `cllm demo` run it."""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from flows.common import resolve
from flows.ingest import run_ingest
from flows.presets import PRESETS
from flows.registry import Registry
from flows.train import run_train
from flows.validate import run_validate

log = logging.getLogger(__name__)


@flow(name="pipeline", log_prints=True)
def pipeline_flow(root: str = "cllm-data", config: str | None = None,
                  overrides: list[str] | None = None, urls: list[str] | None = None,
                  paths: list[str] | None = None, preset: str | None = None) -> dict[str, Any]:
    """Ingest the sources, train, promote if better, validate the promoted model."""
    cfg, data_root = resolve(root, config, overrides or (), base=PRESETS.get(preset or ""))
    ingested = run_ingest(cfg, data_root, list(urls if urls is not None else cfg.sources.urls),
                          list(paths if paths is not None else cfg.sources.paths))
    init = None
    if cfg.train.init_from == "promoted":
        init = Registry(data_root).current_checkpoint()
    trained = run_train(cfg, data_root, init)
    validation = run_validate(cfg, data_root)
    return {"ingest": ingested, **trained, "validation": validation}
