"""The validate flow (scheduled): score the promoted model on the current val shards and on the
canary set frozen at its first promotion; append to the history; fail on a regression.

While a retrain runs on the data root, a scheduled validate is skipped with the reason: the
shards it would read may be being rewritten, and the retrain validates whatever it promotes
when it ends.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from prefect import flow

from flows.common import resolve, retrain_holder
from flows.registry import ModelRecord, Registry
from flows.train import canary_scores, evaluate_task, no_val_data
from pipeline.config import Config
from pipeline.layout import DataRoot
from pipeline.shards import read_manifest

log = logging.getLogger(__name__)


class RegressionError(RuntimeError):
    """The promoted model scores worse than its record by more than the tolerance."""


def _regressed(now: float | None, before: float | None, tolerance: float) -> bool:
    if now is None or before is None:
        return False
    return not math.isfinite(now) or now > before * (1.0 + tolerance)


def _baseline_val(registry: Registry, record: ModelRecord, manifest_version: int
                  ) -> float | None:
    """The val loss to compare with: the record's, if the val shards are still the same."""
    if record.manifest_version == manifest_version:
        return record.val_loss
    same = [r for r in registry.validations()
            if r.get("model") == record.id and r.get("manifest_version") == manifest_version
            and r.get("ok")]
    return same[0]["val_loss"] if same else None  # the first check on these shards


def run_validate(cfg: Config, root: DataRoot) -> dict[str, Any]:
    from prefect.artifacts import create_table_artifact

    if reason := no_val_data(root):  # nothing to score on: say so, never pass silently
        log.warning("validate: %s", reason)
        return {"validated": False, "reason": reason}
    registry = Registry(root)
    record = registry.current()
    if record is None:
        log.info("validate: no promoted model yet; nothing to validate")
        return {"validated": False, "reason": "no promoted model"}
    checkpoint = registry.checkpoint(record)
    manifest = read_manifest(root.manifest)
    scored = evaluate_task(str(checkpoint), cfg, root)
    val = scored["loss"]
    canary_scored = canary_scores(registry, checkpoint)
    canary = canary_scored["loss"] if canary_scored else None
    baseline = _baseline_val(registry, record, manifest.version)
    tol = cfg.validate.tolerance
    problems = []
    if _regressed(val, baseline, tol):
        problems.append(f"val loss {val:.4f} > {baseline:.4f} x (1 + {tol})")
    if _regressed(canary, record.canary_loss, tol):
        problems.append(f"canary loss {canary:.4f} > {record.canary_loss:.4f} x (1 + {tol})")
    row = {"model": record.id, "manifest_version": manifest.version, "val_loss": val,
           "val_ppl": scored["perplexity"], "val_bpb": scored["bits_per_byte"],
           "canary_loss": canary,
           "canary_bpb": canary_scored["bits_per_byte"] if canary_scored else None,
           "baseline_val_loss": baseline,
           "baseline_canary_loss": record.canary_loss, "tolerance": tol,
           "ok": not problems, "problems": problems}
    registry.log_validation(row)
    create_table_artifact(
        table=[{"metric": k, "value": v if not isinstance(v, list) else "; ".join(v)}
               for k, v in row.items()],
        key="validation", description="regression: " + "; ".join(problems) if problems
        else f"{record.id} OK")
    if problems:
        raise RegressionError(f"model {record.id} regressed: " + "; ".join(problems))
    log.info("validate: %s OK (val %.4f, canary %s)", record.id, val,
             f"{canary:.4f}" if canary is not None else "n/a")
    return {"validated": True, **row}


@flow(name="validate", log_prints=True)
def validate_flow(root: str = "cllm-data", config: str | None = None,
                  overrides: list[str] | None = None) -> dict[str, Any]:
    cfg, data_root = resolve(root, config, overrides or ())
    if (pid := retrain_holder(data_root)) is not None:
        reason = (f"skipped: a retrain is running on {data_root.path} (pid {pid}); it "
                  "validates its model when it ends")
        log.info("validate: %s", reason)
        return {"validated": False, "skipped": True, "reason": reason}
    return run_validate(cfg, data_root)
