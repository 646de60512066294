"""Checkpoints: exact resume after SIGKILL, tokenizer mismatch refused, safe loading."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from model.data import TokenizerMismatch
from model.evaluate import evaluate_checkpoint
from model.metrics import read_metrics
from model.tiny import corpus, make_shards, tiny_config
from model.train import train
from pipeline.layout import DataRoot

# evals at 12 and 24: the step-20 checkpoint, the first after the resume, is saved before the
# resumed session's first evaluation and must still carry step 12's val loss
RESUME_RUN = {"max_steps": 30, "dropout": 0.1, "save_interval": 5, "eval_interval": 12}
KILL_AT = 17  # after the step-15 checkpoint, with steps 16-17 already in metrics.jsonl

KILLED_TRAINER = """
import os, signal, sys
from model.tiny import tiny_config
from model.train import train
from pipeline.layout import DataRoot

def on_step(info):
    if info.step == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)

train(tiny_config(run="killed", **{run}), DataRoot.at(sys.argv[1]), progress=False,
      on_step=on_step)
"""


@pytest.fixture(scope="module")
def two_roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Shards of one corpus, and of another corpus with another tokenizer (same vocab size)."""
    base = tmp_path_factory.mktemp("roots")
    make_shards(DataRoot.at(base / "a"), corpus(seed=0))
    make_shards(DataRoot.at(base / "b"), corpus(seed=1, sentences=10))
    return base / "a", base / "b"


@pytest.fixture
def data(two_roots: tuple[Path, Path], tmp_path: Path) -> DataRoot:
    shutil.copytree(two_roots[0], tmp_path / "a")
    return DataRoot.at(tmp_path / "a")


@pytest.fixture
def other(two_roots: tuple[Path, Path], tmp_path: Path) -> DataRoot:
    shutil.copytree(two_roots[1], tmp_path / "b")
    return DataRoot.at(tmp_path / "b")


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_exactly(data: DataRoot, cli_env: dict) -> None:
    full = train(tiny_config(run="full", **RESUME_RUN), data, progress=False)
    script = KILLED_TRAINER.format(kill_at=KILL_AT, run=RESUME_RUN)
    killed = subprocess.run([sys.executable, "-c", script, str(data.path)], env=cli_env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = data.run("killed")
    assert resolve_checkpoint(run / "checkpoints").name == "step-00000015.pt"
    assert max(r["step"] for r in read_metrics(run / "metrics.jsonl")) == KILL_AT
    # what a kill during a save leaves: a temp file of a dead writer
    orphan = run / "checkpoints" / ".step-00000020.pt.999999999.x1.tmp"
    orphan.write_bytes(b"half a checkpoint")

    resumed = train(tiny_config(run="killed", init_from="resume", **RESUME_RUN), data,
                    progress=False)
    assert not orphan.exists()
    assert resumed.steps == full.steps == 30
    assert resumed.tokens_seen == full.tokens_seen
    assert resumed.best_val_loss == full.best_val_loss
    expected = read_metrics(full.metrics)
    got = read_metrics(resumed.metrics)
    keys = ("step", "loss", "lr", "grad_norm", "val_loss")
    assert [[r.get(k) for k in keys] for r in got] == [[r.get(k) for k in keys] for r in expected]
    a, b = load_checkpoint(full.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for path in sorted((full.run_dir / "checkpoints").glob("step-*.pt")):
        ours = load_checkpoint(resumed.run_dir / "checkpoints" / path.name)
        assert ours["val_loss"] == load_checkpoint(path)["val_loss"] is not None, path.name


def test_resuming_a_finished_run_changes_nothing(data: DataRoot) -> None:
    first = train(tiny_config(max_steps=10), data, progress=False)
    before = first.last_checkpoint.read_bytes()
    again = train(tiny_config(max_steps=10, init_from="resume"), data, progress=False)
    assert again.steps == 10 and again.last_checkpoint == first.last_checkpoint
    assert again.last_checkpoint.read_bytes() == before
    assert len([r for r in read_metrics(again.metrics) if "loss" in r]) == 10


def test_a_checkpoint_refuses_shards_of_another_tokenizer(data: DataRoot,
                                                          other: DataRoot) -> None:
    result = train(tiny_config(max_steps=5), data, progress=False)
    assert result.last_checkpoint is not None
    with pytest.raises(TokenizerMismatch, match="tokenizer"):
        evaluate_checkpoint(result.last_checkpoint, other, device="cpu")
    with pytest.raises(TokenizerMismatch):
        train(tiny_config(max_steps=10, run="from-a"), other, progress=False,
              init_checkpoint=result.last_checkpoint)
    shutil.copytree(result.run_dir, other.run("default"))  # resuming it on the other shards
    with pytest.raises(TokenizerMismatch):
        train(tiny_config(max_steps=10, init_from="resume"), other, progress=False)


def test_loading_is_weights_only_and_rejects_what_is_not_a_checkpoint(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(garbage)
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": {}, "model_config": {}, "payload": Path("/etc/passwd")}, pickled)
    with pytest.raises(CheckpointError):  # an arbitrary object: refused, never unpickled
        load_checkpoint(pickled)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a CLLM checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(FileNotFoundError):
        resolve_checkpoint(tmp_path)


def test_a_checkpoint_from_before_tie_embeddings_loads_with_its_head_tied(tmp_path: Path) -> None:
    from model.checkpoint import model_from_state, save_checkpoint
    from model.cllm import CLLM, ModelConfig

    torch.manual_seed(0)
    model = CLLM(ModelConfig(vocab_size=50, n_layer=1, n_head=2, n_embd=16, block_size=8))
    config = model.cfg.to_dict()
    del config["tie_embeddings"]  # what checkpoints saved before the key hold
    save_checkpoint(tmp_path / "old.pt", {"model": model.state_dict(), "model_config": config})
    loaded = model_from_state(load_checkpoint(tmp_path / "old.pt"))
    assert loaded.lm_head.weight is loaded.wte.weight
    assert torch.equal(loaded.wte.weight, model.wte.weight)
