"""A time-bounded run (train.max_seconds) fits its step horizon once, at the end of warm-up, and
completes its lr decay by the time it stops; the horizon is saved in every checkpoint and a
resumed run follows it exactly (issue 11, defect 9)."""

from __future__ import annotations

import pytest

from model.schedule import FIT_MARGIN, Horizon, StepCosts, fit_horizon, lr_at
from pipeline.config import TrainConfig

# --- the schedule: a pure function of (step, config, horizon) -------------------------------


@pytest.mark.parametrize("scheduler", ["cosine", "linear", "step"])
def test_a_horizon_compresses_the_planned_schedule_to_end_at_it(scheduler: str) -> None:
    tc = TrainConfig(scheduler=scheduler, lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=1000)
    horizon = Horizon(start=10, end=110, max_steps=1000, max_seconds=60.0)
    # warm-up is unchanged; then step 10 + 100x gets the lr the plan gives step 10 + 990x
    assert [lr_at(s, tc, horizon) for s in range(11)] == [lr_at(s, tc) for s in range(11)]
    for x in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert lr_at(10 + round(100 * x), tc, horizon) == pytest.approx(lr_at(10 + 990 * x, tc))
    assert lr_at(110, tc, horizon) == pytest.approx(0.1)  # the decay is over at the horizon
    assert lr_at(109, tc, horizon) < lr_at(10, tc, horizon)
    assert lr_at(2000, tc, horizon) == pytest.approx(0.1)
    # a horizon that holds all of max_steps changes nothing
    whole = Horizon(start=10, end=1000, max_steps=1000, max_seconds=60.0)
    assert [lr_at(s, tc, whole) for s in range(0, 1001, 7)] == \
        [lr_at(s, tc) for s in range(0, 1001, 7)]


def test_a_horizon_fitted_mid_run_continues_the_curve_from_its_step() -> None:
    tc = TrainConfig(scheduler="cosine", lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=1000)
    horizon = Horizon(start=300, end=400, max_steps=1000, max_seconds=60.0)
    assert [lr_at(s, tc, horizon) for s in range(301)] == [lr_at(s, tc) for s in range(301)]
    assert lr_at(350, tc, horizon) == pytest.approx(lr_at(650, tc))
    assert lr_at(400, tc, horizon) == pytest.approx(0.1)


def test_constant_lr_ignores_a_horizon() -> None:
    tc = TrainConfig(scheduler="constant", lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=1000)
    horizon = Horizon(start=10, end=50, max_steps=1000, max_seconds=60.0)
    assert [lr_at(s, tc, horizon) for s in range(200)] == [lr_at(s, tc) for s in range(200)]


def test_the_fit_spends_the_time_left_but_its_margin_on_measured_costs() -> None:
    tc = TrainConfig(max_steps=1000, max_seconds=60.0, eval_interval=8, save_interval=16)
    # 0.125 s a step, a 1 s evaluation every 8 steps, a 2 s save every 16: 0.375 s a step
    costs = StepCosts(step_s=0.125, eval_s=1.0, save_s=2.0)
    assert costs.per_step(tc.eval_interval, tc.save_interval) == 0.375
    horizon = fit_horizon(100, 30.0, costs, tc, margin=0.25)  # 22.5 s of steps: 60 of them
    assert horizon == Horizon(start=100, end=160, max_steps=1000, max_seconds=60.0)
    assert fit_horizon(100, 3000.0, costs, tc).end == 1000  # max_steps stays the upper bound
    assert fit_horizon(100, -1.0, costs, tc).end == 100  # no time left: the decay ends now
    assert 0 < FIT_MARGIN < 0.5
    assert Horizon.from_dict(horizon.to_dict()) == horizon
    assert Horizon.from_dict(None) is None
