"""The train flow: train (or resume) -> evaluate -> promote only if it beats the promoted model:
on val loss over the same val windows when both use the same tokenizer, else on bits per byte
over the same val text (each model reading it with its own tokenizer)."""

from __future__ import annotations

import json
import logging
import math
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from prefect import flow

from flows.common import resolve
from flows.registry import ModelRecord, Registry, new_model_id
from pipeline.atomic import atomic_write_json
from pipeline.config import Config, replace
from pipeline.layout import DataRoot
from pipeline.shards import read_manifest

log = logging.getLogger(__name__)


PENDING_RUN = "train-pending.json"  # under state/flows/: the run training on the current shards
RUN_ONLY_KEYS = ("run", "init_from", "device", "threads", "compile",
                 "tensorboard")  # not what the model learns


Metric = Literal["val_loss", "bits_per_byte", "none"]


@dataclass(kw_only=True, slots=True)
class Decision:
    promoted: bool
    reason: str
    candidate: str  # checkpoint path
    candidate_val_loss: float
    step: int = 0  # the candidate checkpoint's step
    # what decided: val loss (same tokenizer), bits per byte (another), none (nothing compared)
    metric: Metric = "none"
    candidate_bpb: float | None = None  # bits per byte, on what `metric` compared
    current: str | None = None  # id of the model promoted before
    current_val_loss: float | None = None
    current_bpb: float | None = None
    model_id: str | None = None  # the new promoted id

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_key(cfg: Config) -> str:
    """What a model learns from besides the data: the train section without the keys that name
    or place a run. Two runs with the same key on the same shards train the same model."""
    from flows.common import fingerprint

    return fingerprint({k: v for k, v in cfg.to_dict()["train"].items()
                        if k not in RUN_ONLY_KEYS})


def training_facts(cfg: Config, root: DataRoot) -> dict[str, Any]:
    """What a candidate is trained on; recorded with its decision, so a later run can tell
    whether anything changed since."""
    manifest = read_manifest(root.manifest)
    return {"manifest_version": manifest.version,
            "documents": sum(t["docs"] for t in manifest.totals().values()),
            "train_key": train_key(cfg)}


def trained_already(facts: dict[str, Any], last: dict[str, Any] | None) -> bool:
    return last is not None and all(last.get(k) == v for k, v in facts.items())


def new_run_name(base: str, kind: str = "") -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return "-".join(filter(None, [base, kind, stamp, uuid.uuid4().hex[:4]]))


def _pending_path(root: DataRoot) -> Path:
    return root.state / "flows" / PENDING_RUN


def run_for_current_shards(cfg: Config, root: DataRoot, kind: str = "") -> Config:
    """The config of the run that trains on the current shards: a run of its own name, or the
    one a killed flow left unfinished on these same shards (resumed, not started again)."""
    if cfg.train.init_from == "resume":  # the user named the run to continue
        return cfg
    facts = training_facts(cfg, root)
    path = _pending_path(root)
    pending = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    run = pending.get("run")
    if run and trained_already(facts, pending) and any(root.run(run).glob("checkpoints/*.pt")):
        log.info("train: resuming run %s, left unfinished on these shards", run)
        return replace(cfg, "train", run=run, init_from="resume")
    run = new_run_name(cfg.train.run, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"run": run, **facts})
    return replace(cfg, "train", run=run)


def _clear_pending(root: DataRoot) -> None:
    _pending_path(root).unlink(missing_ok=True)


TRAINED_KEYS = ("run_dir", "steps", "tokens_seen", "best_val_loss", "best_checkpoint",
                "last_checkpoint", "stop_reason", "last_loss", "metrics", "report")


def train_task(cfg: Config, root: DataRoot, init_checkpoint: str | None = None
               ) -> dict[str, Any]:
    """The train stage's task; what the run did (its folder, steps, checkpoints, losses)."""
    from flows.tasks import TASKS

    if init_checkpoint:
        cfg = replace(cfg, "train", init_checkpoint=init_checkpoint)
    extra = TASKS["train"](cfg, root)["extra"]
    return {k: extra.get(k) for k in TRAINED_KEYS}


def evaluate_task(checkpoint: str, cfg: Config, root: DataRoot) -> dict[str, Any]:
    """Loss, perplexity and bits per byte of a checkpoint on fixed windows of the current val
    shards (the evaluate stage's task): its EvalResult as a dict."""
    from flows.tasks import TASKS

    scored = TASKS["evaluate"](replace(cfg, "evaluate", checkpoint=checkpoint, docs=[]), root)
    return scored["extra"]["result"]


@dataclass(kw_only=True, slots=True)
class Comparison:
    """The candidate and the promoted model on the same data, or why they cannot be."""

    metric: Metric
    candidate: float | None = None
    current: float | None = None
    current_loss: float | None = None
    current_bpb: float | None = None
    why_not: str = ""
    detail: str = ""


def _compare(registry: Registry, cfg: Config, root: DataRoot, candidate: Path,
             scored: dict[str, Any]) -> tuple[str | None, Comparison]:
    """The promoted model's id and how the candidate compares with it: val loss on the same
    windows when their tokenizers agree, else bits per byte on the same val text."""
    current = registry.current()
    if current is None:
        return None, Comparison(metric="none", why_not="no model promoted yet")
    checkpoint = registry.checkpoint(current)
    try:
        if current.tokenizer_sha256 == read_manifest(root.manifest).tokenizer.sha256:
            theirs = evaluate_task(str(checkpoint), cfg, root)
            return current.id, Comparison(metric="val_loss", candidate=scored["loss"],
                                          current=theirs["loss"], current_loss=theirs["loss"],
                                          current_bpb=theirs["bits_per_byte"])
        return current.id, _compare_on_text(cfg, root, candidate, checkpoint)
    except ValueError as e:  # e.g. a promoted model without its tokenizer
        return current.id, Comparison(metric="none", why_not=f"promoted model {current.id} "
                                                             f"cannot be scored here ({e})")


def _compare_on_text(cfg: Config, root: DataRoot, candidate: Path, current: Path) -> Comparison:
    """Bits per byte of both models on the text of the first val documents (about as many
    tokens as the val windows hold), each encoding it with its own tokenizer."""
    from model.evaluate import evaluate_texts, val_texts

    v = cfg.validate
    texts = val_texts(root, v.eval_iters * v.batch_size * cfg.train.block_size)
    ours = evaluate_texts(candidate, texts, device=cfg.train.device)
    theirs = evaluate_texts(current, texts, device=cfg.train.device)
    return Comparison(metric="bits_per_byte", candidate=ours.bits_per_byte,
                      current=theirs.bits_per_byte, current_bpb=theirs.bits_per_byte,
                      detail=f" (another tokenizer: both read the text of {len(texts)} val "
                             "documents)")


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a checkpoint holds (the best one is rarely the run's last step)."""
    from model.checkpoint import load_checkpoint

    return int(load_checkpoint(checkpoint)["step"])


def decide_and_promote(cfg: Config, root: DataRoot, candidate: Path, run: str) -> Decision:
    """Promote `candidate` iff it beats the promoted model on the same data: val loss on the
    same windows, or bits per byte on the same text when the tokenizers differ."""
    registry = Registry(root)
    scored = evaluate_task(str(candidate), cfg, root)
    cand_loss = scored["loss"]
    current_id, cmp = _compare(registry, cfg, root, candidate, scored)
    decision = Decision(promoted=False, reason="", candidate=str(candidate),
                        candidate_val_loss=cand_loss, step=checkpoint_step(candidate),
                        metric=cmp.metric, current=current_id, current_val_loss=cmp.current_loss,
                        current_bpb=cmp.current_bpb,
                        candidate_bpb=cmp.candidate if cmp.metric == "bits_per_byte"
                        else scored["bits_per_byte"])
    label = "bits per byte" if cmp.metric == "bits_per_byte" else "val loss"
    if not math.isfinite(cand_loss):
        decision.reason = f"candidate val loss is {cand_loss}"
    elif cmp.candidate is None or cmp.current is None:
        decision.promoted, decision.reason = True, cmp.why_not
    elif cmp.candidate < cmp.current:
        decision.promoted = True
        decision.reason = f"{label} {cmp.candidate:.4f} < promoted {cmp.current:.4f}{cmp.detail}"
    else:
        decision.reason = f"{label} {cmp.candidate:.4f} >= promoted {cmp.current:.4f}{cmp.detail}"
    facts = {"run": run, "step": decision.step, "candidate": str(candidate),
             "metric": cmp.metric, **training_facts(cfg, root)}
    if not decision.promoted:
        registry.log_decision(promoted=False, reason=decision.reason, val_loss=cand_loss,
                              bits_per_byte=decision.candidate_bpb, current=current_id, **facts)
        log.info("not promoted: %s", decision.reason)
    else:
        _promote(registry, cfg, root, candidate, run, scored, decision, facts)
    _clear_pending(root)
    return decision


def _promote(registry: Registry, cfg: Config, root: DataRoot, candidate: Path, run: str,
             scored: dict[str, Any], decision: Decision, facts: dict[str, Any]) -> None:
    if not registry.has_canary():
        frozen = registry.freeze_canary(cfg.validate.canary_docs)
        log.info("froze the canary set: %d val documents", frozen)
    manifest = read_manifest(root.manifest)
    record = ModelRecord(id=new_model_id(run, decision.step), run=run, step=decision.step,
                         checkpoint=str(candidate), val_loss=scored["loss"],
                         val_bpb=scored["bits_per_byte"], manifest_version=manifest.version,
                         tokenizer_sha256=manifest.tokenizer.sha256, reason=decision.reason)
    canary = canary_scores(registry, candidate)
    record.canary_loss = canary["loss"] if canary else None
    registry.promote(candidate, record, bits_per_byte=record.val_bpb, **facts)
    decision.model_id = record.id
    log.info("promoted %s: %s", record.id, decision.reason)


def canary_scores(registry: Registry, checkpoint: Path) -> dict[str, Any] | None:
    """Loss and bits per byte of a checkpoint on the canary set (None: no canary yet)."""
    if not registry.has_canary():
        return None
    from model.evaluate import evaluate_tokens

    arrays, meta = registry.canary_arrays()
    return evaluate_tokens(checkpoint, arrays, eos_id=meta["eos_id"]).to_dict()


def _loss_span(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """The first and last training loss (evaluation rows carry no loss)."""
    losses = [r["loss"] for r in rows if isinstance(r.get("loss"), int | float)]
    return (losses[0], losses[-1]) if losses else (math.nan, math.nan)


def summary_markdown(trained: dict[str, Any], decision: Decision) -> str:
    from model.metrics import read_metrics

    rows = read_metrics(Path(trained["metrics"])) if trained.get("metrics") else []
    evals = [r for r in rows if r.get("val_loss") is not None]
    first_loss, last_loss = _loss_span(rows)
    lines = [
        f"# Training run `{Path(trained['run_dir']).name}`",
        "",
        f"- steps: {trained['steps']}, tokens seen: {trained['tokens_seen']}, "
        f"stopped: {trained['stop_reason']}",
        f"- train loss: {first_loss:.4f} -> {last_loss:.4f}",
        f"- best val loss during training: {trained['best_val_loss']}",
        f"- evaluations: {len(evals)}",
        "",
        "| step | val loss |",
        "|---:|---:|",
        *[f"| {r['step']} | {r['val_loss']:.4f} |" for r in evals[-10:]],
        "",
        f"## Decision: {'promoted' if decision.promoted else 'not promoted'}",
        "",
        f"{decision.reason}. Candidate (step {decision.step}) val loss "
        f"{decision.candidate_val_loss:.4f}"
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
    decision = decide_and_promote(cfg, root, Path(candidate), cfg.train.run)
    create_markdown_artifact(summary_markdown(trained, decision), key="train-decision",
                             description=decision.reason)
    return {"train": trained, "decision": decision.to_dict()}


@flow(name="train", log_prints=True)
def train_flow(root: str = "cllm-data", config: str | None = None,
               overrides: list[str] | None = None) -> dict[str, Any]:
    cfg, data_root = resolve(root, config, overrides or ())
    return run_train(cfg, data_root, promoted_init(cfg, data_root))


def promoted_init(cfg: Config, root: DataRoot) -> Path | None:
    """The promoted model's weights when the run starts from them (train.init_from)."""
    return Registry(root).current_checkpoint() if cfg.train.init_from == "promoted" else None
