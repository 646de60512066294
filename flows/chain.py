"""The whole chain as one flow: ingest -> train -> validate. `cllm run` and `cllm demo` run it.

Re-runnable: when the shards and the train settings are those the last model was trained on,
nothing is trained (and nothing validated: the same model on the same shards scores the
same). New documents train a run of its own name, promoted only if it beats the current one.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from flows.common import resolve
from flows.ingest import run_ingest
from flows.presets import PRESETS
from flows.registry import Registry
from flows.train import (
    promoted_init,
    run_for_current_shards,
    run_train,
    trained_already,
    training_facts,
)
from flows.validate import run_validate
from pipeline.config import Config
from pipeline.layout import DataRoot

log = logging.getLogger(__name__)


def why_not_train(cfg: Config, root: DataRoot) -> str | None:
    """Why the current shards need no training run, or None when they do."""
    if not root.manifest.is_file():
        return "no token shards yet: no document was kept to train on"
    registry = Registry(root)
    last = registry.last_training()
    if cfg.train.init_from == "resume" or registry.current() is None:
        return None
    facts = training_facts(cfg, root)
    if trained_already(facts, last):
        return (f"nothing new since run {last.get('run', '?')} (shards version "
                f"{facts['manifest_version']}, the same train settings)")
    return None


def run_pipeline(cfg: Config, root: DataRoot, urls: list[str], paths: list[str]
                 ) -> dict[str, Any]:
    ingested = run_ingest(cfg, root, urls, paths)
    reason = why_not_train(cfg, root)
    if reason is not None:
        log.info("run: %s: not trained", reason)
        return {"ingest": ingested, "trained": False, "reason": reason}
    trained = run_train(run_for_current_shards(cfg, root), root, promoted_init(cfg, root))
    validation = run_validate(cfg, root)
    return {"ingest": ingested, "trained": True, **trained, "validation": validation}


@flow(name="pipeline", log_prints=True)
def pipeline_flow(root: str = "cllm-data", config: str | None = None,
                  overrides: list[str] | None = None, urls: list[str] | None = None,
                  paths: list[str] | None = None, preset: str | None = None) -> dict[str, Any]:
    """Ingest the sources; if there is anything new, train, promote if better, validate."""
    cfg, data_root = resolve(root, config, overrides or (), base=PRESETS.get(preset or ""))
    return run_pipeline(cfg, data_root,
                        list(urls if urls is not None else cfg.sources.urls),
                        list(paths if paths is not None else cfg.sources.paths))
