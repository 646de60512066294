"""Shared fixtures: a fresh data root and the default config, per test."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Config, build_config
from pipeline.layout import DataRoot

REPO = Path(__file__).resolve().parents[1]
# nothing is downloaded: transformers (the export tests) reads only what the tests wrote
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
VENV_BIN = Path(sys.executable).parent
OPT_IN = "llamacpp"  # builds llama-cpp-python from source: half an hour on two cores


def skip_unless_ci(why: str) -> None:
    """A test that needs what CI provides (root, redis-server) and this machine lacks: skip
    on a developer's machine, fail under CI=true, where it must run."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{why} (CI=true: CI must run this test)")
    pytest.skip(why)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The opt-in tests run only when -m names their marker (then -m decides, as always):
    a plain run, `-m slow` or `-k ...` leaves them out."""
    if OPT_IN in (config.option.markexpr or ""):
        return
    opted = [item for item in items if OPT_IN in item.keywords]
    if opted:
        config.hook.pytest_deselected(items=opted)
        items[:] = [item for item in items if OPT_IN not in item.keywords]


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


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from threads, and on shared cores a second one only waits."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def missing_tesseract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TESSERACT_CMD names no binary; pytesseract's command (which docproc.ocr sets from it)
    is put back after the test, pass or fail, so no later test inherits the missing one."""
    import pytesseract

    missing = tmp_path / "nowhere" / "tesseract"
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd",
                        pytesseract.pytesseract.tesseract_cmd)
    monkeypatch.setenv("TESSERACT_CMD", str(missing))
    return missing
