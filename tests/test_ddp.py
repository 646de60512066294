"""DDP: `torchrun --nproc_per_node 2 -m model.train` (gloo, CPU) equals one process, same batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint
from model.metrics import read_metrics
from model.tiny import TINY_TRAIN, corpus, make_shards, tiny_config
from model.train import train
from pipeline.layout import DataRoot

RUN = {"max_steps": 12, "eval_interval": 6, "save_interval": 6, "grad_accum": 2}


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path: Path,
                                                                cli_env: dict) -> None:
    data = DataRoot.at(tmp_path / "data")
    make_shards(data, corpus())
    one = train(tiny_config(run="one", batch_size=8, **RUN), data, progress=False)

    # per process: 2 x 4 = 8; the run name goes in --set: torchrun takes `--run` for its own
    # `--run-path` (argparse abbreviations)
    settings = {**TINY_TRAIN, **RUN, "batch_size": 4, "run": "two"}
    sets = [f"--set=train.{k}={v!r}".replace("'", '"') for k, v in settings.items()]
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "model.train",
         "--root", str(data.path), "-q", *sets],
        env={**cli_env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    expected = read_metrics(one.metrics)
    got = read_metrics(data.run("two") / "metrics.jsonl")  # written by rank 0 alone
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    assert [r["tokens"] for r in got if "tokens" in r] == [r["tokens"] for r in expected
                                                           if "tokens" in r]
    for key in ("loss", "val_loss", "grad_norm"):
        want = [r[key] for r in expected if key in r]
        assert [r[key] for r in got if key in r] == pytest.approx(want, rel=1e-4), key
    a = load_checkpoint(one.last_checkpoint)["model"]
    two = load_checkpoint(data.run("two") / "checkpoints" / "step-00000012.pt")
    b = two["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    # each rank's RNG (dropout) state is kept, so a resumed DDP run draws the same masks
    ranks = two["rng"]["torch_ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0], ranks[1])
    assert torch.equal(ranks[0], two["rng"]["torch"])
