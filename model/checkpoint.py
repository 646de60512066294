"""Checkpoints: atomic saves, keep-last-K plus best, `weights_only=True` loads, safetensors export,
and `read_model`: the one reader of every form a model takes here (a checkpoint, a run or
registry folder, an exported model.safetensors).

A checkpoint is a plain dict of tensors and Python scalars/strings/lists (nothing pickled
beyond what `torch.load(weights_only=True)` accepts):

  format, model (state dict), model_config, optimizer, scheduler {kind, step, lr, horizon
  (the step horizon fitted to train.max_seconds: start, end, max_steps, max_seconds; or None)},
  step, tokens_seen, rng {torch, cuda}, data {sampler, seed, next_step, train_tokens},
  best_val_loss, val_loss, config (the resolved Config as a dict), tokenizer {sha256,
  vocab_size, eos_id, json}
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.atomic import atomic_write, atomic_write_bytes, remove_orphan_temps

if TYPE_CHECKING:
    import torch

    from model.cllm import CLLM

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
CHECKPOINTS_DIR = "checkpoints"
BEST_NAME = "best.pt"
STEP_PATTERN = re.compile(r"^step-(\d{8})\.pt$")
MODEL_FILES = (BEST_NAME, "model.pt", "checkpoint.pt")  # what a model folder may hold
SAFETENSORS_NAME = "model.safetensors"  # a run's or registry folder's exported weights
# what a copy for use keeps of a checkpoint: weights, shape, tokenizer, what made it (no AdamW
# moments, RNG or data position: those only resume the run, which keeps its own checkpoints)
WEIGHTS_KEYS = ("format", "model", "model_config", "step", "tokens_seen", "val_loss", "config",
                "tokenizer")


class CheckpointError(ValueError):
    """A file that is not a readable CLLM checkpoint."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write `state` to `path` atomically (a kill mid-save leaves the old file intact)."""
    import torch

    with atomic_write(path, "wb") as fh:
        torch.save(state, fh)
    return Path(path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` (no arbitrary code runs on load)."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        # (a truncated zip archive surfaces as OSError EINVAL)
        raise CheckpointError(f"{path}: not a readable checkpoint ({_gist(e)})") from None
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise CheckpointError(f"{path}: not a CLLM checkpoint (no model or model_config)")
    if state.get("format", 0) > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {state['format']} is newer than this "
                              f"code reads ({CHECKPOINT_FORMAT}); upgrade cllm-pipeline")
    return state


def _gist(error: Exception) -> str:
    """A torch.load error in one line: its weights-only refusal is a page of advice."""
    text = str(error).strip()
    refusal = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    if refusal:
        return f"the weights-only unpickler refused it: {refusal.group(1).strip()}"
    return text.splitlines()[0] if text else type(error).__name__


def model_from_state(state: dict[str, Any]) -> CLLM:
    """The model a checkpoint holds, weights loaded (on CPU, in eval mode)."""
    from model.cllm import CLLM, ModelConfig

    model = CLLM(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval()


def tokenizer_from_state(state: dict[str, Any]) -> Any:
    """The Hugging Face tokenizer embedded in a checkpoint."""
    from tokenizers import Tokenizer

    text = state.get("tokenizer", {}).get("json", "")
    if not text:
        raise CheckpointError("checkpoint carries no tokenizer (made from shards without "
                              "tokenizer/tokenizer.json)")
    return Tokenizer.from_str(text)


def resolve_checkpoint(path: Path) -> Path:
    """A model file, or what a run or model folder holds: its best (else latest) checkpoint,
    else its exported model.safetensors."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for name in MODEL_FILES:
            if (path / name).is_file():
                return path / name
        run_dir = path.parent if path.name == CHECKPOINTS_DIR else path
        latest = CheckpointSet(run_dir, keep_last=1).latest()
        if latest is not None:
            return latest
        if (path / SAFETENSORS_NAME).is_file():
            return path / SAFETENSORS_NAME
        raise FileNotFoundError(f"{path} holds no checkpoint ({', '.join(MODEL_FILES)}, "
                                f"{CHECKPOINTS_DIR}/step-*.pt or {SAFETENSORS_NAME})")
    raise FileNotFoundError(f"no checkpoint or model folder at {path}")


def read_model(path: Path) -> dict[str, Any]:
    """A model's entries as a checkpoint holds them (model, model_config, tokenizer, step,
    ...), from a checkpoint, a run or registry folder, or an exported model.safetensors;
    `path` is where they were read."""
    found = resolve_checkpoint(Path(path))
    if found.suffix == ".safetensors":
        state = load_safetensors_state(found)
    else:
        state = load_checkpoint(found)
    state["path"] = str(found)
    return state


def weights_copy(state: dict[str, Any]) -> dict[str, Any]:
    """What a registry copy of a checkpoint keeps: what using the model needs, not resuming."""
    return {k: state[k] for k in WEIGHTS_KEYS if k in state}


class CheckpointSet:
    """The checkpoints of one run: `checkpoints/step-NNNNNNNN.pt` (last K kept) and `best.pt`."""

    def __init__(self, run_dir: Path, keep_last: int) -> None:
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / CHECKPOINTS_DIR
        self.keep_last = keep_last

    @property
    def best(self) -> Path:
        return self.run_dir / BEST_NAME

    def path_for(self, step: int) -> Path:
        return self.folder / f"step-{step:08d}.pt"

    def steps(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        found = (STEP_PATTERN.match(p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def latest(self) -> Path | None:
        steps = self.steps()
        return self.path_for(steps[-1]) if steps else None

    def remove_orphans(self) -> int:
        """Temp files of saves that a kill interrupted."""
        return remove_orphan_temps(self.folder) + remove_orphan_temps(self.run_dir)

    def save(self, state: dict[str, Any]) -> Path:
        path = save_checkpoint(self.path_for(state["step"]), state)
        for old in self.steps()[:-self.keep_last]:
            self.path_for(old).unlink(missing_ok=True)
        return path

    def save_best(self, state: dict[str, Any]) -> Path:
        return save_checkpoint(self.best, state)


def export_safetensors(checkpoint: Path, out: Path | None = None) -> Path:
    """Write the model weights of a checkpoint as safetensors; the metadata holds the model
    config and the tokenizer, so the file stands alone (`read_model` reads it)."""
    from safetensors.torch import save

    state = load_checkpoint(checkpoint)
    tied = state["model_config"].get("tie_embeddings", True)
    weights = {k: v.contiguous() for k, v in state["model"].items()
               if not (tied and k == "lm_head.weight")}  # tied to wte.weight: stored once
    tokenizer = state.get("tokenizer", {})
    metadata = {
        "format": "cllm",
        "model_config": json.dumps(state["model_config"], sort_keys=True),
        "tied": "lm_head.weight=wte.weight" if tied else "",
        "step": str(state.get("step", 0)),
        "tokenizer_sha256": tokenizer.get("sha256", ""),
        "tokenizer_eos_id": str(tokenizer.get("eos_id", "")),
        "tokenizer_json": tokenizer.get("json", ""),
    }
    out = Path(out) if out else Path(checkpoint).with_suffix(".safetensors")
    atomic_write_bytes(out, save(weights, metadata=metadata))
    return out


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_gist(e)})") from None


def load_safetensors_state(path: Path) -> dict[str, Any]:
    """The entries of an exported model.safetensors, as a checkpoint names them."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    metadata = _safetensors_metadata(path)
    if metadata.get("format") != "cllm":
        hint = " (a Hugging Face export: load its folder with transformers)" \
            if metadata.get("format") == "pt" else ""
        raise CheckpointError(f"{path}: not a CLLM safetensors export{hint}")
    try:
        weights = load_file(str(path))
        model_config = json.loads(metadata["model_config"])
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable CLLM export ({_gist(e)})") from None
    weights.setdefault("lm_head.weight", weights["wte.weight"])  # tied: stored once
    vocab = model_config.get("vocab_size")
    eos = metadata.get("tokenizer_eos_id", "")
    return {"format": CHECKPOINT_FORMAT, "model": weights, "model_config": model_config,
            "step": int(metadata.get("step", 0)),
            "tokenizer": {"sha256": metadata.get("tokenizer_sha256", ""), "vocab_size": vocab,
                          "eos_id": int(eos) if eos.isdigit() else None,
                          "json": metadata.get("tokenizer_json", "")}}


def load_safetensors_model(path: Path) -> CLLM:
    """A model from an exported safetensors file."""
    return model_from_state(load_safetensors_state(path))
