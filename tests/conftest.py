"""Shared fixtures: a fresh data root and the default config, per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipeline.config import Config, build_config
from pipeline.layout import DataRoot

REPO = Path(__file__).resolve().parents[1]
# nothing is downloaded: transformers (the export tests) reads only what the tests wrote
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def root(tmp_path: Path) -> DataRoot:
    return DataRoot.at(tmp_path / "data")


@pytest.fixture
def cfg() -> Config:
    """Defaults only: never the developer's ./cllm.toml or CLLM_* environment."""
    return build_config([])


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running `cllm` as a subprocess, isolated from the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLLM_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env
