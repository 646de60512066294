"""Loss, perplexity and bits per byte of a model: on the val shards (fixed windows), on chosen
documents, or on texts (scored with the model's own tokenizer).

Bits per byte is the loss in bits per UTF-8 byte of the text: unlike nats per token it does not
depend on the tokenizer, so two models with different tokenizers compare. On the val windows a
token stands for the split's bytes per token (the manifest counts each shard's bytes); on
documents and texts the bytes are theirs exactly. Shards made before the manifest counted bytes
(format 1) give no bits per byte (None).

Deterministic: the val windows are evenly spaced over the split (`data.eval_starts`), and a
document is scored from its first token with only its own earlier tokens as context, so the
same model on the same data always gets the same figure. The validate flow freezes a "canary"
list of val documents (`DocRef`s) and scores every new model on exactly those.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.data import DocRef, SplitTokens, check_tokenizer, eval_starts
from model.runtime import Dist, all_reduce_sum, autocast, resolve_device
from pipeline.layout import DataRoot
from pipeline.shards import Manifest, read_manifest

if TYPE_CHECKING:
    import torch

    from model.cllm import CLLM
    from pipeline.config import Config
    from pipeline.stats import StageStats

log = logging.getLogger(__name__)


@dataclass(kw_only=True, slots=True)
class EvalResult:
    loss: float  # mean cross-entropy per predicted token (nats)
    perplexity: float
    bits_per_byte: float | None  # the loss in bits per UTF-8 byte of text; None: bytes unknown
    tokens: int  # predicted tokens
    windows: int  # windows or documents scored
    what: str  # "val", "documents", "tokens" or "texts"
    checkpoint: str = ""
    step: int = 0  # the checkpoint's training step

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bits_per_byte(loss: float, tokens_per_byte: float | None) -> float | None:
    """Nats per token as bits per byte of text."""
    if tokens_per_byte is None or not math.isfinite(loss):
        return None
    return loss / math.log(2) * tokens_per_byte


def _result(loss_sum: float, tokens: int, windows: int, what: str,
            text_bytes: float | None) -> EvalResult:
    """`text_bytes`: the UTF-8 bytes the predicted tokens stand for (None: unknown)."""
    loss = loss_sum / tokens if tokens else math.nan
    return EvalResult(loss=loss, perplexity=math.exp(min(loss, 700.0)),
                      bits_per_byte=bits_per_byte(loss, tokens / text_bytes)
                      if tokens and text_bytes else None,
                      tokens=tokens, windows=windows, what=what)


def _loss_sum(model: CLLM, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> float:
    import torch
    import torch.nn.functional as F

    with torch.no_grad(), autocast(x.device, bf16):
        logits, _ = model(x)  # (B, T, V)
    return float(F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum"))


def split_loss(model: CLLM, tokens: SplitTokens, *, windows: int, batch_size: int,
               device: torch.device, bf16: bool = False, dist: Dist | None = None
               ) -> tuple[float, int, int]:
    """(loss sum, tokens, windows) over `windows` fixed windows of a split, shared by ranks."""
    import torch

    dist = dist or Dist()
    starts, length = eval_starts(tokens.total, model.cfg.block_size, windows)
    mine = starts[dist.rank::dist.world]
    was_training = model.training
    model.eval()
    loss_sum = 0.0
    for i in range(0, len(mine), batch_size):
        data = torch.from_numpy(tokens.read(mine[i:i + batch_size], length + 1)).to(device)
        loss_sum += _loss_sum(model, data[:, :-1], data[:, 1:], bf16)
    model.train(was_training)
    loss_sum, count = all_reduce_sum([loss_sum, float(len(mine) * length)], dist, device)
    return loss_sum, int(count), len(starts)


def sequence_loss(model: CLLM, ids: np.ndarray, eos_id: int, device: torch.device,
                  bf16: bool = False) -> tuple[float, int]:
    """(loss sum, predicted tokens) of one token sequence, read in block_size chunks.

    The sequence is preceded by end-of-text, as a document is in the shards, so its first
    token is predicted too.
    """
    import torch

    T = model.cfg.block_size
    seq = torch.from_numpy(np.concatenate([[eos_id], np.asarray(ids, dtype=np.int64)]))
    was_training = model.training
    model.eval()
    loss_sum = 0.0
    for start in range(0, len(seq) - 1, T):
        chunk = seq[start:start + T + 1].to(device)[None, :]  # (1, <= T + 1)
        loss_sum += _loss_sum(model, chunk[:, :-1], chunk[:, 1:], bf16)
    model.train(was_training)
    return loss_sum, len(seq) - 1


def load_model(checkpoint: Path, device: str | torch.device = "cpu"
               ) -> tuple[CLLM, dict[str, Any]]:
    """The model of a checkpoint, run or registry folder, or exported model.safetensors on
    `device`, and its other entries (`path`: the file read)."""
    from model.checkpoint import model_from_state, read_model

    state = read_model(Path(checkpoint))
    model = model_from_state(state).to(device)
    meta = {k: v for k, v in state.items() if k not in ("model", "optimizer")}
    return model, meta


def _open_checked(meta: dict[str, Any], root: DataRoot) -> Manifest:
    manifest = read_manifest(root.manifest)
    check_tokenizer(meta.get("tokenizer", {}).get("sha256", ""), manifest.tokenizer.sha256,
                    f"the shards in {root.shards}")
    return manifest


def _stamp(result: EvalResult, meta: dict[str, Any]) -> EvalResult:
    result.checkpoint = meta["path"]
    result.step = int(meta.get("step", 0))
    return result


def evaluate_checkpoint(checkpoint: Path, root: DataRoot, *, windows: int = 400,
                        batch_size: int = 8, device: str = "auto") -> EvalResult:
    """Mean loss and perplexity of a checkpoint on `windows` fixed windows of the val shards."""
    dev = resolve_device(device)
    model, meta = load_model(checkpoint, dev)
    manifest = _open_checked(meta, root)
    tokens = SplitTokens(root.shards, manifest, "val")
    if tokens.total < 2:
        raise ValueError(f"the val split in {root.shards} is empty: nothing to evaluate on "
                         "(shards.val_fraction > 0 and more documents give it some)")
    loss_sum, count, n = split_loss(model, tokens, windows=windows, batch_size=batch_size,
                                    device=dev)
    per_byte = tokens.tokens_per_byte
    return _stamp(_result(loss_sum, count, n, "val", count / per_byte if per_byte else None),
                  meta)


def _text_bytes(meta: dict[str, Any], arrays: Sequence[np.ndarray], eos_id: int) -> int | None:
    """The UTF-8 bytes of documents' text (their tokens, decoded by the model's tokenizer);
    None when the model carries no tokenizer."""
    from model.checkpoint import CheckpointError, tokenizer_from_state

    try:
        tok = tokenizer_from_state(meta)
    except CheckpointError:
        return None
    return sum(len(tok.decode([int(t) for t in ids if t != eos_id],
                              skip_special_tokens=False).encode("utf-8")) for ids in arrays)


def evaluate_documents(checkpoint: Path, root: DataRoot, docs: Sequence[DocRef], *,
                       device: str = "auto") -> EvalResult:
    """Loss over chosen documents (by split and number), e.g. a frozen canary set."""
    dev = resolve_device(device)
    model, meta = load_model(checkpoint, dev)
    manifest = _open_checked(meta, root)
    splits = {split: SplitTokens(root.shards, manifest, split) for split in ("train", "val")}
    eos = manifest.tokenizer.eos_id
    arrays = [splits[ref.split].document(ref.index) for ref in docs]
    loss_sum, count = 0.0, 0
    for ids in arrays:
        # the document's tokens and its closing EOS, predicted after the previous EOS
        s, n = sequence_loss(model, ids, eos, dev)
        loss_sum, count = loss_sum + s, count + n
    return _stamp(_result(loss_sum, count, len(docs), "documents",
                          _text_bytes(meta, arrays, eos)), meta)


def evaluate_tokens(checkpoint: Path, arrays: Sequence[np.ndarray], *, eos_id: int | None = None,
                    device: str = "auto") -> EvalResult:
    """Loss over explicit token arrays (each scored as a document of its own)."""
    dev = resolve_device(device)
    model, meta = load_model(checkpoint, dev)
    eos = eos_id if eos_id is not None else int(meta.get("tokenizer", {}).get("eos_id", 0))
    loss_sum, count = 0.0, 0
    for ids in arrays:
        s, n = sequence_loss(model, np.asarray(ids), eos, dev)
        loss_sum, count = loss_sum + s, count + n
    return _stamp(_result(loss_sum, count, len(arrays), "tokens",
                          _text_bytes(meta, arrays, eos)), meta)


def evaluate_texts(checkpoint: Path, texts: Sequence[str], *, device: str = "auto"
                   ) -> EvalResult:
    """Loss and bits per byte over texts, each encoded by the model's own tokenizer and
    scored as a document (after an end-of-text, its own closing one predicted too): how
    models with different tokenizers compare on the same text."""
    from model.checkpoint import tokenizer_from_state

    dev = resolve_device(device)
    model, meta = load_model(checkpoint, dev)
    tok = tokenizer_from_state(meta)
    eos = int(meta["tokenizer"]["eos_id"])
    loss_sum, count = 0.0, 0
    for text in texts:
        ids = np.asarray([*tok.encode(text).ids, eos], dtype=np.int64)
        s, n = sequence_loss(model, ids, eos, dev)
        loss_sum, count = loss_sum + s, count + n
    return _stamp(_result(loss_sum, count, len(texts), "texts",
                          sum(len(t.encode("utf-8")) for t in texts)), meta)


def val_texts(root: DataRoot, max_tokens: int) -> list[str]:
    """The first val documents' text, up to about `max_tokens` tokens of them."""
    from pipeline.tokenizer import decode, load_tokenizer

    manifest = read_manifest(root.manifest)
    tok = load_tokenizer(root.path / manifest.tokenizer.path)
    split = SplitTokens(root.shards, manifest, "val")
    texts, tokens = [], 0
    for i in range(split.docs):
        ids = split.document(i)[:-1]
        texts.append(decode(tok, ids.tolist()))
        tokens += len(ids) + 1
        if tokens >= max_tokens:
            break
    return texts


def default_checkpoint(root: DataRoot) -> Path:
    """The promoted model if the registry has one, else the newest run's best checkpoint."""
    from model.checkpoint import resolve_checkpoint

    candidates = [p for p in (root.models / "current", root.models / "promoted") if p.exists()]
    if candidates:
        return resolve_checkpoint(candidates[0])
    runs = sorted((p for p in root.runs.glob("*") if p.is_dir()),
                  key=lambda p: p.stat().st_mtime, reverse=True) if root.runs.is_dir() else []
    for run in runs:
        try:
            return resolve_checkpoint(run)
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"no model to use: nothing promoted in {root.models} and no run "
                            f"with a checkpoint in {root.runs}; train one with `cllm train`")


def evaluate_stage(cfg: Config, root: DataRoot, *, progress: bool = True) -> StageStats:
    """The evaluate stage: `evaluate.checkpoint` (default: the promoted model) on fixed windows
    of the val shards (validate.eval_iters x validate.batch_size), or on `evaluate.docs`."""
    from pipeline.stats import StageStats

    e, v = cfg.evaluate, cfg.validate
    stats = StageStats(stage="evaluate", unit_name="tokens")
    checkpoint = Path(e.checkpoint) if e.checkpoint else default_checkpoint(root)
    if e.docs:
        docs = [parse_doc_ref(text) for text in e.docs]
        result = evaluate_documents(checkpoint, root, docs, device=cfg.train.device)
    else:
        result = evaluate_checkpoint(checkpoint, root, windows=v.eval_iters * v.batch_size,
                                     batch_size=v.batch_size, device=cfg.train.device)
    stats.keep(result.windows)
    stats.units = result.tokens
    stats.extra.update(result=result.to_dict(), loss=result.loss, step=result.step,
                       bits_per_byte=result.bits_per_byte)
    return stats.finish()


def parse_doc_ref(text: str) -> DocRef:
    """"val:12" -> DocRef("val", 12)."""
    split, _, index = text.partition(":")
    if split not in ("train", "val") or not index.isdigit():
        raise ValueError(f"a document is SPLIT:NUMBER (e.g. val:12), got {text!r}")
    return DocRef(split, int(index))  # type: ignore[arg-type]
