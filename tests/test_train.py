"""The trainer on tiny real shards: loss falls, schedules, outputs, early stop, NaN, init, tools."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint, load_safetensors_model, model_from_state
from model.metrics import read_metrics
from model.schedule import lr_at
from model.tiny import corpus, make_shards, tiny_config
from model.train import StepInfo, train
from pipeline.config import TrainConfig
from pipeline.errors import ConfigError
from pipeline.layout import DataRoot


@pytest.fixture(scope="module")
def shards_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = DataRoot.at(tmp_path_factory.mktemp("shards") / "data")
    make_shards(root, corpus())
    return root.path


@pytest.fixture
def data(shards_template: Path, tmp_path: Path) -> DataRoot:
    shutil.copytree(shards_template, tmp_path / "data")
    return DataRoot.at(tmp_path / "data")


def test_loss_falls_and_the_run_leaves_its_outputs(data: DataRoot) -> None:
    result = train(tiny_config(max_steps=40), data, progress=False)
    rows = read_metrics(result.metrics)
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 41))
    assert all({"step", "loss", "lr", "tokens_per_s", "grad_norm", "mfu"} <= set(r) for r in steps)
    evals = [r["val_loss"] for r in rows if "val_loss" in r]
    assert len(evals) == 4 and evals[-1] < evals[0] - 1.0
    assert sum(r["loss"] for r in steps[-5:]) / 5 < steps[0]["loss"] - 1.0
    assert result.stop_reason == "max_steps" and result.steps == 40
    assert result.tokens_seen == 40 * 8 * 32
    assert result.best_val_loss == pytest.approx(min(evals))
    run = data.run("default")
    assert (run / "config.toml").is_file() and "n_embd = 32" in (run / "config.toml").read_text()
    assert result.report is not None and result.report.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # keep_last (3) step checkpoints, the best, and a safetensors export of the best
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000020.pt", "step-00000030.pt", "step-00000040.pt"]
    best = load_checkpoint(result.best_checkpoint)
    assert best["val_loss"] == pytest.approx(result.best_val_loss)
    exported = load_safetensors_model(result.export)
    ids = torch.randint(0, 300, (1, 16))
    assert torch.allclose(exported(ids)[0], model_from_state(best)(ids)[0])
    # a checkpoint is self-contained: config, optimizer, tokenizer text, data position
    last = load_checkpoint(result.last_checkpoint)
    assert last["step"] == 40 and last["data"]["next_step"] == 40
    assert last["optimizer"]["state"] and last["tokenizer"]["json"].startswith("{")
    assert last["config"]["train"]["n_embd"] == 32


def test_scratch_refuses_a_run_that_has_checkpoints_and_resume_continues_it(
        data: DataRoot) -> None:
    train(tiny_config(max_steps=10), data, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_config(max_steps=20), data, progress=False)
    result = train(tiny_config(max_steps=20, init_from="resume"), data, progress=False)
    assert result.steps == 20
    assert [r["step"] for r in read_metrics(result.metrics) if "loss" in r] == list(range(1, 21))


def test_early_stopping_after_patience_evaluations_without_improvement(
        data: DataRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    from model.trainer import Trainer

    scripted = iter([3.0, 2.5, 2.6, 2.5, 2.4, 2.3])  # best at the 2nd eval, then 2 without gain
    monkeypatch.setattr(Trainer, "validate", lambda self: next(scripted))
    cfg = tiny_config(max_steps=200, eval_interval=2, save_interval=100, patience=2)
    seen: list[StepInfo] = []
    result = train(cfg, data, progress=False, on_step=seen.append)
    assert result.stop_reason == "early_stop"
    assert result.steps == 8
    assert [s.val_loss for s in seen if s.val_loss is not None] == [3.0, 2.5, 2.6, 2.5]
    assert result.best_val_loss == 2.5
    best = load_checkpoint(result.best_checkpoint)
    assert best["step"] == 4 and best["val_loss"] == 2.5
    assert load_checkpoint(result.last_checkpoint)["step"] == 8  # saved at the stop


def test_early_stopping_on_a_real_validation_loss_that_rises(tmp_path: Path) -> None:
    """The model memorises one document (train) at a high learning rate, while val is other
    text of the same grammar: the real validation loss falls, then rises, and training stops
    `patience` evaluations after its best."""
    memorised = corpus(docs=1, sentences=12, seed=3)[0]
    other = corpus(docs=20, seed=1)
    data = DataRoot.at(tmp_path / "data")
    make_shards(data, [t for text in other for t in (text, memorised)], val_every=2)
    cfg = tiny_config(max_steps=200, eval_interval=3, save_interval=100, patience=2, lr=3e-2,
                      min_lr=3e-3)
    seen: list[StepInfo] = []
    result = train(cfg, data, progress=False, on_step=seen.append)
    assert result.stop_reason == "early_stop" and result.steps < 200
    evals = [(s.step, s.val_loss) for s in seen if s.val_loss is not None]
    best_step, best = min(evals, key=lambda e: e[1])
    assert evals[0][1] > best, "val loss never fell"
    after = [loss for step, loss in evals if step > best_step]
    assert len(after) == 2 and all(loss > best for loss in after), evals  # rose: overfitting
    assert result.steps == best_step + 2 * 3 and result.best_val_loss == pytest.approx(best)
    assert load_checkpoint(result.best_checkpoint)["step"] == best_step
    losses = [s.loss for s in seen]
    assert losses[-1] < losses[0] - 1.0  # still learning its train set as val got worse


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(data: DataRoot) -> None:
    def poison(info: StepInfo) -> None:
        if info.step == 12:  # after the step-10 checkpoint: the next loss is NaN
            with torch.no_grad():
                poison.model.wte.weight.fill_(math.nan)

    from model.trainer import Trainer

    original = Trainer._build_model

    def build(self, state):  # noqa: ANN001, ANN202 - capture the model the trainer uses
        poison.model = original(self, state)
        return poison.model

    Trainer._build_model = build
    try:
        result = train(tiny_config(max_steps=30), data, progress=False, on_step=poison)
    finally:
        Trainer._build_model = original
    assert result.stop_reason == "nan_loss"
    assert result.steps == 12
    assert result.last_checkpoint.name == "step-00000010.pt"
    state = load_checkpoint(result.last_checkpoint)
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    rows = read_metrics(result.metrics)
    assert rows[-1]["event"] == "nan_loss" and math.isnan(rows[-1]["loss"])


def test_max_seconds_stops_with_a_checkpoint(data: DataRoot) -> None:
    result = train(tiny_config(max_steps=100_000, max_seconds=0.5, save_interval=100_000),
                   data, progress=False)
    assert result.stop_reason == "max_seconds"
    assert 0 < result.steps < 100_000
    assert load_checkpoint(result.last_checkpoint)["step"] == result.steps


def test_sigterm_stops_after_the_step_with_a_checkpoint(data: DataRoot) -> None:
    import os
    import signal

    def terminate(info: StepInfo) -> None:
        if info.step == 7:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    result = train(tiny_config(max_steps=30), data, progress=False, on_step=terminate)
    assert result.stop_reason == "interrupted" and result.steps == 7
    assert load_checkpoint(result.last_checkpoint)["step"] == 7
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is removed after


def test_starting_from_an_explicit_checkpoint(data: DataRoot) -> None:
    first = train(tiny_config(max_steps=20, run="first"), data, progress=False)
    source = load_checkpoint(first.last_checkpoint)
    # the checkpoint's model shape wins over train.* (here a different width is configured)
    cfg = tiny_config(max_steps=1, run="second", n_embd=64, lr=1e-9, min_lr=0.0,
                      warmup_steps=0, init_from="promoted")
    second = train(cfg, data, progress=False, init_checkpoint=first.last_checkpoint)
    state = load_checkpoint(second.last_checkpoint)
    assert state["model_config"]["n_embd"] == 32 and state["step"] == 1
    assert torch.allclose(state["model"]["wte.weight"], source["model"]["wte.weight"], atol=1e-6)
    # weights only: the optimizer starts fresh (one step of moments); with init_optimizer the
    # AdamW step count continues from the source's 20
    assert int(state["optimizer"]["state"][0]["step"]) == 1
    third = train(tiny_config(max_steps=1, run="third", lr=1e-9, min_lr=0.0, warmup_steps=0),
                  data, progress=False, init_checkpoint=first.last_checkpoint,
                  init_optimizer=True)
    assert int(load_checkpoint(third.last_checkpoint)["optimizer"]["state"][0]["step"]) == 21
    with pytest.raises(ConfigError, match="promoted"):
        train(tiny_config(run="fourth", init_from="promoted"), data, progress=False)


@pytest.mark.parametrize("scheduler", ["constant", "cosine", "linear", "step"])
def test_every_schedule_warms_up_then_follows_its_curve(scheduler: str) -> None:
    tc = TrainConfig(scheduler=scheduler, lr=1.0, min_lr=0.1, warmup_steps=4, max_steps=24,
                     lr_decay_steps=8 if scheduler == "step" else 0, lr_decay_factor=0.5)
    curve = [lr_at(s, tc) for s in range(30)]
    assert curve[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])  # (s + 1) / (warmup + 1)
    after = curve[4:]
    if scheduler == "constant":
        assert after == pytest.approx([1.0] * 26)
    elif scheduler == "cosine":
        assert curve[4] == pytest.approx(1.0)
        assert curve[14] == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi / 2)) * 0.9)
        assert curve[24:] == pytest.approx([0.1] * 6)
        assert all(a >= b for a, b in zip(after, after[1:], strict=False))
    elif scheduler == "linear":
        assert curve[9] == pytest.approx(1.0 - 0.25 * 0.9)
        assert curve[24:] == pytest.approx([0.1] * 6)
    else:  # halves every 8 steps after warmup, floored at min_lr
        assert curve[4:12] == pytest.approx([1.0] * 8)
        assert curve[12:20] == pytest.approx([0.5] * 8)
        assert curve[20:28] == pytest.approx([0.25] * 8)
        assert lr_at(100, tc) == pytest.approx(0.1)


def test_the_trainer_applies_the_schedule(data: DataRoot) -> None:
    cfg = tiny_config(max_steps=12, scheduler="linear", warmup_steps=2, eval_interval=100)
    result = train(cfg, data, progress=False)
    logged = [r["lr"] for r in read_metrics(result.metrics) if "loss" in r]
    assert logged == pytest.approx([lr_at(s, cfg.train) for s in range(12)])


def test_grad_accumulation_trains_on_the_same_global_batch(data: DataRoot) -> None:
    cfg = {"max_steps": 4, "eval_interval": 100}
    big = train(tiny_config(batch_size=8, run="big", **cfg), data, progress=False)
    acc = train(tiny_config(batch_size=4, grad_accum=2, run="acc", **cfg), data, progress=False)
    assert acc.tokens_seen == big.tokens_seen == 4 * 8 * 32
    big_losses = [r["loss"] for r in read_metrics(big.metrics) if "loss" in r]
    acc_losses = [r["loss"] for r in read_metrics(acc.metrics) if "loss" in r]
    assert acc_losses == pytest.approx(big_losses, rel=1e-5)
    assert big_losses[0] == pytest.approx(math.log(320), rel=0.05)  # untrained: uniform guess


def test_train_model_tool_trains_on_a_data_root(data: DataRoot, tmp_path: Path) -> None:
    from flows.shell.legacy_model import train_model_main

    out = tmp_path / "exported"
    code = train_model_main([str(data.path), "--model-name", "legacy", "--embed-dim", "32",
                             "--num-layers", "1", "--num-heads", "2", "--seq-len", "32",
                             "--batch-size", "8", "--epochs", "0.5", "--lr", "3e-3",
                             "--warmup-steps", "2", "--scheduler", "none", "--threads", "1",
                             "--device", "cpu", "--checkpoint-dir", str(out), "-q"])
    assert code == 0
    rows = [r for r in read_metrics(data.run("legacy") / "metrics.jsonl") if "loss" in r]
    tokens = json.loads(data.manifest.read_text())["totals"]["train"]["tokens"]
    assert len(rows) == math.ceil(0.5 * tokens / (8 * 32))
    assert {r["lr"] for r in rows[2:]} == {3e-3}  # "none" is the constant schedule
    assert (out / "legacy.pt").is_file() and (out / "legacy.safetensors").is_file()


def test_train_model_tool_names_a_missing_data_dir_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from flows.shell.legacy_model import train_model_main
    from flows.shell.runner import EXIT_USAGE

    missing = tmp_path / "nowhere"
    assert train_model_main([str(missing), "-q"]) == EXIT_USAGE
    assert capsys.readouterr().err.splitlines() == [f"train_model: {missing} does not exist"]


@pytest.mark.slow
def test_cllm_train_evaluate_sample_commands(data: DataRoot, cli_env: dict[str, str]) -> None:
    sets = [f"--set=train.{k}={v}" for k, v in
            {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "batch_size": 8,
             "eval_interval": 10, "eval_iters": 2, "precision": '"fp32"', "threads": 1,
             "lr": 3e-3, "warmup_steps": 2}.items()]
    base = [sys.executable, "-m", "flows.shell.cllm", "--root", str(data.path), "-q"]
    done = subprocess.run([*base, "train", "--run", "cli", "--max-steps", "20", "--device", "cpu",
                           *sets], env=cli_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "train: 20 seen" in done.stdout
    ev = subprocess.run([*base, "evaluate", str(data.run("cli")), "--json"], env=cli_env,
                        capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["what"] == "val" and result["step"] == 20 and result["loss"] < 5.0
    sample = subprocess.run([*base, "sample", str(data.run("cli")), "-p", "The quick", "-n", "12",
                             "-s", "3"], env=cli_env, capture_output=True, text=True, timeout=300)
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("The quick") and len(sample.stdout) > len("The quick\n")


@pytest.mark.slow
def test_train_model_tool_tokenizes_a_folder_of_documents_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.shell.legacy_model import train_model_main

    docs = tmp_path / "documents"
    docs.mkdir()
    for i, text in enumerate(corpus(docs=30, seed=5)):
        (docs / f"doc{i:02d}.txt").write_text(text + "\n", encoding="utf-8")
    monkeypatch.setenv("CLLM_SHARDS__VAL_FRACTION", "0.2")
    monkeypatch.setenv("CLLM_EXTRACT__WORKERS", "1")
    root = tmp_path / "root"
    code = train_model_main([str(docs), "--root", str(root), "--vocab-size", "400",
                             "--model-name", "fromdocs", "--embed-dim", "32", "--num-layers",
                             "1", "--num-heads", "2", "--seq-len", "32", "--batch-size", "4",
                             "--max-steps", "6", "--warmup-steps", "1", "--threads", "1",
                             "--device", "cpu", "-q"])
    assert code == 0
    manifest = json.loads((root / "shards" / "manifest.json").read_text())
    assert manifest["totals"]["train"]["docs"] + manifest["totals"]["val"]["docs"] == 30
    state = load_checkpoint(root / "runs" / "fromdocs" / "checkpoints" / "step-00000006.pt")
    assert state["tokenizer"]["sha256"] == manifest["tokenizer"]["sha256"]
    assert state["model_config"]["vocab_size"] == manifest["tokenizer"]["vocab_size"]


def test_tensorboard_events_hold_the_figures_of_metrics_jsonl(data: DataRoot) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
        events = EventAccumulator(str(run_dir / "tb"))
        events.Reload()
        return [(e.step, e.value) for e in events.Scalars(tag)]

    first = train(tiny_config(max_steps=20, tensorboard=True), data, progress=False)
    events = EventAccumulator(str(first.run_dir / "tb"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"train/loss", "train/lr", "train/grad_norm",
                                             "train/tokens_per_s", "val/loss",
                                             "val/bits_per_byte"}
    rows = read_metrics(first.metrics)
    evals = [r for r in rows if "val_bpb" in r]
    assert [v for _, v in scalars(first.run_dir, "val/bits_per_byte")] == pytest.approx(
        [r["val_bpb"] for r in evals], rel=1e-6)
    assert all(0 < r["val_bpb"] < r["val_loss"] for r in evals)  # a token is > 1.44 bytes here
    # resumed to 30 steps: each step's figures once, the resumed ones as metrics.jsonl says
    resumed = train(tiny_config(max_steps=30, tensorboard=True, init_from="resume"), data,
                    progress=False)
    steps = [r for r in read_metrics(resumed.metrics) if "loss" in r and "event" not in r]
    assert scalars(resumed.run_dir, "train/loss") == [
        (r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in steps]
    assert [s for s, _ in scalars(resumed.run_dir, "train/loss")] == list(range(1, 31))
    plain = train(tiny_config(max_steps=2, run="plain"), data, progress=False)
    assert not (plain.run_dir / "tb").exists()  # off by default


@pytest.mark.parametrize("before", [(False, False), (False, True)])
def test_tf32_is_on_for_a_cuda_run_and_the_callers_settings_come_back(
        before: tuple[bool, bool]) -> None:
    from model.runtime import tf32_matmuls

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    try:
        matmul.allow_tf32, cudnn.allow_tf32 = before
        with tf32_matmuls(torch.device("cuda")):
            assert (matmul.allow_tf32, cudnn.allow_tf32) == (True, True)
        assert (matmul.allow_tf32, cudnn.allow_tf32) == before
        with pytest.raises(KeyboardInterrupt), tf32_matmuls(torch.device("cuda")):
            raise KeyboardInterrupt  # a run stopped by Ctrl-C restores them too
        assert (matmul.allow_tf32, cudnn.allow_tf32) == before
        with tf32_matmuls(torch.device("cpu")):  # CPU fp32 stays IEEE fp32
            assert (matmul.allow_tf32, cudnn.allow_tf32) == before
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def test_train_threads_apply_to_the_run_only(data: DataRoot) -> None:
    before = torch.get_num_threads()
    seen: list[int] = []
    try:
        torch.set_num_threads(2)
        train(tiny_config(max_steps=1, threads=1), data, progress=False,
              on_step=lambda _: seen.append(torch.get_num_threads()))
        assert seen == [1] and torch.get_num_threads() == 2  # the caller's count is back
    finally:
        torch.set_num_threads(before)


def test_adamw_moments_follow_their_parameters_into_other_decay_groups() -> None:
    """A state saved with the embeddings out of decay, loaded under decay_embeddings=True:
    each parameter gets its own moments back, though its index in the groups moved."""
    from model.cllm import CLLM, ModelConfig
    from model.trainer import _make_optimizer, _regrouped

    torch.manual_seed(0)
    model = CLLM(ModelConfig.from_train(tiny_config().train, 300))
    before = _make_optimizer(model, TrainConfig(decay_embeddings=False), torch.device("cpu"))
    model(torch.randint(0, 300, (2, 8)), torch.randint(0, 300, (2, 8)))[1].backward()
    before.step()
    after = _make_optimizer(model, TrainConfig(decay_embeddings=True), torch.device("cpu"))
    assert len(after.param_groups[0]["params"]) == len(before.param_groups[0]["params"]) + 2
    after.load_state_dict(_regrouped(before.state_dict(), model, False, after))
    for p in model.parameters():
        assert torch.equal(after.state[p]["exp_avg"], before.state[p]["exp_avg"])
        assert torch.equal(after.state[p]["exp_avg_sq"], before.state[p]["exp_avg_sq"])


def test_a_checkpoint_from_before_decay_embeddings_continues_its_moments(data: DataRoot,
                                                                         tmp_path: Path) -> None:
    """Checkpoints saved before the key existed kept the embeddings out of decay: their AdamW
    state is regrouped, not refused, and every parameter's step count continues."""
    from model.checkpoint import save_checkpoint

    first = train(tiny_config(max_steps=5, run="first", decay_embeddings=False), data,
                  progress=False)
    old = load_checkpoint(first.last_checkpoint)
    del old["config"]["train"]["decay_embeddings"]  # as a checkpoint of before the key
    save_checkpoint(tmp_path / "old.pt", old)
    second = train(tiny_config(max_steps=1, run="second", decay_embeddings=True), data,
                   progress=False, init_checkpoint=tmp_path / "old.pt", init_optimizer=True)
    state = load_checkpoint(second.last_checkpoint)["optimizer"]
    saved = old["optimizer"]["param_groups"]
    assert [len(g["params"]) for g in state["param_groups"]] == [
        len(g["params"]) + d for g, d in zip(saved, (2, -2), strict=True)]  # wte, wpe moved
    assert {int(s["step"]) for s in state["state"].values()} == {6}


def test_an_untied_head_is_exported_and_loaded_with_its_own_weights(data: DataRoot) -> None:
    result = train(tiny_config(max_steps=2, tie_embeddings=False), data, progress=False)
    exported = load_safetensors_model(result.export)
    assert not torch.equal(exported.lm_head.weight, exported.wte.weight)
    best = model_from_state(load_checkpoint(result.best_checkpoint))
    ids = torch.randint(0, 300, (1, 16))
    assert torch.equal(exported(ids)[0], best(ids)[0])
