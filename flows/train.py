"""The train flow: train (or resume) -> evaluate -> promote only if it beats the promoted model."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import resolve
from flows.registry import ModelRecord, Registry, new_model_id
from pipeline.config import Config
from pipeline.layout import DataRoot
from pipeline.shards import read_manifest

log = logging.getLogger(__name__)


@dataclass(kw_only=True, slots=True)
class Decision:
    promoted: bool
    reason: str
    candidate: str  # checkpoint path
    candidate_val_loss: float
    current: str | None = None  # id of the model promoted before
    current_val_loss: float | None = None
    model_id: str | None = None  # the new promoted id

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def eval_windows(cfg: Config) -> int:
    return cfg.validate.eval_iters * cfg.validate.batch_size


@task(name="train", cache_policy=NO_CACHE)
def train_task(cfg: Config, root: DataRoot, init_checkpoint: str | None = None
               ) -> dict[str, Any]:
    from model.train import train

    result = train(cfg, root, progress=False,
                   init_checkpoint=Path(init_checkpoint) if init_checkpoint else None)
    out = {k: (str(v) if isinstance(v, Path) else v) for k, v in {
        "run_dir": result.run_dir, "steps": result.steps, "tokens_seen": result.tokens_seen,
        "best_val_loss": result.best_val_loss, "best_checkpoint": result.best_checkpoint,
        "last_checkpoint": result.last_checkpoint, "stop_reason": result.stop_reason,
        "last_loss": result.last_loss, "metrics": result.metrics, "report": result.report,
    }.items()}
    return out


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(checkpoint: str, cfg: Config, root: DataRoot) -> float:
    """Mean val loss of a checkpoint on fixed windows of the current val shards."""
    from model.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(Path(checkpoint), root, windows=eval_windows(cfg),
                                 batch_size=cfg.validate.batch_size, device=cfg.train.device)
    return result.loss


def _current_loss(registry: Registry, cfg: Config, root: DataRoot) -> tuple[str | None,
                                                                            float | None, str]:
    """The promoted model's loss on the same val windows, or why it cannot be compared."""
    current = registry.current()
    if current is None:
        return None, None, "no model promoted yet"
    try:
        return current.id, evaluate_task(str(registry.checkpoint(current)), cfg, root), ""
    except ValueError as e:  # e.g. a tokenizer that no longer matches the shards
        return current.id, None, f"promoted model {current.id} cannot be scored here ({e})"


def decide_and_promote(cfg: Config, root: DataRoot, candidate: Path, run: str, step: int,
                       ) -> Decision:
    """Promote `candidate` iff its val loss beats the promoted model's on the same shards."""
    registry = Registry(root)
    cand_loss = evaluate_task(str(candidate), cfg, root)
    current_id, current_loss, why_not_compared = _current_loss(registry, cfg, root)
    decision = Decision(promoted=False, reason="", candidate=str(candidate),
                        candidate_val_loss=cand_loss, current=current_id,
                        current_val_loss=current_loss)
    if not math.isfinite(cand_loss):
        decision.reason = f"candidate val loss is {cand_loss}"
    elif current_loss is None:
        decision.promoted, decision.reason = True, why_not_compared
    elif cand_loss < current_loss:
        decision.promoted = True
        decision.reason = f"val loss {cand_loss:.4f} < promoted {current_loss:.4f}"
    else:
        decision.reason = f"val loss {cand_loss:.4f} >= promoted {current_loss:.4f}"
    if not decision.promoted:
        registry.log_decision(promoted=False, reason=decision.reason, candidate=str(candidate),
                              val_loss=cand_loss, current=current_id)
        log.info("not promoted: %s", decision.reason)
        return decision
    _promote(registry, cfg, root, candidate, run, step, cand_loss, decision)
    return decision


def _promote(registry: Registry, cfg: Config, root: DataRoot, candidate: Path, run: str,
             step: int, val_loss: float, decision: Decision) -> None:
    if not registry.has_canary():
        frozen = registry.freeze_canary(cfg.validate.canary_docs)
        log.info("froze the canary set: %d val documents", frozen)
    manifest = read_manifest(root.manifest)
    record = ModelRecord(id=new_model_id(run, step), run=run, step=step,
                         checkpoint=str(candidate), val_loss=val_loss,
                         manifest_version=manifest.version,
                         tokenizer_sha256=manifest.tokenizer.sha256, reason=decision.reason)
    record.canary_loss = canary_loss(registry, candidate)
    registry.promote(candidate, record)
    decision.model_id = record.id
    log.info("promoted %s: %s", record.id, decision.reason)


def canary_loss(registry: Registry, checkpoint: Path) -> float | None:
    if not registry.has_canary():
        return None
    from model.evaluate import evaluate_tokens

    arrays, meta = registry.canary_arrays()
    return evaluate_tokens(checkpoint, arrays, eos_id=meta["eos_id"]).loss


def summary_markdown(trained: dict[str, Any], decision: Decision) -> str:
    from model.train import read_metrics

    rows = read_metrics(Path(trained["metrics"])) if trained.get("metrics") else []
    evals = [r for r in rows if r.get("val_loss") is not None]
    first, last = (rows[0], rows[-1]) if rows else ({}, {})
    lines = [
        f"# Training run `{Path(trained['run_dir']).name}`",
        "",
        f"- steps: {trained['steps']}, tokens seen: {trained['tokens_seen']}, "
        f"stopped: {trained['stop_reason']}",
        f"- train loss: {first.get('loss', float('nan')):.4f} -> "
        f"{last.get('loss', float('nan')):.4f}",
        f"- best val loss during training: {trained['best_val_loss']}",
        f"- evaluations: {len(evals)}",
        "",
        "| step | val loss |",
        "|---:|---:|",
        *[f"| {r['step']} | {r['val_loss']:.4f} |" for r in evals[-10:]],
        "",
        f"## Decision: {'promoted' if decision.promoted else 'not promoted'}",
        "",
        f"{decision.reason}. Candidate val loss {decision.candidate_val_loss:.4f}"
        + (f"; promoted model {decision.current} {decision.current_val_loss:.4f}"
           if decision.current_val_loss is not None else "") + ".",
    ]
    return "\n".join(lines)


def run_train(cfg: Config, root: DataRoot, init_checkpoint: Path | None = None
              ) -> dict[str, Any]:
    """The body of the train flow, reused by retrain."""
    from prefect.artifacts import create_markdown_artifact

    trained = train_task(cfg, root, str(init_checkpoint) if init_checkpoint else None)
    candidate = trained["best_checkpoint"] or trained["last_checkpoint"]
    if candidate is None:
        raise RuntimeError(f"training run {trained['run_dir']} produced no checkpoint "
                           f"(stopped: {trained['stop_reason']})")
    decision = decide_and_promote(cfg, root, Path(candidate), cfg.train.run, trained["steps"])
    create_markdown_artifact(summary_markdown(trained, decision), key="train-decision",
                             description=decision.reason)
    return {"train": trained, "decision": decision.to_dict()}


@flow(name="train", log_prints=True)
def train_flow(root: str = "cllm-data", config: str | None = None,
               overrides: list[str] | None = None) -> dict[str, Any]:
    cfg, data_root = resolve(root, config, overrides or ())
    init = None
    if cfg.train.init_from == "promoted":
        init = Registry(data_root).current_checkpoint()
    return run_train(cfg, data_root, init)
