"""The retrain flow (scheduled): incremental ingest -> if enough new documents, train from the
promoted model (or from scratch) on the grown shards -> promote if better -> validate.

One retrain at a time per data root: a run that starts while another is still going (its
schedule came round, or one was triggered by hand) is skipped with the reason, as `flock -n`
skips a cron job, instead of failing halfway when a stage it needs is being written.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from prefect import flow

from flows.common import RETRAIN_LOCK, resolve
from flows.ingest import run_ingest
from flows.registry import Registry
from flows.train import run_for_current_shards, run_train
from flows.validate import run_validate
from pipeline.config import Config, replace
from pipeline.layout import DataRoot
from pipeline.lock import LockedError, stage_lock
from pipeline.shards import read_manifest

log = logging.getLogger(__name__)


def documents_in_shards(root: DataRoot) -> int:
    """Documents in the shards (train + val). Counted from the manifest, not from the task
    results, which come from Prefect's cache when nothing changed."""
    if not root.manifest.is_file():
        return 0
    totals = read_manifest(root.manifest).totals()
    return sum(split["docs"] for split in totals.values())


def new_documents(registry: Registry, root: DataRoot, before_ingest: int) -> int:
    """Documents in the shards that no model was trained on yet: counted from the last
    training's record when there is one (what was ingested by hand counts too), else from
    what this run's ingest added."""
    now = documents_in_shards(root)
    last = registry.last_training()
    seen = last["documents"] if last and "documents" in last else before_ingest
    return now - seen


def run_retrain(cfg: Config, root: DataRoot, urls: list[str], paths: list[str]
                ) -> dict[str, Any]:
    """The retrain, or {"retrained": False, "skipped": True, "reason": ...} when another one
    is running on this data root."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(stage_lock(root.state, RETRAIN_LOCK))
        except LockedError as e:
            reason = f"skipped: {e}"
            log.info("retrain: %s", reason)
            return {"retrained": False, "skipped": True, "reason": reason}
        return _retrain(cfg, root, urls, paths)


def _retrain(cfg: Config, root: DataRoot, urls: list[str], paths: list[str]
             ) -> dict[str, Any]:
    registry = Registry(root)
    before = documents_in_shards(root)
    ingested = run_ingest(cfg, root, urls, paths)
    fresh = new_documents(registry, root, before)
    need = cfg.schedule.min_new_docs
    promoted = registry.current_checkpoint()
    if fresh < need and promoted is not None:
        reason = f"{fresh} new documents < schedule.min_new_docs={need}: not retrained"
        registry.log_decision(promoted=False, reason=reason, new_documents=fresh)
        log.info("retrain: %s", reason)
        return {"retrained": False, "reason": reason, "ingest": ingested}
    from_promoted = cfg.schedule.retrain_from == "promoted" and promoted is not None
    run_cfg = run_for_current_shards(
        replace(cfg, "train", init_from="promoted" if from_promoted else "scratch"), root,
        kind="retrain")
    trained = run_train(run_cfg, root, promoted if from_promoted else None)
    out = {"retrained": True, "new_documents": fresh, "ingest": ingested, **trained}
    out["validation"] = run_validate(cfg, root)
    return out


@flow(name="retrain", log_prints=True)
def retrain_flow(root: str = "cllm-data", config: str | None = None,
                 overrides: list[str] | None = None) -> dict[str, Any]:
    cfg, data_root = resolve(root, config, overrides or ())
    return run_retrain(cfg, data_root, list(cfg.sources.urls), list(cfg.sources.paths))
