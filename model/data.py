"""Training data from the token shards: seeded random windows, fixed validation windows, documents.

A split is read as one virtual token stream (its shards in manifest order, memory-mapped and
re-opened for every batch so page cache, not process memory, holds them). The windows of a step
are a pure function of (seed, step): resuming at step s needs no other state. Each step draws
one global batch (batch_size x ranks x grad_accum windows); micro-steps take consecutive slices
of it and DDP ranks interleaved rows of a slice, so 2 processes with batch 4, or 1 with batch 4
and grad_accum 2, train on exactly what 1 process with batch 8 does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.shards import Manifest, ShardInfo, Split, open_shard, read_document, read_manifest

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SAMPLER = "seeded-windows-v1"  # recorded in checkpoints: how (seed, step) maps to windows


class TokenizerMismatch(ValueError):
    """Shards, checkpoint or model were made with different tokenizers."""


def check_tokenizer(expected_sha256: str, found_sha256: str, what: str) -> None:
    if expected_sha256 != found_sha256:
        raise TokenizerMismatch(
            f"{what} was made with tokenizer {found_sha256[:12]}..., but the model uses "
            f"{expected_sha256[:12]}...: token ids would mean different text. Train a new model "
            "on these shards (init_from=scratch) or use the shards of the model's tokenizer")


@dataclass(frozen=True, slots=True)
class DocRef:
    """One document of a split: its number in the split, counting across shards in order."""

    split: Split
    index: int


class SplitTokens:
    """The shards of one split as one token stream (windows may cross shard boundaries)."""

    def __init__(self, folder: Path, manifest: Manifest, split: Split) -> None:
        self.folder = Path(folder)
        self.manifest = manifest
        self.split = split
        self.shards: list[ShardInfo] = manifest.split_shards(split)
        self.starts = np.cumsum([0] + [s.tokens for s in self.shards])  # token offset per shard
        self.total = int(self.starts[-1])
        self.docs = sum(s.docs for s in self.shards)
        self.text_bytes = manifest.text_bytes(split)  # None: shards older than byte counts

    @property
    def tokens_per_byte(self) -> float | None:
        """Tokens (end-of-text included) per UTF-8 byte of the split's text."""
        return self.total / self.text_bytes if self.text_bytes else None

    @classmethod
    def open(cls, shards_dir: Path, split: Split, manifest: Manifest | None = None
             ) -> SplitTokens:
        return cls(shards_dir, manifest or read_manifest(Path(shards_dir) / "manifest.json"),
                   split)

    def read(self, starts: np.ndarray, length: int) -> np.ndarray:
        """Windows `[s, s + length)` of the stream, as int64 (n, length)."""
        out = np.empty((len(starts), length), dtype=np.int64)
        maps: dict[int, np.memmap] = {}  # opened once per call, dropped after it
        for row, start in enumerate(starts):
            filled, pos = 0, int(start)
            while filled < length:
                k = int(np.searchsorted(self.starts, pos, side="right")) - 1
                if k not in maps:
                    maps[k] = open_shard(self.folder, self.shards[k], self.manifest.dtype)[0]
                offset = pos - int(self.starts[k])
                n = min(length - filled, self.shards[k].tokens - offset)
                out[row, filled:filled + n] = maps[k][offset:offset + n]
                filled += n
                pos += n
        return out

    def document(self, index: int) -> np.ndarray:
        """Token ids of document `index` of this split, its end-of-text included."""
        ids = read_document(self.folder, self.manifest, self.split, index)
        return np.concatenate([ids, [self.manifest.tokenizer.eos_id]]).astype(np.int64)


def window_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, step])))


class TrainWindows:
    """Random (x, y) windows of the train split for each (step, micro-step) and rank."""

    def __init__(self, tokens: SplitTokens, *, block_size: int, batch_size: int, seed: int,
                 grad_accum: int = 1, rank: int = 0, world: int = 1) -> None:
        if tokens.total < block_size + 1:
            raise ValueError(
                f"the {tokens.split} split holds {tokens.total} tokens, fewer than block_size+1 "
                f"= {block_size + 1}: add documents or lower train.block_size")
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.grad_accum = grad_accum
        self.rank = rank
        self.world = world

    def starts(self, step: int, micro: int) -> np.ndarray:
        """This rank's window starts: rows rank, rank + world, ... of micro-batch `micro`."""
        high = self.tokens.total - self.block_size  # exclusive: room for the shifted target
        per_micro = self.batch_size * self.world
        every = window_rng(self.seed, step).integers(0, high, size=per_micro * self.grad_accum)
        return every[micro * per_micro:(micro + 1) * per_micro][self.rank::self.world]

    def batch(self, step: int, micro: int, device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets (B, T) for one micro-batch."""
        import torch

        data = torch.from_numpy(self.tokens.read(self.starts(step, micro), self.block_size + 1))
        x, y = data[:, :-1], data[:, 1:]  # (B, T) each
        if torch.device(device).type == "cuda":
            return (x.pin_memory().to(device, non_blocking=True),
                    y.pin_memory().to(device, non_blocking=True))
        return x.contiguous().to(device), y.contiguous().to(device)


def eval_starts(total: int, block_size: int, count: int) -> tuple[np.ndarray, int]:
    """Evenly spaced window starts over a split and the window length (shorter if it is small).

    Fixed, so every evaluation of every model sees the same windows.
    """
    length = min(block_size, total - 1)
    if length < 1:
        return np.zeros(0, dtype=np.int64), 0
    last = total - length - 1
    starts = np.unique(np.linspace(0, last, num=count).round().astype(np.int64))
    return starts, length
