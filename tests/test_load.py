"""Load: two `cllm` commands on one data root at once, and readers of the promoted model while
a retrain promotes new ones.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from acceptance.kit import VENV_BIN, prose, wait_for, write_config

pytestmark = pytest.mark.slow

PROMOTIONS = 4


def _cllm(args: list[str], project: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "cllm"), *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)


def _locked(path: Path) -> bool:
    """Whether a process holds the stage lock at `path` now (a shared lock is refused)."""
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _outputs(folder: Path) -> dict[str, str]:
    """sha256 of every file the tokenize stage wrote (shards, tokenizer), by relative path;
    not the resolved config or the manifest, which name the data root's path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in ("shards", "tokenizer") for p in sorted((folder / sub).rglob("*"))
            if p.is_file() and not p.name.startswith(".")
            and p.name not in ("manifest.json", "tokenize.config.toml")}


def test_a_second_tokenize_on_the_same_root_is_refused_with_exit_3_and_nothing_is_lost(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    project = tmp_path / "project"
    texts = project / "texts"
    texts.mkdir(parents=True)
    for i in range(30):
        (texts / f"note-{i:02d}.txt").write_text(prose(i, 300), encoding="utf-8")
    write_config(project, urls=[], paths=["texts"])
    for stage in (["ingest", "texts"], ["extract"]):
        done = _cllm(stage, project, cli_env)
        assert done.returncode == 0, done.stderr[-2000:]
    alone = shutil.copytree(project, tmp_path / "alone")
    done = _cllm(["tokenize"], alone, cli_env)
    assert done.returncode == 0, done.stderr[-2000:]

    first = subprocess.Popen([str(VENV_BIN / "cllm"), "tokenize"], cwd=project, env=cli_env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = project / "cllm-data" / "shards" / ".tokenize.lock"
        wait_for("the first tokenize to hold its lock", lambda: _locked(lock), 120, poll=0.05)
        first.send_signal(signal.SIGSTOP)  # holding the lock, for as long as the second runs
        second = _cllm(["tokenize"], project, cli_env)
        first.send_signal(signal.SIGCONT)
        _, first_err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 3, second.stderr[-2000:]
    assert "already running" in second.stderr and "Traceback" not in second.stderr
    assert first.returncode == 0, first_err[-2000:]
    made = _outputs(project / "cllm-data")
    assert made and made == _outputs(alone / "cllm-data")  # as if it had run alone
    verified = _cllm(["shards", "verify"], project, cli_env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


PROMOTER = """
import sys
from flows.registry import ModelRecord, Registry
from pipeline.layout import DataRoot

registry = Registry(DataRoot.at(sys.argv[1]))
checkpoints = sys.argv[3:]
for i in range(int(sys.argv[2])):
    path = checkpoints[i % len(checkpoints)]
    step = int(path.rsplit("step-", 1)[1].split(".")[0])
    registry.promote(__import__("pathlib").Path(path), ModelRecord(
        id=f"m{i:03d}-step{step}", run="load", step=step, checkpoint=path, val_loss=1.0,
        manifest_version=1, tokenizer_sha256="", reason="load test"))
"""


def _weights_digest(state: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(state["model"]):
        digest.update(name.encode())
        digest.update(state["model"][name].numpy().tobytes())
    return digest.hexdigest()


def test_readers_of_the_promoted_model_always_load_a_whole_one_while_promotions_go_on(
        tmp_path: Path, cli_env: dict[str, str], one_torch_thread: None) -> None:
    from model.checkpoint import load_checkpoint, model_from_state, read_model
    from model.evaluate import default_checkpoint
    from model.tiny import corpus, make_shards, tiny_config
    from model.train import train
    from pipeline.layout import DataRoot

    root = DataRoot.at(tmp_path / "data")
    make_shards(root, corpus())
    run = train(tiny_config(max_steps=20, save_interval=10, eval_interval=10, eval_iters=1),
                root, progress=False).run_dir
    checkpoints = sorted(str(p) for p in run.rglob("step-*.pt"))
    assert len(checkpoints) >= 2
    weights = {load_checkpoint(Path(p))["step"]: _weights_digest(load_checkpoint(Path(p)))
               for p in checkpoints}
    assert len(set(weights.values())) == len(weights)  # a mix-up would show

    subprocess.run([sys.executable, "-c", PROMOTER, str(root.path), "1", checkpoints[0]],
                   env=cli_env, check=True, timeout=300)  # a `current` to read from the start
    promoter = subprocess.Popen([sys.executable, "-c", PROMOTER, str(root.path),
                                 str(PROMOTIONS), *checkpoints], env=cli_env,
                                stderr=subprocess.PIPE, text=True)
    sampler = subprocess.Popen(
        [str(VENV_BIN / "cllm"), "--root", str(root.path), "sample", "-p", "the", "-n", "8"],
        env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    loads, seen = 0, set()
    try:
        while promoter.poll() is None or loads == 0:
            state = read_model(default_checkpoint(root))  # what `cllm sample/evaluate` load
            model_from_state(state)  # every tensor is there, of its shape
            assert _weights_digest(state) == weights[state["step"]], "a mixed model"
            seen.add(state["step"])
            loads += 1
    finally:
        promoter.wait(timeout=600)
        sampled, sample_err = sampler.communicate(timeout=600)
    assert promoter.returncode == 0, promoter.stderr.read()[-2000:]
    assert sampler.returncode == 0 and sampled.strip().startswith("the"), sample_err[-2000:]
    assert len(seen) == len(weights), f"{loads} loads saw only steps {seen}"
    print(f"{loads} loads of `current` during {PROMOTIONS} promotions: all whole")
    evaluated = subprocess.run([str(VENV_BIN / "cllm"), "--root", str(root.path), "evaluate"],
                               env=cli_env, capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
