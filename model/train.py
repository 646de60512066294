"""The trainer: AdamW, lr schedules, validation, early stopping, atomic checkpoints, exact resume.

`train(cfg, root)` is the stage; `cllm train` and `python -m model.train` (also under
`torchrun --nproc_per_node N -m model.train ...`, DDP over gloo on CPU or nccl on CUDA) wrap it.
Under torchrun, name the run with `--set train.run=NAME`: torchrun's own parser takes `--run`
as an abbreviation of its `--run-path`.

Everything a run needs to continue exactly is in its checkpoints: the windows of step s are a
function of (seed, s) (model/data.py), the lr a function of s (model/schedule.py), and the
checkpoint holds the model, AdamW moments, RNG states and early-stopping counters. A run killed
at any point and resumed computes the same loss at every later step as an uninterrupted one.

A time-bounded run (`train.max_seconds`) measures its loop until the end of warm-up, then fits
once how many steps the budget holds (`_fit`): the schedule planned for max_steps is compressed
to end there, so the decay completes, and the run stops at that step (stop reason max_seconds).
The fitted horizon is saved in every checkpoint; a resumed run follows it (no new fit, so the
lr stays a function of the step) and spends the steps that remain, not a fresh budget's worth.
max_seconds still bounds each session's loop: a machine that gets slower after the fit stops
the run by the clock before its horizon (a warning says so).
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
from typing import TYPE_CHECKING, Any, Literal

from model.checkpoint import CheckpointSet, export_safetensors, load_checkpoint
from model.cllm import ModelConfig
from model.data import SAMPLER, SplitTokens, TrainWindows, check_tokenizer
from model.flops import flops_per_token, matmul_peak
from model.metrics import METRICS_NAME, MetricsLog
from model.runtime import (
    Dist,
    all_reduce_sum,
    autocast,
    dist_from_env,
    init_process_group,
    resolve_device,
    use_bf16,
)
from model.schedule import FIT_MARGIN, Horizon, StepCosts, fit_horizon, lr_at
from pipeline.config import Config, TrainConfig, save_resolved
from pipeline.errors import ConfigError
from pipeline.layout import DataRoot
from pipeline.lock import stage_lock
from pipeline.progress import Progress, StageStats
from pipeline.shards import Manifest, read_manifest

if TYPE_CHECKING:
    import torch

    from model.cllm import CLLM

log = logging.getLogger(__name__)

STAGE = "train"
REPORT_NAME = "report.png"
EXPORT_NAME = "model.safetensors"
MODEL_KEYS = [n for n in ModelConfig.__dataclass_fields__ if n != "vocab_size"]
# Steps a session times before it fits a horizon to max_seconds, besides its first step (which
# pays one-time costs: allocations, compilation): fewer make the estimate noisy.
MEASURED_STEPS = 5


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


@dataclass(kw_only=True, slots=True)
class _Start:
    """Where a session of a run starts from."""

    state: dict[str, Any] | None = None  # a checkpoint, or None for fresh weights
    resume: bool = False  # continue the run (step, optimizer, RNG) vs only take weights
    load_optimizer: bool = False
    source: str = "scratch"


# --- setup ---------------------------------------------------------------------------------


def _choose_start(tc: TrainConfig, ckpts: CheckpointSet, init_checkpoint: Path | None,
                  init_optimizer: bool) -> _Start:
    latest = ckpts.latest()
    if latest is not None:
        if tc.init_from == "scratch":
            raise ConfigError(
                f"train.init_from=scratch but run {tc.run!r} already has checkpoints in "
                f"{ckpts.folder}: continue it with --resume (train.init_from=resume) or pick "
                "another --run name")
        log.info("train: resuming %s from %s", tc.run, latest.name)
        return _Start(state=load_checkpoint(latest), resume=True, load_optimizer=True,
                      source=str(latest))
    if tc.init_from == "promoted" and init_checkpoint is None:
        raise ConfigError("train.init_from=promoted needs the promoted model's checkpoint "
                          "(the retrain flow passes it); none was given")
    if init_checkpoint is not None:
        log.info("train: starting from the weights of %s%s", init_checkpoint,
                 " and its optimizer state" if init_optimizer else "")
        return _Start(state=load_checkpoint(Path(init_checkpoint)), resume=False,
                      load_optimizer=init_optimizer, source=str(init_checkpoint))
    if tc.init_from == "resume":
        log.info("train: run %s has no checkpoint yet: starting from scratch", tc.run)
    return _Start()


def _model_config(tc: TrainConfig, manifest: Manifest, start: _Start) -> ModelConfig:
    if start.state is None:
        return ModelConfig.from_train(tc, manifest.tokenizer.vocab_size)
    mc = ModelConfig(**start.state["model_config"])
    differing = [f"{k}: config {getattr(tc, k)!r}, checkpoint {getattr(mc, k)!r}"
                 for k in MODEL_KEYS if getattr(tc, k) != getattr(mc, k)]
    if differing:
        log.warning("train: the model shape comes from the checkpoint, not train.*: %s",
                    "; ".join(differing))
    if mc.vocab_size != manifest.tokenizer.vocab_size:
        raise ConfigError(f"checkpoint vocab_size {mc.vocab_size} differs from the shards' "
                          f"{manifest.tokenizer.vocab_size}")
    return mc


def _tokenizer_entry(root: DataRoot, manifest: Manifest) -> dict[str, Any]:
    """What checkpoints carry about the tokenizer, its JSON included so they stand alone."""
    from pipeline.rawstore import sha256_file

    info = manifest.tokenizer
    path = root.path / info.path
    text = ""
    if path.is_file() and sha256_file(path) == info.sha256:
        text = path.read_text(encoding="utf-8")
    else:
        log.warning("train: %s is missing or not the shards' tokenizer; checkpoints will carry "
                    "no tokenizer (sampling from them needs one)", path)
    return {"sha256": info.sha256, "vocab_size": info.vocab_size, "eos_id": info.eos_id,
            "json": text}


def _make_optimizer(model: CLLM, tc: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    import torch

    fused = device.type in ("cuda", "cpu", "mps")
    try:
        return torch.optim.AdamW(model.param_groups(tc.weight_decay), lr=tc.lr,
                                 betas=(tc.beta1, tc.beta2), fused=fused)
    except (RuntimeError, ValueError) as e:  # fused needs a device/dtype this torch supports
        log.info("train: fused AdamW unavailable (%s); using the foreach one", e)
        return torch.optim.AdamW(model.param_groups(tc.weight_decay), lr=tc.lr,
                                 betas=(tc.beta1, tc.beta2))


def _set_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _rng_state(device: torch.device, dist: Dist) -> dict[str, Any]:
    """This process's RNG states; under DDP also every rank's CPU state (a collective call)."""
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    if dist.active:
        import torch.distributed as tdist

        mine = state["torch"].to(device)
        every = [torch.empty_like(mine) for _ in range(dist.world)]
        tdist.all_gather(every, mine)
        state["torch_ranks"] = [t.cpu() for t in every]
    return state


def _restore_rng(state: dict[str, Any], device: torch.device, dist: Dist) -> None:
    import torch

    ranks = state.get("torch_ranks") or []
    own = ranks[dist.rank] if len(ranks) == dist.world else state["torch"]
    torch.set_rng_state(own.cpu())
    if device.type == "cuda" and "cuda" in state:  # rank 0's: GPU dropout masks of other
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)  # ranks differ after a resume


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


class Trainer:
    """One session of a run: the model, optimizer and counters, and what a checkpoint holds."""

    def __init__(self, cfg: Config, root: DataRoot, manifest: Manifest, start: _Start,
                 dist: Dist, device: torch.device) -> None:
        import torch

        self.cfg, self.tc, self.root, self.dist, self.device = cfg, cfg.train, root, dist, device
        self.manifest = manifest
        self.model_cfg = _model_config(self.tc, manifest, start)
        state = start.state
        seed = int(state["data"]["seed"]) if start.resume and state else self.tc.seed
        _set_seed(seed + dist.rank)
        self.model = self._build_model(state).to(device)
        self.optimizer = _make_optimizer(self.model, self.tc, device)
        self.step = int(state["step"]) if start.resume and state else 0
        self.tokens_seen = int(state["tokens_seen"]) if start.resume and state else 0
        early = (state or {}).get("early_stop", {}) if start.resume else {}
        self.best_val = early.get("best_val_loss")
        self.bad_evals = int(early.get("bad_evals", 0))
        self.seed = seed
        if state is not None and start.load_optimizer and state.get("optimizer"):
            self.optimizer.load_state_dict(state["optimizer"])
            for group, decay in zip(self.optimizer.param_groups, (self.tc.weight_decay, 0.0),
                                    strict=True):  # the config's, not the checkpoint's
                group["weight_decay"] = decay
                group["betas"] = (self.tc.beta1, self.tc.beta2)
        if start.resume and state is not None:
            _restore_rng(state["rng"], device, dist)
        self.horizon = _saved_horizon(state, self.tc) if start.resume and state else None
        if start.resume and state is not None and state["tokenizer"].get("json"):
            self.tokenizer = state["tokenizer"]
        else:
            self.tokenizer = _tokenizer_entry(root, manifest)
        self.bf16 = use_bf16(device, self.tc.precision)
        self.forward_model = self._wrap(self.model)
        self.train_windows = TrainWindows(
            SplitTokens(root.shards, manifest, "train"), block_size=self.model_cfg.block_size,
            batch_size=self.tc.batch_size, seed=seed, grad_accum=self.tc.grad_accum,
            rank=dist.rank, world=dist.world)
        self.val_tokens = SplitTokens(root.shards, manifest, "val")
        if start.resume and state is not None and \
                state["data"].get("train_tokens") != self.train_windows.tokens.total:
            log.warning("train: the train split changed since %s (%s -> %d tokens): the run "
                        "continues on the new data, not exactly as it would have", start.source,
                        state["data"].get("train_tokens"), self.train_windows.tokens.total)
        self.tokens_per_step = self.tc.batch_size * self.model_cfg.block_size * \
            self.tc.grad_accum * dist.world
        if device.type == "cuda":  # TF32 matmuls, as nanoGPT; CPU fp32 stays IEEE fp32
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def _build_model(self, state: dict[str, Any] | None) -> CLLM:
        from model.cllm import CLLM

        model = CLLM(self.model_cfg)
        if state is not None:
            model.load_state_dict(state["model"])
        return model

    def _wrap(self, model: CLLM) -> Any:
        """The module the training forward runs through: compiled and/or DDP-wrapped."""
        import torch

        wrapped: Any = model
        if self.tc.compile:
            wrapped = torch.compile(wrapped)
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = DistributedDataParallel(wrapped, device_ids=ids)
        return wrapped

    def state_dict(self, val_loss: float | None) -> dict[str, Any]:
        from model.checkpoint import CHECKPOINT_FORMAT

        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "model_config": self.model_cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": self.tc.scheduler, "step": self.step,
                          "lr": lr_at(max(self.step - 1, 0), self.tc, self.horizon),
                          "horizon": self.horizon.to_dict() if self.horizon else None},
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "rng": _rng_state(self.device, self.dist),
            "data": {"sampler": SAMPLER, "seed": self.seed, "next_step": self.step,
                     "train_tokens": self.train_windows.tokens.total,
                     "manifest_version": self.manifest.version},
            "early_stop": {"best_val_loss": self.best_val, "bad_evals": self.bad_evals},
            "val_loss": val_loss,
            "config": self.cfg.to_dict(),
            "tokenizer": self.tokenizer,
        }

    def train_step(self) -> tuple[float, float, float]:
        """One optimizer step over grad_accum micro-batches: (loss, grad norm, lr).

        A non-finite loss or gradient leaves the weights untouched (no optimizer step).
        """
        import torch

        lr = lr_at(self.step, self.tc, self.horizon)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.forward_model.train()
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(self.tc.grad_accum):
            x, y = self.train_windows.batch(self.step, micro, self.device)
            last = micro == self.tc.grad_accum - 1
            sync = contextlib.nullcontext() if last or not self.dist.active \
                else self.forward_model.no_sync()
            with sync:
                with autocast(self.device, self.bf16):
                    _, loss = self.forward_model(x, y)
                (loss / self.tc.grad_accum).backward()
            loss_sum += loss.detach()
        max_norm = self.tc.grad_clip if self.tc.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        (loss_value,) = all_reduce_sum([float(loss_sum) / self.tc.grad_accum], self.dist,
                                       self.device)
        loss_value /= self.dist.world
        if math.isfinite(loss_value) and math.isfinite(grad_norm):
            self.optimizer.step()
            self.step += 1
            self.tokens_seen += self.tokens_per_step
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, grad_norm, lr

    @property
    def needs_fit(self) -> bool:
        """A time-bounded run whose schedule has no horizon yet (a constant lr needs none)."""
        return bool(self.tc.max_seconds) and self.tc.scheduler != "constant" \
            and self.horizon is None

    @property
    def end_step(self) -> int:
        """The step the run ends at: its fitted horizon, else max_steps."""
        if self.horizon is None:
            return self.tc.max_steps
        return min(self.horizon.end, self.tc.max_steps)

    def validate(self) -> float | None:
        """Mean val loss over the fixed windows (None when the val split is empty)."""
        from model.evaluate import split_loss

        if self.val_tokens.total < 2:
            return None
        loss_sum, count, _ = split_loss(
            self.model, self.val_tokens,
            windows=self.tc.eval_iters * self.tc.batch_size * self.dist.world,
            batch_size=self.tc.batch_size, device=self.device, bf16=self.bf16, dist=self.dist)
        return loss_sum / count


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
    if tc.threads:
        torch.set_num_threads(tc.threads)
    dist = dist_from_env()
    device = resolve_device(tc.device)
    if dist.active:
        device = init_process_group(dist, device)
    run_dir = root.run(tc.run)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _session(dist, run_dir):
        return _train_session(cfg, root, run_dir, dist, device, progress and dist.main,
                              init_checkpoint, init_optimizer, on_step)


def _train_session(cfg: Config, root: DataRoot, run_dir: Path, dist: Dist, device: torch.device,
                   progress: bool, init_checkpoint: Path | None, init_optimizer: bool,
                   on_step: Callable[[StepInfo], None] | None) -> TrainResult:
    tc = cfg.train
    manifest = read_manifest(root.manifest)
    ckpts = CheckpointSet(run_dir, tc.keep_last)
    if dist.main:
        ckpts.remove_orphans()
    start = _choose_start(tc, ckpts, init_checkpoint, init_optimizer)
    if start.state is not None:  # before anything else: the ids must mean the same text
        check_tokenizer(start.state["tokenizer"]["sha256"], manifest.tokenizer.sha256,
                        f"the shards in {root.shards}")
    trainer = Trainer(cfg, root, manifest, start, dist, device)
    if dist.main:
        save_resolved(cfg, run_dir)
    metrics = MetricsLog(run_dir / METRICS_NAME, enabled=dist.main)
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
    began = time.monotonic()
    times = _LoopTimes()
    fit_step = max(tc.warmup_steps, trainer.step + 1 + MEASURED_STEPS)
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
                    "time_s": round(time.monotonic() - began, 3)}
                result.last_loss = loss
                stats.keep()
                stats.units += trainer.tokens_per_step
                # a fit times an evaluation and a save: it makes one of each if none was made
                fitting = trainer.needs_fit and trainer.step >= fit_step
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
                    _fit(trainer, times, began, metrics)
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
    if tc.max_seconds and time.monotonic() - began >= tc.max_seconds:
        if trainer.horizon is not None and trainer.step < trainer.end_step:
            log.warning("train: max_seconds ran out at step %d, before the horizon %d fitted "
                        "at step %d: the loop got slower after the fit; the lr is %.3g, not "
                        "yet min_lr %.3g", trainer.step, trainer.end_step, trainer.horizon.start,
                        lr_at(trainer.step - 1, tc, trainer.horizon), tc.min_lr)
        return "max_seconds"
    return None


# --- fitting the step horizon to max_seconds -------------------------------------------------


@dataclass(slots=True)
class _LoopTimes:
    """This session's loop time from the end of its first step on, with the evaluations and
    saves in it timed apart: what a horizon is fitted from."""

    since: float | None = None  # when timing began (None: the first step is not done yet)
    since_step: int = 0
    evals: int = 0
    eval_s: float = 0.0
    saves: int = 0
    save_s: float = 0.0

    def start(self, step: int) -> None:
        if self.since is None:
            self.since, self.since_step = time.monotonic(), step

    @contextlib.contextmanager
    def timing(self, kind: Literal["eval", "save"]) -> Iterator[None]:
        t0 = time.monotonic()
        yield
        if self.since is None:  # in the first step: one-time costs, not a fair sample
            return
        if kind == "eval":
            self.evals, self.eval_s = self.evals + 1, self.eval_s + time.monotonic() - t0
        else:
            self.saves, self.save_s = self.saves + 1, self.save_s + time.monotonic() - t0

    def costs(self, step: int) -> StepCosts:
        assert self.since is not None, "costs asked for before the first step was timed"
        loop_s = time.monotonic() - self.since - self.eval_s - self.save_s
        return StepCosts(step_s=loop_s / max(step - self.since_step, 1),
                         eval_s=self.eval_s / max(self.evals, 1),
                         save_s=self.save_s / max(self.saves, 1))


def _saved_horizon(state: dict[str, Any], tc: TrainConfig) -> Horizon | None:
    """The checkpoint's horizon, if it was fitted to this run's max_steps and max_seconds."""
    horizon = Horizon.from_dict((state.get("scheduler") or {}).get("horizon"))
    if horizon is None:
        return None
    if (horizon.max_steps, horizon.max_seconds) != (tc.max_steps, tc.max_seconds):
        log.warning("train: the checkpoint's step horizon %d was fitted to max_steps=%d, "
                    "max_seconds=%g; this session has %d, %g: the schedule is planned anew",
                    horizon.end, horizon.max_steps, horizon.max_seconds, tc.max_steps,
                    tc.max_seconds)
        return None
    log.info("train: following the step horizon %d fitted at step %d to max_seconds=%g "
             "(saved in the checkpoint)", horizon.end, horizon.start, horizon.max_seconds)
    return horizon


def _fit(trainer: Trainer, times: _LoopTimes, began: float, metrics: MetricsLog) -> None:
    """Fit the step horizon to the time left; log it, and record it as a metrics row."""
    tc, dist = trainer.tc, trainer.dist
    own = times.costs(trainer.step)
    left = tc.max_seconds - (time.monotonic() - began)
    # every rank must fit the same horizon, or they would stop at different steps
    total = all_reduce_sum([left, own.step_s, own.eval_s, own.save_s], dist, trainer.device)
    left, step_s, eval_s, save_s = (v / dist.world for v in total)
    costs = StepCosts(step_s=step_s, eval_s=eval_s, save_s=save_s)
    trainer.horizon = horizon = fit_horizon(trainer.step, left, costs, tc, FIT_MARGIN)
    per_step = costs.per_step(tc.eval_interval, tc.save_interval)
    why = (f"max_seconds={tc.max_seconds:g} leaves {left:.1f} s at step {trainer.step}: "
           f"{per_step:.4g} s/step (a step {step_s:.4g} s, an evaluation {eval_s:.3g} s "
           f"every {tc.eval_interval}, a save {save_s:.3g} s every {tc.save_interval}) with a "
           f"{FIT_MARGIN:.0%} margin")
    if horizon.end >= tc.max_steps:
        ends = f"all of max_steps={tc.max_steps} fit: the schedule is unchanged"
    else:
        ends = (f"fits {horizon.end - trainer.step} more steps: the schedule planned for "
                f"max_steps={tc.max_steps} now ends at step {horizon.end}")
    log.info("train: %s; %s", why, ends)
    # logged as the first step the horizon applies to: a resume from the checkpoint of the
    # fit's step (which has no horizon) drops the row with the rows after it
    metrics.write({"step": trainer.step + 1, "event": "horizon", "horizon": horizon.end,
                   "fitted_at": trainer.step, "max_steps": tc.max_steps,
                   "max_seconds": tc.max_seconds, "seconds_left": round(left, 3),
                   "step_s": round(step_s, 6), "eval_s": round(eval_s, 6),
                   "save_s": round(save_s, 6), "margin": FIT_MARGIN, "reason": f"{why}; {ends}"})


def _evaluate(trainer: Trainer, row: dict[str, Any], ckpts: CheckpointSet,
              tc: TrainConfig) -> float | None:
    """Validate, record it in the metrics row, save best.pt on improvement."""
    val_loss = trainer.validate()
    if val_loss is None:
        return None
    row["val_loss"] = val_loss
    row["val_ppl"] = math.exp(min(val_loss, 700.0))
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


def main(argv: list[str] | None = None) -> int:
    """`python -m model.train [cllm train options]` (what torchrun starts on every rank): the
    `cllm train` command of this environment, run in this process's place."""
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    cllm = Path(sys.executable).with_name("cllm")
    os.execv(cllm, [str(cllm), "train", *argv])
    return 1  # not reached: execv replaces the process


if __name__ == "__main__":
    sys.exit(main())
