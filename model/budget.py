"""The time budget (`train.max_seconds`): time the loop, fit the step horizon to it once, and
say when the session's clock has run out.

A session measures its loop until the end of warm-up (at least MEASURED_STEPS steps after its
first), then fits once how many steps the rest of the budget holds (`fit_to_budget`, with
`model.schedule.fit_horizon`): the schedule planned for max_steps is compressed to end there,
so the decay completes, and the run stops at that step. The horizon is saved in every
checkpoint (`Trainer.state_dict`); a resumed session follows it rather than fitting anew.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from model.runtime import all_reduce_sum
from model.schedule import FIT_MARGIN, Horizon, StepCosts, fit_horizon, lr_at

if TYPE_CHECKING:
    from model.metrics import MetricsLog
    from model.trainer import Trainer
    from pipeline.config import TrainConfig

log = logging.getLogger(__name__)


def clock() -> float:
    """The time the budget is measured in (seconds, monotonic). One function, so that a test
    can run a session on a clock of its own making and get the same fit and stop every time."""
    return time.monotonic()


# Steps a session times before it fits a horizon to max_seconds, besides its first step (which
# pays one-time costs: allocations, compilation): fewer make the estimate noisy.
MEASURED_STEPS = 5


def fit_step(first_step: int, tc: TrainConfig) -> int:
    """The step a session that starts at `first_step` fits its horizon at (if it needs one)."""
    return max(tc.warmup_steps, first_step + 1 + MEASURED_STEPS)


@dataclass(slots=True)
class LoopTimes:
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
            self.since, self.since_step = clock(), step

    @contextlib.contextmanager
    def timing(self, kind: Literal["eval", "save"]) -> Iterator[None]:
        t0 = clock()
        yield
        if self.since is None:  # in the first step: one-time costs, not a fair sample
            return
        if kind == "eval":
            self.evals, self.eval_s = self.evals + 1, self.eval_s + clock() - t0
        else:
            self.saves, self.save_s = self.saves + 1, self.save_s + clock() - t0

    def costs(self, step: int) -> StepCosts:
        assert self.since is not None, "costs asked for before the first step was timed"
        loop_s = clock() - self.since - self.eval_s - self.save_s
        return StepCosts(step_s=loop_s / max(step - self.since_step, 1),
                         eval_s=self.eval_s / max(self.evals, 1),
                         save_s=self.save_s / max(self.saves, 1))


def fit_to_budget(trainer: Trainer, times: LoopTimes, began: float,
                  metrics: MetricsLog) -> Horizon:
    """The step horizon that the time left holds; logged, and recorded as a metrics row."""
    tc, dist = trainer.tc, trainer.dist
    own = times.costs(trainer.step)
    left = tc.max_seconds - (clock() - began)
    # every rank must fit the same horizon, or they would stop at different steps
    total = all_reduce_sum([left, own.step_s, own.eval_s, own.save_s], dist, trainer.device)
    left, step_s, eval_s, save_s = (v / dist.world for v in total)
    costs = StepCosts(step_s=step_s, eval_s=eval_s, save_s=save_s)
    horizon = fit_horizon(trainer.step, left, costs, tc, FIT_MARGIN)
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
    return horizon


def out_of_time(trainer: Trainer, began: float) -> bool:
    """Whether this session's loop has spent max_seconds (a warning when that comes before
    the fitted horizon: the loop got slower after the fit)."""
    tc = trainer.tc
    if not tc.max_seconds or clock() - began < tc.max_seconds:
        return False
    if trainer.horizon is not None and trainer.step < trainer.end_step:
        log.warning("train: max_seconds ran out at step %d, before the horizon %d fitted "
                    "at step %d: the loop got slower after the fit; the lr is %.3g, not "
                    "yet min_lr %.3g", trainer.step, trainer.end_step, trainer.horizon.start,
                    lr_at(trainer.step - 1, tc, trainer.horizon), tc.min_lr)
    return True
