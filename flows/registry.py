"""The promoted-model registry under `models/`, with its canary set and its logs.

models/<id>/model.pt        the promoted checkpoint's weights, config and tokenizer (a copy: runs
                            may be deleted; without AdamW moments: the run's checkpoints resume)
models/<id>/model.safetensors, record.json
models/<id>/hf/             the model as a transformers folder, when its recipe maps to one
models/current              symlink to the promoted <id>, swapped atomically (the commit point)
models/canary/              token shard frozen at the first promotion + canary.json
models/decisions.jsonl      every promote / refuse decision and why
models/validation.jsonl     the validation history
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import atomic_write, atomic_write_json, atomic_write_text
from pipeline.layout import DataRoot
from pipeline.records import utc_now
from pipeline.shards import IDX_DTYPE, read_manifest

log = logging.getLogger(__name__)

CURRENT = "current"
CANARY = "canary"
MODEL_FILE = "model.pt"
RECORD_FILE = "record.json"
HF_FOLDER = "hf"


@dataclass(kw_only=True, slots=True)
class ModelRecord:
    """What we knew of a model when it was promoted."""

    id: str
    run: str
    step: int
    checkpoint: str  # the run checkpoint it was copied from
    val_loss: float  # on the val shards of manifest_version
    manifest_version: int
    tokenizer_sha256: str
    canary_loss: float | None = None
    val_bpb: float | None = None  # bits per byte on those val shards (None: bytes not counted)
    promoted_at: str = field(default_factory=utc_now)
    reason: str = ""

    @property
    def path(self) -> str:
        return self.id


def _jsonl_append(path: Path, row: dict[str, Any]) -> None:
    """Append by rewriting atomically: a kill never leaves half a line (the logs are small)."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    atomic_write_text(path, old + json.dumps(row, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


class Registry:
    def __init__(self, root: DataRoot) -> None:
        self.root = root
        self.folder = root.models

    @property
    def decisions_log(self) -> Path:
        return self.folder / "decisions.jsonl"

    @property
    def validation_log(self) -> Path:
        return self.folder / "validation.jsonl"

    @property
    def canary_dir(self) -> Path:
        return self.folder / CANARY

    def current(self) -> ModelRecord | None:
        link = self.folder / CURRENT
        if not (link / RECORD_FILE).is_file():
            return None
        return ModelRecord(**json.loads((link / RECORD_FILE).read_text(encoding="utf-8")))

    def checkpoint(self, record: ModelRecord) -> Path:
        return self.folder / record.id / MODEL_FILE

    def current_checkpoint(self) -> Path | None:
        record = self.current()
        return self.checkpoint(record) if record else None

    def promote(self, checkpoint: Path, record: ModelRecord, **facts: Any) -> ModelRecord:
        """Copy the checkpoint's weights in, export them (safetensors, and transformers where
        the recipe maps), then point `current` at it.

        `facts` go into the decision's row (what the candidate was trained on)."""
        from model.checkpoint import (
            export_safetensors,
            load_checkpoint,
            save_checkpoint,
            weights_copy,
        )

        target = self.folder / record.id
        target.mkdir(parents=True, exist_ok=True)
        save_checkpoint(target / MODEL_FILE, weights_copy(load_checkpoint(checkpoint)))
        export_safetensors(target / MODEL_FILE, target / "model.safetensors")
        _export_hf(target)
        atomic_write_json(target / RECORD_FILE, asdict(record))
        self._point_current_at(record.id)
        self.log_decision(promoted=True, model=record.id, reason=record.reason,
                          val_loss=record.val_loss, **facts)
        return record

    def _point_current_at(self, model_id: str) -> None:
        tmp = self.folder / f".{CURRENT}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(model_id)
        os.replace(tmp, self.folder / CURRENT)

    def log_decision(self, *, promoted: bool, reason: str, **figures: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _jsonl_append(self.decisions_log, {"at": utc_now(), "promoted": promoted,
                                           "reason": reason, **figures})

    def log_validation(self, row: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _jsonl_append(self.validation_log, {"at": utc_now(), **row})

    def decisions(self) -> list[dict[str, Any]]:
        return read_jsonl(self.decisions_log)

    def last_training(self) -> dict[str, Any] | None:
        """The decision on the last model trained (promoted or not): what it was trained on."""
        return next((d for d in reversed(self.decisions()) if d.get("candidate")), None)

    def validations(self) -> list[dict[str, Any]]:
        return read_jsonl(self.validation_log)

    # canary set: val documents frozen (as tokens) at the first promotion

    def has_canary(self) -> bool:
        return (self.canary_dir / "canary.json").is_file()

    def freeze_canary(self, n_docs: int) -> int:
        """Copy the first `n_docs` val documents' tokens out of the shards; returns how many."""
        from model.data import SplitTokens

        manifest = read_manifest(self.root.manifest)
        split = SplitTokens(self.root.shards, manifest, "val")
        docs = [np.asarray(split.document(i)) for i in range(min(n_docs, split.docs))]
        if not docs:
            return 0
        tokens = np.concatenate(docs).astype(np.dtype(manifest.dtype).newbyteorder("<"))
        ends = np.cumsum([len(d) for d in docs]).astype(IDX_DTYPE)
        self.canary_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.canary_dir / "tokens.bin") as fh:
            fh.write(tokens.tobytes())
        with atomic_write(self.canary_dir / "tokens.idx") as fh:
            fh.write(ends.tobytes())
        atomic_write_json(self.canary_dir / "canary.json", {
            "docs": len(docs), "tokens": int(tokens.size), "dtype": manifest.dtype,
            "tokenizer_sha256": manifest.tokenizer.sha256, "eos_id": manifest.tokenizer.eos_id,
            "manifest_version": manifest.version, "frozen_at": utc_now(),
            "source": f"val documents 0..{len(docs) - 1}",
        })
        return len(docs)

    def canary_arrays(self) -> tuple[list[np.ndarray], dict[str, Any]]:
        meta = json.loads((self.canary_dir / "canary.json").read_text(encoding="utf-8"))
        tokens = np.fromfile(self.canary_dir / "tokens.bin",
                             dtype=np.dtype(meta["dtype"]).newbyteorder("<"))
        ends = np.fromfile(self.canary_dir / "tokens.idx", dtype=IDX_DTYPE).tolist()
        return [tokens[s:e] for s, e in zip([0, *ends[:-1]], ends, strict=True)], meta


def _export_hf(target: Path) -> None:
    """models/<id>/hf/: the folder a user points transformers at. A recipe that no
    architecture computes, or a machine without the export extra, gets none (said once)."""
    from model.export import ExportError, export_model
    from pipeline.errors import EnvironmentProblem

    try:
        export_model(target / MODEL_FILE, target / HF_FOLDER, "hf", force=True)
    except ExportError as e:
        log.info("registry: no %s/ folder for %s: %s", HF_FOLDER, target.name, e)
    except EnvironmentProblem as e:
        log.warning("registry: no %s/ folder for %s: %s", HF_FOLDER, target.name, e)


def new_model_id(run: str, step: int) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{run}-step{step}"
