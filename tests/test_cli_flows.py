"""The orchestrated commands as a user runs them: `cllm demo` (the README's first command) and
`cllm run` over the sources of a cllm.toml, each in its own process with Prefect's ephemeral
mode, with a line per stage on stderr and everything under the data root.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_flows import TINY, _site_routes

pytestmark = pytest.mark.slow

SMALL_DEMO = ["--set", "train.max_seconds=8", "--set", "train.n_layer=1",
              "--set", "train.n_embd=64", "--set", "train.n_head=2",
              "--set", "train.eval_interval=50", "--set", "tokenize.vocab_size=1024"]


def _cllm(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in env.items() if not k.startswith("PREFECT_")}
    return subprocess.run([sys.executable, "-m", "flows.shell.cllm", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_demo_runs_the_whole_pipeline(tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = tmp_path / "data"
    done = _cllm(["--root", str(root), "demo", *SMALL_DEMO], cli_env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for stage in ("crawl:", "extract:", "tokenize:", "train:", "validate:"):
        assert stage in done.stderr, f"no {stage} line in\n{done.stderr[-3000:]}"
    assert "CLLM demo: done" in done.stdout and "promoted" in done.stdout
    assert "pages OCRed" in done.stdout
    assert (root / "models" / "current" / "model.pt").is_file()
    assert (root / "demo-sample.txt").read_text().strip()
    assert list((root / "runs").glob("demo-*/report.png"))
    assert (root / "state" / "prefect").is_dir()  # Prefect's database in the data root
    assert not (tmp_path / "cllm-data").exists()  # nothing outside it


def test_run_uses_the_sources_of_cllm_toml(tmp_path: Path, cli_env: dict[str, str]) -> None:
    from crawler.localsite import LocalSite

    root = tmp_path / "data"
    with LocalSite(_site_routes(10, seed=3)) as site:
        (tmp_path / "cllm.toml").write_text(f'[sources]\nurls = ["{site.url("/")}"]\n')
        overrides = [arg for item in TINY for arg in ("--set", item)]
        done = _cllm(["--root", str(root), "run", *overrides], cli_env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "decision   promoted as" in done.stdout
    assert "extract: 11 seen, 11 kept" in done.stderr
    assert (root / "models" / "current" / "record.json").is_file()


def test_a_retrain_or_validate_while_a_retrain_runs_is_skipped_with_the_reason(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    """The schedule came round (or a user typed the command) while a retrain still holds the
    data root: the command does nothing and says why, as a locked stage does (exit 3)."""
    import os

    from flows.common import RETRAIN_LOCK
    from pipeline.layout import DataRoot
    from pipeline.lock import stage_lock

    root = DataRoot.at(tmp_path / "data")
    (tmp_path / "cllm.toml").write_text('[sources]\nurls = ["http://127.0.0.1:9/"]\n')
    with stage_lock(root.state, RETRAIN_LOCK):
        retrain = _cllm(["--root", str(root.path), "retrain"], cli_env, tmp_path)
        validate = _cllm(["--root", str(root.path), "validate"], cli_env, tmp_path)
    assert retrain.returncode == 3, retrain.stderr[-3000:]
    assert f"skipped: retrain is already running on {root.state} (pid {os.getpid()})" in \
        retrain.stderr, retrain.stderr[-3000:]
    assert not root.raw.exists() and not root.manifest.exists()  # nothing was ingested
    assert validate.returncode == 3, validate.stderr[-3000:]
    assert f"skipped: a retrain is running on {root.path} (pid {os.getpid()})" in \
        validate.stderr, validate.stderr[-3000:]
