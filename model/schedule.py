"""Learning-rate schedules: a pure function of the step (so a resumed run needs only the step)."""

from __future__ import annotations

import math
from typing import Any

STEP_DECAYS_BY_DEFAULT = 3  # step schedule with lr_decay_steps=0: this many decays in the run


def decay_steps(train: Any) -> int:
    """The decay span (cosine, linear) or period (step) that `train.lr_decay_steps` implies."""
    if train.lr_decay_steps:
        return train.lr_decay_steps
    if train.scheduler == "step":
        return max(1, (train.max_steps - train.warmup_steps) // (STEP_DECAYS_BY_DEFAULT + 1))
    return train.max_steps


def lr_at(step: int, train: Any) -> float:
    """Learning rate for optimizer step `step` (0-based) under a `TrainConfig`.

    Linear warmup from lr/(warmup+1) to lr over `warmup_steps`, then:
    constant: lr; cosine: lr -> min_lr over the decay span; linear: likewise, a straight line;
    step: lr times lr_decay_factor every lr_decay_steps, never below min_lr.
    Past the decay span, cosine and linear stay at min_lr.
    """
    lr, min_lr, warmup = train.lr, train.min_lr, train.warmup_steps
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if train.scheduler == "constant":
        return lr
    span = decay_steps(train)
    if train.scheduler == "step":
        return max(min_lr, lr * train.lr_decay_factor ** ((step - warmup) // span))
    if span <= warmup:
        return min_lr
    progress = min(1.0, (step - warmup) / (span - warmup))
    if train.scheduler == "linear":
        return lr - progress * (lr - min_lr)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
