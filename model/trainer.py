"""The Trainer: one session of a run (model, AdamW, counters, data windows), its optimizer step,
and its state as a pair, `state_dict` / `load_state_dict`: what a checkpoint holds, so a
resumed session continues exactly (same windows, same lr, same RNG draws).

Where a session starts from (`choose_start`): the run's own last checkpoint (a resume), the
weights of a given checkpoint (a promoted model), or fresh weights.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.checkpoint import CheckpointSet, load_checkpoint
from model.cllm import ModelConfig
from model.data import SAMPLER, SplitTokens, TrainWindows
from model.runtime import Dist, all_reduce_sum, autocast, use_bf16, within_omp_thread_limit
from model.schedule import Horizon, lr_at
from pipeline.config import Config, TrainConfig
from pipeline.errors import ConfigError
from pipeline.layout import DataRoot
from pipeline.shards import Manifest

if TYPE_CHECKING:
    import torch

    from model.cllm import CLLM

log = logging.getLogger(__name__)


@dataclass(kw_only=True, slots=True)
class Start:
    """Where a session of a run starts from."""

    state: dict[str, Any] | None = None  # a checkpoint, or None for fresh weights
    resume: bool = False  # continue the run (step, optimizer, RNG) vs only take weights
    load_optimizer: bool = False
    source: str = "scratch"


def choose_start(tc: TrainConfig, ckpts: CheckpointSet, init_checkpoint: Path | None,
                 init_optimizer: bool) -> Start:
    latest = ckpts.latest()
    if latest is not None:
        if tc.init_from == "scratch":
            raise ConfigError(
                f"train.init_from=scratch but run {tc.run!r} already has checkpoints in "
                f"{ckpts.folder}: continue it with --resume (train.init_from=resume) or pick "
                "another --run name")
        log.info("train: resuming %s from %s", tc.run, latest.name)
        return Start(state=load_checkpoint(latest), resume=True, load_optimizer=True,
                     source=str(latest))
    if tc.init_from == "promoted" and init_checkpoint is None:
        raise ConfigError("train.init_from=promoted needs the promoted model's checkpoint "
                          "(the retrain flow passes it); none was given")
    if init_checkpoint is not None:
        state = load_checkpoint(Path(init_checkpoint))
        if init_optimizer and not state.get("optimizer"):
            log.warning("train: %s holds no optimizer state (a registry copy keeps the weights "
                        "only; its run's checkpoints keep AdamW's): the moments start afresh",
                        init_checkpoint)
        log.info("train: starting from the weights of %s%s", init_checkpoint,
                 " and its optimizer state" if init_optimizer and state.get("optimizer")
                 else "")
        return Start(state=state, resume=False, load_optimizer=init_optimizer,
                     source=str(init_checkpoint))
    if tc.init_from == "resume":
        log.info("train: run %s has no checkpoint yet: starting from scratch", tc.run)
    return Start()


def _model_config(tc: TrainConfig, manifest: Manifest, start: Start) -> ModelConfig:
    """The shape of [train] for fresh weights; a checkpoint's own shape for its weights."""
    if start.state is None:
        return ModelConfig.from_train(tc, manifest.tokenizer.vocab_size)
    mc = ModelConfig(**start.state["model_config"])
    differing = [f"{k}: config {ours!r}, checkpoint {theirs!r}"
                 for k, (ours, theirs) in mc.shape_differences(tc).items()]
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
    groups = model.param_groups(tc.weight_decay, decay_embeddings=tc.decay_embeddings)
    try:
        return torch.optim.AdamW(groups, lr=tc.lr, betas=(tc.beta1, tc.beta2), fused=fused)
    except (RuntimeError, ValueError) as e:  # fused needs a device/dtype this torch supports
        log.info("train: fused AdamW unavailable (%s); using the foreach one", e)
        return torch.optim.AdamW(groups, lr=tc.lr, betas=(tc.beta1, tc.beta2))


def _regrouped(saved: dict[str, Any], model: CLLM, saved_rule: bool,
               optimizer: torch.optim.AdamW) -> dict[str, Any]:
    """An AdamW state saved under the decay groups of `saved_rule` (train.decay_embeddings),
    re-keyed to `optimizer`'s groups: each parameter keeps its own moments."""
    saved_order = [p for group in model.param_groups(0.0, decay_embeddings=saved_rule)
                   for p in group["params"]]  # what the saved state's indices point at
    ours = [p for group in optimizer.param_groups for p in group["params"]]
    index = {id(p): i for i, p in enumerate(ours)}
    moved = {index[id(saved_order[int(i)])]: moments for i, moments in saved["state"].items()}
    groups, start = [], 0
    for saved_group, group in zip(saved["param_groups"], optimizer.param_groups, strict=True):
        groups.append({**saved_group, "params": list(range(start, start + len(group["params"])))})
        start += len(group["params"])
    return {"state": moved, "param_groups": groups}


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


class Trainer:
    """One session of a run: the model, optimizer and counters, and what a checkpoint holds."""

    def __init__(self, cfg: Config, root: DataRoot, manifest: Manifest, start: Start,
                 dist: Dist, device: torch.device) -> None:
        self.cfg, self.tc, self.root, self.dist, self.device = cfg, cfg.train, root, dist, device
        self.manifest = manifest
        self.model_cfg = _model_config(self.tc, manifest, start)
        state = start.state
        resumed = state if start.resume else None  # the run's own checkpoint, continued
        # the seed before the weights: fresh weights are drawn from it
        self.seed = int(resumed["data"]["seed"]) if resumed else self.tc.seed
        _set_seed(self.seed + dist.rank)
        self.model = self._build_model(state).to(device)
        self.optimizer = _make_optimizer(self.model, self.tc, device)
        self.step = 0
        self.tokens_seen = 0
        self.best_val: float | None = None
        self.bad_evals = 0
        self.horizon: Horizon | None = None
        self.tokenizer: dict[str, Any] | None = None
        if resumed is not None:
            self.load_state_dict(resumed)
        elif state is not None and start.load_optimizer:
            self._load_optimizer(state)
        if self.tokenizer is None:
            self.tokenizer = _tokenizer_entry(root, manifest)
        self.bf16 = use_bf16(device, self.tc.precision)
        if self.bf16 and device.type == "cpu":
            within_omp_thread_limit()
        self.forward_model = self._wrap(self.model)
        self.train_windows = TrainWindows(
            SplitTokens(root.shards, manifest, "train"), block_size=self.model_cfg.block_size,
            batch_size=self.tc.batch_size, seed=self.seed, grad_accum=self.tc.grad_accum,
            rank=dist.rank, world=dist.world)
        self.val_tokens = SplitTokens(root.shards, manifest, "val")
        if resumed is not None and \
                resumed["data"].get("train_tokens") != self.train_windows.tokens.total:
            log.warning("train: the train split changed since %s (%s -> %d tokens): the run "
                        "continues on the new data, not exactly as it would have", start.source,
                        resumed["data"].get("train_tokens"), self.train_windows.tokens.total)
        self.tokens_per_step = self.tc.batch_size * self.model_cfg.block_size * \
            self.tc.grad_accum * dist.world

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

    def _load_optimizer(self, state: dict[str, Any]) -> None:
        """The checkpoint's AdamW moments, under this config's decay and betas."""
        if not state.get("optimizer"):
            return
        # checkpoints from before train.decay_embeddings kept the embeddings out of decay
        saved_rule = bool(state.get("config", {}).get("train", {}).get("decay_embeddings",
                                                                        False))
        saved = state["optimizer"]
        if saved_rule != self.tc.decay_embeddings:
            log.info("train: the checkpoint's AdamW state was saved with "
                     "train.decay_embeddings=%s: its moments follow their parameters into "
                     "this run's groups", saved_rule)
            saved = _regrouped(saved, self.model, saved_rule, self.optimizer)
        self.optimizer.load_state_dict(saved)
        for group, decay in zip(self.optimizer.param_groups, (self.tc.weight_decay, 0.0),
                                strict=True):  # the config's, not the checkpoint's
            group["weight_decay"] = decay
            group["betas"] = (self.tc.beta1, self.tc.beta2)

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

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the run a checkpoint of it saved: optimizer, counters, RNG, horizon and
        tokenizer (the weights are the model's from `_build_model`, the seed from __init__)."""
        self._load_optimizer(state)
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens_seen"])
        early = state.get("early_stop", {})
        self.best_val = early.get("best_val_loss")
        self.bad_evals = int(early.get("bad_evals", 0))
        _restore_rng(state["rng"], self.device, self.dist)
        self.horizon = _saved_horizon(state, self.tc)
        if state["tokenizer"].get("json"):
            self.tokenizer = state["tokenizer"]

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
