"""Training a run: the loop over the Trainer's steps (validation, early stopping, checkpoints,
the time budget, a clean stop on SIGINT/SIGTERM), what it returns, and the train stage.

`train(cfg, root)` trains; `train_stage` is the stage (`cllm train`, the flows).
`python -m model.train` (also under `torchrun --nproc_per_node N -m model.train ...`, DDP over
gloo on CPU or nccl on CUDA) runs `cllm train`. Under torchrun, name the run with
`--set train.run=NAME`: torchrun's own parser takes `--run` as an abbreviation of its
`--run-path`.

Everything a run needs to continue exactly is in its checkpoints (`model/trainer.py`): the
windows of step s are a function of (seed, s) (model/data.py), the lr a function of s
(model/schedule.py, with the horizon fitted to train.max_seconds: model/budget.py), and the
checkpoint holds the model, AdamW moments, RNG states and early-stopping counters. A run killed
at any point and resumed computes the same loss at every later step as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from model import budget
from model.budget import LoopTimes, fit_step, fit_to_budget, out_of_time
from model.checkpoint import CheckpointSet, export_safetensors
from model.data import check_tokenizer
from model.evaluate import bits_per_byte
from model.flops import flops_per_token, matmul_peak
from model.metrics import METRICS_NAME, MetricsLog
from model.runtime import (
    Dist,
    all_reduce_sum,
    dist_from_env,
    init_process_group,
    resolve_device,
    tf32_matmuls,
)
from model.trainer import Trainer, choose_start
from pipeline.config import Config, TrainConfig, save_resolved
from pipeline.layout import DataRoot
from pipeline.lock import stage_lock
from pipeline.progress import Progress
from pipeline.shards import Manifest, read_manifest
from pipeline.stats import StageStats

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

STAGE = "train"
REPORT_NAME = "report.png"
EXPORT_NAME = "model.safetensors"

@dataclass(kw_only=True, slots=True)
class TrainResult:
    run_dir: Path
    steps: int  # optimizer steps done in total (earlier sessions of the run included)
    tokens_seen: int  # training tokens in total, all ranks
    best_val_loss: float | None
    best_checkpoint: Path | None
    last_checkpoint: Path | None  # the last good one (never a state with a NaN loss)
    # max_steps | max_seconds (the clock, or the step horizon fitted to it) | early_stop |
    # nan_loss | interrupted
    stop_reason: str
    last_loss: float | None = None
    metrics: Path | None = None
    report: Path | None = None
    export: Path | None = None  # safetensors weights of the best (else last) checkpoint
    stats: StageStats = field(default_factory=lambda: StageStats(stage=STAGE))


@dataclass(kw_only=True, slots=True)
class StepInfo:
    """What `on_step` callbacks get after every optimizer step."""

    step: int
    loss: float
    lr: float
    tokens_seen: int
    val_loss: float | None = None


# --- the loop -------------------------------------------------------------------------------


class _StopFlag:
    """Set by SIGINT/SIGTERM: finish the current step, save, stop."""

    def __init__(self) -> None:
        self.set = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.set:  # a second signal: stop now
            raise KeyboardInterrupt
        self.set = True
        log.warning("train: %s received: stopping after this step (again to abort)",
                    signal.Signals(signum).name)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _any_rank(flag: bool, dist: Dist, device: torch.device) -> bool:
    """True on every rank when any rank says so (so all ranks stop together)."""
    return all_reduce_sum([1.0 if flag else 0.0], dist, device)[0] > 0


@contextlib.contextmanager
def _session(dist: Dist, run_dir: Path) -> Iterator[None]:
    """The run folder's lock (on the main rank) and the process group's lifetime."""
    lock = stage_lock(run_dir, STAGE) if dist.main else contextlib.nullcontext()
    try:
        with lock:
            yield
    finally:
        if dist.active:
            import torch.distributed as tdist

            if tdist.is_initialized():
                tdist.destroy_process_group()


def train(cfg: Config, root: DataRoot, progress: bool = True,
          init_checkpoint: Path | None = None, *, init_optimizer: bool = False,
          on_step: Callable[[StepInfo], None] | None = None) -> TrainResult:
    """Train (or resume) run `cfg.train.run` on the shards under `root`.

    Args:
        init_checkpoint: start from these weights (a promoted model) when the run has no
            checkpoint of its own yet; `init_optimizer` also continues its AdamW state.
        on_step: called after every optimizer step (progress reporting, tests).
    """
    import torch

    tc = cfg.train
    threads = torch.get_num_threads()  # the process's: the caller finds it again on return
    try:
        if tc.threads:
            torch.set_num_threads(tc.threads)
        dist = dist_from_env()
        device = resolve_device(tc.device)
        if dist.active:
            device = init_process_group(dist, device)
        run_dir = root.run(tc.run)
        run_dir.mkdir(parents=True, exist_ok=True)
        with _session(dist, run_dir), tf32_matmuls(device):  # TF32 on CUDA, restored on return
            return _train_session(cfg, root, run_dir, dist, device, progress and dist.main,
                                  init_checkpoint, init_optimizer, on_step)
    finally:
        torch.set_num_threads(threads)


def _train_session(cfg: Config, root: DataRoot, run_dir: Path, dist: Dist, device: torch.device,
                   progress: bool, init_checkpoint: Path | None, init_optimizer: bool,
                   on_step: Callable[[StepInfo], None] | None) -> TrainResult:
    tc = cfg.train
    manifest = read_manifest(root.manifest)
    ckpts = CheckpointSet(run_dir, tc.keep_last)
    if dist.main:
        ckpts.remove_orphans()
    start = choose_start(tc, ckpts, init_checkpoint, init_optimizer)
    if start.state is not None:  # before anything else: the ids must mean the same text
        check_tokenizer(start.state["tokenizer"]["sha256"], manifest.tokenizer.sha256,
                        f"the shards in {root.shards}")
    trainer = Trainer(cfg, root, manifest, start, dist, device)
    if dist.main:
        save_resolved(cfg, run_dir)
        _warn_about_val_split(cfg, manifest)
    metrics = MetricsLog(run_dir / METRICS_NAME, enabled=dist.main, tensorboard=tc.tensorboard)
    metrics.rewind(trainer.step)
    n_params = trainer.model.num_params()
    peak = matmul_peak(device.type, "bfloat16" if trainer.bf16 else "float32") \
        if dist.main else 0.0
    log.info("train: run %s on %s x%d, %.2fM parameters, %d tokens/step, %s, from %s",
             tc.run, device, dist.world, n_params / 1e6, trainer.tokens_per_step,
             "bf16" if trainer.bf16 else "fp32", start.source)
    stats = StageStats(stage=STAGE, unit_name="tokens")
    result = TrainResult(run_dir=run_dir, steps=trainer.step, tokens_seen=trainer.tokens_seen,
                         best_val_loss=trainer.best_val, stop_reason="max_steps",
                         best_checkpoint=ckpts.best if ckpts.best.is_file() else None,
                         last_checkpoint=ckpts.latest(), metrics=metrics.path, stats=stats)
    saved_step = trainer.step if start.resume else -1
    evaluated_step = saved_step
    # the last evaluation's loss travels in each checkpoint: a resumed run carries it on
    val_loss: float | None = start.state.get("val_loss") if start.resume and start.state else None
    began = budget.clock()
    times = LoopTimes()
    fit_at = fit_step(trainer.step, tc)
    try:
        with _StopFlag() as stop, Progress(stats, total=tc.max_steps, unit="step",
                                           enabled=progress) as bar:
            bar.update(trainer.step)
            while trainer.step < trainer.end_step:
                t0 = time.perf_counter()
                loss, grad_norm, lr = trainer.train_step()
                dt = time.perf_counter() - t0
                if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                    log.error("train: non-finite %s at step %d: stopping; the last good "
                              "checkpoint is kept", "loss" if not math.isfinite(loss)
                              else "gradient norm", trainer.step + 1)
                    metrics.write({"step": trainer.step + 1, "loss": loss, "lr": lr,
                                   "grad_norm": grad_norm, "event": "nan_loss"})
                    result.stop_reason = "nan_loss"
                    break
                tokens_per_s = trainer.tokens_per_step / dt
                row: dict[str, Any] = {
                    "step": trainer.step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                    "tokens_per_s": round(tokens_per_s, 1), "tokens": trainer.tokens_seen,
                    "mfu": round(flops_per_token(n_params) * tokens_per_s / peak, 4)
                    if peak else None,
                    "time_s": round(budget.clock() - began, 3)}
                result.last_loss = loss
                stats.keep()
                stats.units += trainer.tokens_per_step
                # a fit times an evaluation and a save: it makes one of each if none was made
                fitting = trainer.needs_fit and trainer.step >= fit_at
                if trainer.step % tc.eval_interval == 0 or (fitting and not times.evals):
                    with times.timing("eval"):
                        val_loss = _evaluate(trainer, row, ckpts, tc)
                    evaluated_step = trainer.step
                metrics.write(row)
                if trainer.step % tc.save_interval == 0 or (fitting and not times.saves):
                    with times.timing("save"):
                        _save(trainer, ckpts, val_loss, result)
                    saved_step = trainer.step
                if fitting:  # after the save it timed: the fit step's checkpoint has no horizon
                    trainer.horizon = fit_to_budget(trainer, times, began, metrics)
                bar.update(1, loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:.0f}")
                if on_step is not None:
                    on_step(StepInfo(step=trainer.step, loss=loss, lr=lr,
                                     tokens_seen=trainer.tokens_seen, val_loss=row.get("val_loss")))
                reason = _stop_reason(trainer, tc, began, stop.set)
                if _any_rank(reason is not None, dist, device):
                    result.stop_reason = reason or "peer_stopped"
                    break
                times.start(trainer.step)
            else:  # the loop ran to its end step: max_steps, or the horizon fitted to the budget
                result.stop_reason = "max_steps" if trainer.end_step >= tc.max_steps \
                    else "max_seconds"
            if result.stop_reason != "nan_loss":
                if evaluated_step != trainer.step and trainer.step > 0:
                    row = {"step": trainer.step, "event": "final_eval"}
                    val_loss = _evaluate(trainer, row, ckpts, tc)
                    metrics.write(row)
                if saved_step != trainer.step and trainer.step > 0:
                    _save(trainer, ckpts, val_loss, result)
    finally:
        metrics.close()
    return _finish(trainer, ckpts, result, dist)


def _stop_reason(trainer: Trainer, tc: TrainConfig, began: float, signalled: bool) -> str | None:
    if signalled:
        return "interrupted"
    if tc.patience and trainer.bad_evals >= tc.patience:
        log.info("train: early stop: no val improvement in %d evaluations", trainer.bad_evals)
        return "early_stop"
    if out_of_time(trainer, began):
        return "max_seconds"
    return None


def _evaluate(trainer: Trainer, row: dict[str, Any], ckpts: CheckpointSet,
              tc: TrainConfig) -> float | None:
    """Validate, record it in the metrics row, save best.pt on improvement."""
    val_loss = trainer.validate()
    if val_loss is None:
        return None
    row["val_loss"] = val_loss
    row["val_ppl"] = math.exp(min(val_loss, 700.0))
    row["val_bpb"] = bits_per_byte(val_loss, trainer.val_tokens.tokens_per_byte)
    if trainer.best_val is None or val_loss < trainer.best_val:
        trainer.best_val = val_loss
        trainer.bad_evals = 0
        state = trainer.state_dict(val_loss)  # on every rank: it gathers their RNG states
        if trainer.dist.main:
            ckpts.save_best(state)
    else:
        trainer.bad_evals += 1
    log.info("train: step %d val loss %.4f (best %.4f)", trainer.step, val_loss, trainer.best_val)
    return val_loss


def _save(trainer: Trainer, ckpts: CheckpointSet, val_loss: float | None,
          result: TrainResult) -> None:
    state = trainer.state_dict(val_loss)  # on every rank: it gathers their RNG states
    if trainer.dist.main:
        result.last_checkpoint = ckpts.save(state)


def _finish(trainer: Trainer, ckpts: CheckpointSet, result: TrainResult,
            dist: Dist) -> TrainResult:
    result.steps = trainer.step
    result.tokens_seen = trainer.tokens_seen
    result.best_val_loss = trainer.best_val
    result.best_checkpoint = ckpts.best if ckpts.best.is_file() else None
    result.last_checkpoint = ckpts.latest()
    stats = result.stats
    stats.extra.update(stop_reason=result.stop_reason, steps=result.steps,
                       best_val_loss=result.best_val_loss, last_loss=result.last_loss)
    if dist.main:
        result.report = _write_report(result)
        source = result.best_checkpoint or result.last_checkpoint
        if source is not None:
            result.export = export_safetensors(source, result.run_dir / EXPORT_NAME)
    stats.finish()
    best = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "n/a"
    log.info("train: %s stopped (%s) at step %d, %d tokens seen, best val loss %s; %s",
             result.run_dir.name, result.stop_reason, result.steps, result.tokens_seen, best,
             result.last_checkpoint or "no checkpoint")
    return result


def _warn_about_val_split(cfg: Config, manifest: Manifest) -> None:
    """An empty or tiny val split: no validation or early stopping worth the name."""
    from pipeline.chunks import val_split_warning

    warning = val_split_warning(manifest.totals(), manifest.val_fraction,
                                manifest.split_chunk_tokens,
                                cfg.train.batch_size * cfg.train.block_size)
    if warning:
        log.warning("train: %s", warning)


def _write_report(result: TrainResult) -> Path | None:
    from model.report import plot_metrics

    if result.metrics is None or not result.metrics.is_file():
        return None
    try:
        return plot_metrics(result.metrics, result.run_dir / REPORT_NAME)
    except (ValueError, OSError) as e:  # a report is a by-product: never fail the run on it
        log.warning("train: could not draw the report: %s", e)
        return None


# --- the stage ----------------------------------------------------------------------------

RESULT_KEYS = ("run_dir", "steps", "tokens_seen", "best_val_loss", "best_checkpoint",
               "last_checkpoint", "stop_reason", "last_loss", "metrics", "report", "export")


def train_stage(cfg: Config, root: DataRoot, *, progress: bool = True) -> StageStats:
    """The train stage: `train` with its start taken from the config (train.init_checkpoint,
    train.init_optimizer); what the run did is in the stats' extras (paths as strings)."""
    tc = cfg.train
    result = train(cfg, root, progress=progress,
                   init_checkpoint=Path(tc.init_checkpoint) if tc.init_checkpoint else None,
                   init_optimizer=tc.init_optimizer)
    for key in RESULT_KEYS:
        value = getattr(result, key)
        result.stats.extra[key] = str(value) if isinstance(value, Path) else value
    return result.stats


def main(argv: list[str] | None = None) -> NoReturn:
    """`python -m model.train [cllm train options]` (what torchrun starts on every rank): the
    `cllm train` command of this environment, run in this process's place."""
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    cllm = Path(sys.executable).with_name("cllm")
    os.execv(cllm, [str(cllm), "train", *argv])  # replaces the process: never returns


if __name__ == "__main__":
    main()
