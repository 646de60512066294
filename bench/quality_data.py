"""bench/quality.py's setup (what every recipe shares), its data and its one evaluator: the
fixed corpus through our ingest, extract, clean and tokenize stages, and the loss and bits per
byte on fixed val windows."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from corpus import write_corpus

from model.data import SplitTokens, eval_starts
from pipeline.layout import DataRoot
from pipeline.shards import Manifest, read_manifest


@dataclass(frozen=True, slots=True)
class Setup:
    """What every recipe shares: the model's size, the optimisation, the data, the scoring."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 64  # tokens per window
    batch_size: int = 8  # windows per step
    steps: int = 200
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 20  # steps
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    vocab: int = 2048  # BPE trained by the tokenize stage
    val_fraction: float = 0.1  # share of documents (by id) in val
    windows: int = 256  # fixed val windows every recipe is scored on
    seeds: tuple[int, ...] = (1, 2, 3)
    modules: tuple[str, ...] = ()  # the corpus's modules; empty = every one (bench/corpus.py)
    doc_chars: int = 8000  # the longest document a pydoc page is cut into



EVAL_BATCH = 16  # windows per forward of the evaluator
MIN_VAL_SHARE = 0.01  # the val split must hold at least this share of the tokens
MIN_WINDOWS = 50


@dataclass(slots=True)
class Data:
    """The prepared shards and what scoring them needs."""

    root: DataRoot
    manifest: Manifest
    token_bytes: np.ndarray  # (V,) UTF-8 bytes each token id stands for (0: end-of-text)
    info: dict[str, Any]


# --- the data ---------------------------------------------------------------------------


def prepare(setup: Setup, folder: Path) -> Data:
    """The corpus, through our ingest, extract and tokenize (clean first) stages."""
    from flows.stages import STAGES
    from pipeline.config import build_config

    documents, sha = write_corpus(folder / "corpus", list(setup.modules) or None,
                                  max_chars=setup.doc_chars)
    root = DataRoot.at(folder / "data")
    cfg = build_config([{"sources": {"paths": [str(folder / "corpus")]},
                         "tokenize": {"vocab_size": setup.vocab},
                         "shards": {"val_fraction": setup.val_fraction},
                         # one worker each: parallel workers finish in any order, and the
                         # documents would reach the shards in that order
                         "extract": {"workers": 1}, "clean": {"workers": 1}}])
    stages = {stage.name: stage for stage in STAGES}
    clean: dict[str, Any] = {}
    for name in ("ingest", "extract", "tokenize"):
        stats = stages[name].run(cfg, root, progress=False)
        clean = stats.extra.get("clean", clean)
    manifest = read_manifest(root.manifest)
    token_bytes = _token_bytes(root)
    totals = manifest.totals()
    info = {"documents_written": documents, "corpus_sha256": sha,
            "kept_by_clean": clean.get("kept"), "dropped_by_clean": clean.get("dropped"),
            "train_tokens": totals["train"]["tokens"], "val_tokens": totals["val"]["tokens"],
            "train_docs": totals["train"]["docs"], "val_docs": totals["val"]["docs"],
            "vocab": manifest.tokenizer.vocab_size, "tokenizer_sha256": manifest.tokenizer.sha256,
            "tokens_sha256": _tokens_sha256(root, manifest),
            "python": sys.version.split()[0]}
    _check_bytes(root, manifest, token_bytes)
    return Data(root=root, manifest=manifest, token_bytes=token_bytes, info=info)


def _tokens_sha256(root: DataRoot, manifest: Manifest) -> str:
    """A digest of both splits' token streams: equal runs saw the same windows."""
    import hashlib

    digest = hashlib.sha256()
    for split in ("train", "val"):
        tokens = SplitTokens(root.shards, manifest, split)
        digest.update(tokens.read(np.zeros(1, dtype=np.int64), tokens.total).tobytes())
    return digest.hexdigest()


def _token_bytes(root: DataRoot) -> np.ndarray:
    """Bytes per token id: a byte-level BPE token's string has one character per byte."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(root.tokenizer_json))
    special = {t.content for t in tok.get_added_tokens_decoder().values()}
    out = np.zeros(tok.get_vocab_size(), dtype=np.int64)
    for token, i in tok.get_vocab().items():
        out[i] = 0 if token in special else len(token)
    return out


def _check_bytes(root: DataRoot, manifest: Manifest, token_bytes: np.ndarray) -> None:
    """The bytes counted per token are the document's UTF-8 bytes (checked on val document 0)."""
    from pipeline.tokenizer import decode, load_tokenizer

    ids = SplitTokens(root.shards, manifest, "val").document(0)
    text = decode(load_tokenizer(root.tokenizer_json), ids[:-1])  # without its end-of-text
    if int(token_bytes[ids].sum()) != len(text.encode("utf-8")):
        raise RuntimeError("bytes per token do not add up to the text's UTF-8 bytes")


def check_split(setup: Setup, data: Data) -> None:
    """The val split the issue asks for: at least 1% of the tokens and 50 windows."""
    share = data.info["val_tokens"] / (data.info["val_tokens"] + data.info["train_tokens"])
    if share < MIN_VAL_SHARE or setup.windows < MIN_WINDOWS:
        raise SystemExit(f"val split too small: {share:.1%} of tokens, {setup.windows} "
                         f"windows (need {MIN_VAL_SHARE:.0%} and {MIN_WINDOWS})")


# --- one evaluator --------------------------------------------------------------------------


def score(model: torch.nn.Module, data: Data, setup: Setup) -> tuple[float, float]:
    """(mean loss in nats per token, bits per UTF-8 byte) on the fixed val windows."""
    import torch.nn.functional as F

    tokens = SplitTokens(data.root.shards, data.manifest, "val")
    starts, length = eval_starts(tokens.total, setup.block_size, setup.windows)
    model.eval()
    nats, nbytes, count = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(starts), EVAL_BATCH):
            window = torch.from_numpy(tokens.read(starts[i:i + EVAL_BATCH], length + 1))
            x, y = window[:, :-1], window[:, 1:]  # (B, T) each
            logits, _ = model(x)  # (B, T, V)
            nats += float(F.cross_entropy(logits.float().flatten(0, 1), y.flatten(),
                                          reduction="sum"))
            nbytes += int(data.token_bytes[y.numpy()].sum())
            count += y.numel()
    return nats / count, nats / math.log(2) / nbytes


def load_data(folder: Path) -> Data:
    """The shards `prepare` left in `folder` (a worker process reads them again)."""
    root = DataRoot.at(folder / "data")
    info = json.loads((folder / "info.json").read_text())
    return Data(root=root, manifest=read_manifest(root.manifest),
                token_bytes=_token_bytes(root), info=info)
