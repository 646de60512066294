"""A time-bounded run (train.max_seconds) fits its step horizon once, at the end of warm-up, and
completes its lr decay by the time it stops; the horizon is saved in every checkpoint and a
resumed run follows it exactly (issue 11, defect 9)."""

from __future__ import annotations

import logging
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import model.budget as budget_module
from model.checkpoint import CheckpointSet, load_checkpoint
from model.metrics import read_metrics
from model.schedule import FIT_MARGIN, Horizon, StepCosts, fit_horizon, lr_at
from model.tiny import TINY_TRAIN, corpus, make_shards, tiny_config
from model.train import train
from pipeline.config import TrainConfig
from pipeline.layout import DataRoot

# max_steps far above what the budget holds: the run must end by the clock's horizon
TIME_BOUNDED = {"max_steps": 100_000, "max_seconds": 3.0, "warmup_steps": 10,
                "eval_interval": 20, "save_interval": 10, "keep_last": 1000}
# In the trainer tests the budget's clock is the tests' own: each step, evaluation and save
# costs this many seconds on it, so the fit and the stop are the same on any machine, however
# loaded (what they test is where the schedule ends and what a resume follows).
STEP_S, EVAL_S, SAVE_S = 0.01, 0.05, 0.02
# What a resumed run must reproduce exactly (the timings aside), as in test_crash_resume.py.
METRIC_KEYS = ("step", "loss", "lr", "grad_norm", "tokens", "val_loss", "event", "horizon",
               "fitted_at")
RESUMED_STATE = ("model", "optimizer", "step", "tokens_seen", "rng", "data", "early_stop",
                 "scheduler")


@pytest.fixture(scope="module")
def shards_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = DataRoot.at(tmp_path_factory.mktemp("shards") / "data")
    make_shards(root, corpus())
    return root.path


@pytest.fixture
def data(shards_template: Path, tmp_path: Path) -> DataRoot:
    shutil.copytree(shards_template, tmp_path / "data")
    return DataRoot.at(tmp_path / "data")


@pytest.fixture
def steady_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The budget's clock, advanced by fixed costs (STEP_S, EVAL_S, SAVE_S) as the trainer
    steps, evaluates and saves, instead of by the wall clock."""
    from model.trainer import Trainer

    now = [0.0]
    monkeypatch.setattr(budget_module, "clock", lambda: now[0])

    def costing(cls: type, name: str, cost: float) -> None:
        real = getattr(cls, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            out = real(*args, **kwargs)
            now[0] += cost
            return out

        monkeypatch.setattr(cls, name, timed)

    costing(Trainer, "train_step", STEP_S)
    costing(Trainer, "validate", EVAL_S)
    costing(CheckpointSet, "save", SAVE_S)
    costing(CheckpointSet, "save_best", SAVE_S)
    return now


def steps_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if "loss" in r and "event" not in r]


def fits_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("event") == "horizon"]


def same_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: r[k] for k in METRIC_KEYS if k in r} for r in rows]


def saved_horizon(path: Path) -> Horizon | None:
    return Horizon.from_dict(load_checkpoint(path)["scheduler"]["horizon"])


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


# --- the trainer: a real tiny model on real shards, on the tests' steady clock ---------------


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["cosine", "linear", "step"])
def test_a_time_bounded_run_completes_its_decay_by_the_time_it_stops(
        data: DataRoot, steady_clock: list[float], scheduler: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="model")
    cfg = tiny_config(**TIME_BOUNDED, scheduler=scheduler)
    tc = cfg.train
    result = train(cfg, data, progress=False)
    rows = read_metrics(result.metrics)
    steps = steps_of(rows)
    assert result.stop_reason == "max_seconds"
    # the last step trained is at the end of its decay: within 3% of the lr range above min_lr
    assert steps[-1]["lr"] <= tc.min_lr + 0.03 * (tc.lr - tc.min_lr)
    (fit,) = fits_of(rows)
    horizon = Horizon(start=fit["fitted_at"], end=fit["horizon"], max_steps=tc.max_steps,
                      max_seconds=tc.max_seconds)
    assert horizon.start == tc.warmup_steps and fit["step"] == horizon.start + 1
    assert result.steps == horizon.end < tc.max_steps  # it stopped at its horizon
    assert lr_at(horizon.end, tc, horizon) == pytest.approx(tc.min_lr)
    assert [r["lr"] for r in steps] == [lr_at(r["step"] - 1, tc, horizon) for r in steps]
    assert saved_horizon(result.last_checkpoint) == horizon
    said = [r.getMessage() for r in caplog.records if "max_seconds=3 leaves" in r.getMessage()]
    assert len(said) == 1 and f"now ends at step {horizon.end}" in said[0]
    assert f"now ends at step {horizon.end}" in fit["reason"]
    for key in ("seconds_left", "step_s", "eval_s", "save_s"):
        assert fit[key] > 0, key  # what the fit was made from: measured, not assumed


@pytest.mark.slow
def test_a_constant_lr_run_needs_no_horizon_and_stops_by_the_clock(
        data: DataRoot, steady_clock: list[float]) -> None:
    cfg = tiny_config(**{**TIME_BOUNDED, "max_seconds": 1.0}, scheduler="constant")
    result = train(cfg, data, progress=False)
    rows = read_metrics(result.metrics)
    assert result.stop_reason == "max_seconds" and 0 < result.steps < 100_000
    assert fits_of(rows) == []
    assert {r["lr"] for r in steps_of(rows) if r["step"] > 10} == {cfg.train.lr}
    assert saved_horizon(result.last_checkpoint) is None


def killed_after(source: DataRoot, step: int, dest: Path) -> DataRoot:
    """A copy of a finished run as a kill right after its step-`step` checkpoint leaves it:
    later checkpoints gone, metrics rows past it still there (the resume drops them)."""
    shutil.copytree(source.path, dest)
    root = DataRoot.at(dest)
    ckpts = CheckpointSet(root.run("default"), keep_last=1000)
    for later in (s for s in ckpts.steps() if s > step):
        ckpts.path_for(later).unlink()
    ckpts.best.unlink(missing_ok=True)
    (root.run("default") / "model.safetensors").unlink(missing_ok=True)
    return root


@pytest.mark.slow
def test_a_resumed_time_bounded_run_follows_the_saved_horizon_exactly(
        data: DataRoot, steady_clock: list[float], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    cfg = tiny_config(**TIME_BOUNDED)
    whole = train(cfg, data, progress=False)
    (fit,) = fits_of(read_metrics(whole.metrics))
    # a checkpoint half way between the fit and the end
    saved = CheckpointSet(whole.run_dir, keep_last=1000).steps()
    middle = min((s for s in saved if s > fit["fitted_at"]), key=lambda s: abs(2 * s - whole.steps))
    assert fit["fitted_at"] < middle < whole.steps
    root = killed_after(data, middle, tmp_path / "killed")
    caplog.set_level(logging.INFO, logger="model")
    caplog.clear()  # the first run's records (captured when an earlier test set INFO globally)
    resumed = train(tiny_config(**TIME_BOUNDED, init_from="resume"), root, progress=False)
    assert f"following the step horizon {whole.steps} fitted at step 10" in caplog.text
    assert "leaves" not in caplog.text  # no second fit
    assert resumed.stop_reason == "max_seconds" and resumed.steps == whole.steps
    assert same_rows(read_metrics(resumed.metrics)) == same_rows(read_metrics(whole.metrics))
    a, b = load_checkpoint(resumed.last_checkpoint), load_checkpoint(whole.last_checkpoint)
    for key in RESUMED_STATE:
        assert_same_state(a[key], b[key], key)
    # its steps are done: resumed once more, it trains none (its budget is not started again)
    again = train(tiny_config(**TIME_BOUNDED, init_from="resume"), root, progress=False)
    assert again.stop_reason == "max_seconds" and again.steps == whole.steps
    assert same_rows(read_metrics(again.metrics)) == same_rows(read_metrics(whole.metrics))


@pytest.mark.slow
def test_a_run_killed_before_a_checkpoint_held_its_horizon_fits_again(
        data: DataRoot, steady_clock: list[float], tmp_path: Path) -> None:
    cfg = tiny_config(**TIME_BOUNDED)
    whole = train(cfg, data, progress=False)
    # the fit step's checkpoint is saved before the fit (its save is timed): no horizon in it
    first = load_checkpoint(CheckpointSet(whole.run_dir, 1000).path_for(10))
    assert first["scheduler"]["horizon"] is None
    root = killed_after(data, 10, tmp_path / "killed")
    resumed = train(tiny_config(**TIME_BOUNDED, init_from="resume"), root, progress=False)
    rows = read_metrics(resumed.metrics)
    (fit,) = fits_of(rows)  # the first run's fit row went with the steps after the checkpoint
    refit = 10 + 1 + budget_module.MEASURED_STEPS
    assert fit["fitted_at"] == refit and resumed.steps == fit["horizon"]
    tc = cfg.train
    horizon = saved_horizon(resumed.last_checkpoint)
    assert horizon is not None and horizon.start == refit
    assert [r["lr"] for r in steps_of(rows)] == [lr_at(r["step"] - 1, tc, horizon)
                                                  for r in steps_of(rows)]
    assert steps_of(rows)[-1]["lr"] <= tc.min_lr * 1.03


@pytest.mark.slow
def test_a_resume_with_another_budget_plans_its_schedule_anew(
        data: DataRoot, steady_clock: list[float], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    whole = train(tiny_config(**TIME_BOUNDED), data, progress=False)
    root = killed_after(data, 30, tmp_path / "killed")
    caplog.set_level(logging.INFO, logger="model")
    resumed = train(tiny_config(**{**TIME_BOUNDED, "max_seconds": 2.0}, init_from="resume"),
                    root, progress=False)
    assert "was fitted to max_steps=100000, max_seconds=3; this session has 100000, 2" \
        in caplog.text
    fits = fits_of(read_metrics(resumed.metrics))
    assert [f["fitted_at"] for f in fits] == [10, 30 + 1 + budget_module.MEASURED_STEPS]
    assert saved_horizon(resumed.last_checkpoint).max_seconds == 2.0
    assert saved_horizon(whole.last_checkpoint).max_seconds == 3.0


def assert_same_state(a: Any, b: Any, where: str) -> None:
    """Tensors equal bit for bit, everything else equal, recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.slow
def test_ranks_of_a_time_bounded_ddp_run_fit_one_horizon(tmp_path: Path, cli_env: dict) -> None:
    # Each rank times its own loop; were their horizons to differ by a step, one would stop
    # while the other waits in a collective: the run would hang or fail.
    data = DataRoot.at(tmp_path / "data")
    make_shards(data, corpus())
    settings = {**TINY_TRAIN, **TIME_BOUNDED, "batch_size": 4, "run": "two"}
    sets = [f"--set=train.{k}={v!r}".replace("'", '"') for k, v in settings.items()]
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "model.train",
         "--root", str(data.path), "-q", *sets],
        env={**cli_env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_metrics(data.run("two") / "metrics.jsonl")  # rank 0's
    (fit,) = fits_of(rows)
    last = CheckpointSet(data.run("two"), keep_last=1000).latest()
    assert saved_horizon(last).end == fit["horizon"] >= steps_of(rows)[-1]["step"]


def checkpoint_step(root: Path) -> int:
    return max(CheckpointSet(root / "runs" / "tb", keep_last=1000).steps(), default=0)


@pytest.mark.slow
def test_a_time_bounded_run_sigkilled_after_its_fit_resumes_on_its_horizon(
        tmp_path: Path, cli_env: dict) -> None:
    # `cllm train --resume` SIGKILLed at seeded points (tests/crashkit.py) after the fit, run
    # again until it completes: it ends on the first run's horizon, with its losses.
    from crashkit import Stage, cllm, describe, kill_and_resume, run_to_end

    data = DataRoot.at(tmp_path / "data")
    make_shards(data, corpus())
    settings = {**TINY_TRAIN, **TIME_BOUNDED, "max_seconds": 4.0}
    sets = [f"--set=train.{k}={v!r}".replace("'", '"') for k, v in settings.items()]
    stage = Stage("train", lambda root: cllm(root, "train", "--run", "tb", "--resume", *sets),
                  lambda root: root / "runs" / "tb" / ".train.lock", progress=checkpoint_step)
    whole = run_to_end(stage, data.path, cli_env, tmp_path / "whole.log")
    assert whole.returncode == 0, whole.output
    rows = read_metrics(data.run("tb") / "metrics.jsonl")
    (fit,) = fits_of(rows)
    # killed once already: right after the first checkpoint that holds the horizon
    held = min(s for s in CheckpointSet(data.run("tb"), 1000).steps() if s > fit["fitted_at"])
    root = DataRoot.at(tmp_path / "killed")
    shutil.copytree(data.path, root.path)
    for later in CheckpointSet(root.run("tb"), 1000).steps():
        if later > held:
            CheckpointSet(root.run("tb"), 1000).path_for(later).unlink()
    done = kill_and_resume(stage, root.path, cli_env, whole, random.Random(11), kills=3,
                           number=0, log=tmp_path / "kills.log")
    print("\n" + describe("train", whole, [done]))
    assert done.kills, "no kill landed"
    resumed = read_metrics(root.run("tb") / "metrics.jsonl")
    assert fits_of(resumed) == [fit]
    last = steps_of(rows)[-1]["step"]  # the uninterrupted run's (its clock may have cut it)
    assert same_rows([r for r in steps_of(resumed) if r["step"] <= last]) == \
        same_rows(steps_of(rows))
    tc = tiny_config(**settings).train
    horizon = saved_horizon(CheckpointSet(root.run("tb"), 1000).latest())
    assert horizon == Horizon(start=fit["fitted_at"], end=fit["horizon"],
                              max_steps=tc.max_steps, max_seconds=tc.max_seconds)
    assert [r["lr"] for r in steps_of(resumed)] == [lr_at(r["step"] - 1, tc, horizon)
                                                     for r in steps_of(resumed)]
    assert steps_of(resumed)[-1]["step"] == horizon.end
    assert steps_of(resumed)[-1]["lr"] <= tc.min_lr * 1.03
