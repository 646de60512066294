"""Learning-rate schedules: a pure function of the step (so a resumed run needs only the step).

A time-bounded run (`train.max_seconds`) fits its step horizon to the budget once, at the end
of warm-up (`fit_horizon`); the schedule planned for `max_steps` is then compressed to end at
that horizon. The fitted `Horizon` is saved in every checkpoint, so the lr stays a pure
function of (step, config, horizon) and a resumed run continues the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

STEP_DECAYS_BY_DEFAULT = 3  # step schedule with lr_decay_steps=0: this many decays in the run
# Share of the time left that the fitted steps may fill: the rest absorbs a machine that gets
# slower after the fit (shared cores, thermal limits), which would otherwise stop the run by
# the clock before its decay ends.
FIT_MARGIN = 0.1


@dataclass(frozen=True, slots=True)
class Horizon:
    """The schedule's end fitted to a time budget: from step `start` on, the schedule planned
    for `max_steps` is compressed to end at step `end` instead."""

    start: int  # the step the fit was made at (the end of warm-up, unless that came too soon)
    end: int  # the step the run ends at (<= max_steps)
    max_steps: int  # the plan it compresses (train.max_steps at the fit)
    max_seconds: float  # the budget it was fitted to

    def planned_step(self, step: int) -> float:
        """The step of the max_steps plan whose lr step `step` gets."""
        if step <= self.start or self.end >= self.max_steps:
            return step
        if self.end <= self.start:  # no step left to decay over: the plan's end at once
            return self.max_steps
        return self.start + ((step - self.start) * (self.max_steps - self.start)
                             / (self.end - self.start))

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "max_steps": self.max_steps,
                "max_seconds": self.max_seconds}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Horizon | None:
        if not d:
            return None
        return cls(start=int(d["start"]), end=int(d["end"]), max_steps=int(d["max_steps"]),
                   max_seconds=float(d["max_seconds"]))


def decay_steps(train: Any) -> int:
    """The decay span (cosine, linear) or period (step) that `train.lr_decay_steps` implies."""
    if train.lr_decay_steps:
        return train.lr_decay_steps
    if train.scheduler == "step":
        return max(1, (train.max_steps - train.warmup_steps) // (STEP_DECAYS_BY_DEFAULT + 1))
    return train.max_steps


def lr_at(step: int, train: Any, horizon: Horizon | None = None) -> float:
    """Learning rate for optimizer step `step` (0-based) under a `TrainConfig`.

    Linear warmup from lr/(warmup+1) to lr over `warmup_steps`, then:
    constant: lr; cosine: lr -> min_lr over the decay span; linear: likewise, a straight line;
    step: lr times lr_decay_factor every lr_decay_steps, never below min_lr.
    Past the decay span, cosine and linear stay at min_lr. With a `horizon`, the part of the
    schedule after `horizon.start` is compressed so that its max_steps end falls on
    `horizon.end` (warm-up is unchanged).
    """
    lr, min_lr, warmup = train.lr, train.min_lr, train.warmup_steps
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if train.scheduler == "constant":
        return lr
    at = step if horizon is None else horizon.planned_step(step)
    span = decay_steps(train)
    if train.scheduler == "step":
        return max(min_lr, lr * train.lr_decay_factor ** ((at - warmup) // span))
    if span <= warmup:
        return min_lr
    progress = min(1.0, (at - warmup) / (span - warmup))
    if train.scheduler == "linear":
        return lr - progress * (lr - min_lr)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


@dataclass(frozen=True, slots=True)
class StepCosts:
    """Measured wall time of the training loop, per kind of work (seconds)."""

    step_s: float  # one optimizer step with its bookkeeping (metrics row, progress)
    eval_s: float  # one evaluation (a best.pt save included when it improved)
    save_s: float  # one checkpoint save

    def per_step(self, eval_interval: int, save_interval: int) -> float:
        """Seconds per step, evaluations and saves spread over the steps between them."""
        return self.step_s + self.eval_s / eval_interval + self.save_s / save_interval


def fit_horizon(step: int, seconds_left: float, costs: StepCosts, train: Any,
                margin: float = FIT_MARGIN) -> Horizon:
    """The horizon whose steps fill the time left but its `margin` share, at most max_steps."""
    per_step = max(costs.per_step(train.eval_interval, train.save_interval), 1e-9)
    fits = math.floor(max(seconds_left, 0.0) * (1.0 - margin) / per_step)
    return Horizon(start=step, end=min(train.max_steps, step + fits), max_steps=train.max_steps,
                   max_seconds=train.max_seconds)
