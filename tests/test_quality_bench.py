"""bench/quality.py in its smoke mode (what CI runs of it) and its fixed corpus, bench/corpus.py."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


corpus = _load("corpus")


def test_the_corpus_is_the_same_in_every_process_and_holds_no_run_time_values(
        tmp_path: Path) -> None:
    modules = ["textwrap", "functools", "fnmatch"]  # functools' page shows objects' addresses
    first = corpus.write_corpus(tmp_path / "a", modules, max_chars=1500)
    second = corpus.write_corpus(tmp_path / "b", modules, max_chars=1500)
    assert first == second and first[0] > 3  # pages cut into several documents
    text = "".join(p.read_text() for p in (tmp_path / "a").iterdir())
    assert "wrap(text, width=70" in text  # real documentation
    assert " at 0x7" not in text and str(Path(sys.executable).parent) not in text


def test_normalise_masks_addresses_and_drops_the_run_time_sections() -> None:
    page = ("NAME\n    m\n\nFUNCTIONS\n    f = <function f at 0x7f3a2b>\n\n"
            "DATA\n    state = 12\n\nFILE\n    /usr/lib/m.py\n")
    assert corpus.normalise(page) == "NAME\n    m\n\nFUNCTIONS\n    f = <function f at 0x>\n"


def test_the_smoke_mode_scores_every_kind_of_run_against_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "quality.json"
    subprocess.run([sys.executable, str(BENCH / "quality.py"), "--smoke", "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=600)
    results = json.loads(out.read_text())
    assert set(results) == {"recipes", "crystalline"}
    recipes = results["recipes"]["summary"]
    reference = recipes["reference: bench/minigpt.py (nanoGPT)"]
    nanogpt = recipes["GPT-2, embeddings decayed (nanoGPT's recipe)"]
    assert reference["seeds"] == nanogpt["seeds"] == [1, 2]
    assert any(row["default"] for row in recipes.values())
    # our trainer on nanoGPT's recipe: the same weights and windows give the same loss
    assert abs(nanogpt["vs_reference"]) < 1e-4
    unscaled = recipes["GPT-2, embeddings decayed, residual projections unscaled"]
    assert abs(unscaled["vs_reference"]) > 1e-4  # another init: another result
    for row in results["crystalline"]["summary"].values():
        assert 0 < row["val_bpb"] < row["val_loss"] and row["first_loss"] > row["val_loss"]
    assert len(results["recipes"]["data"]["tokens_sha256"]) == 64
    table = subprocess.run([sys.executable, str(BENCH / "quality.py"), "--table", "--out",
                            str(out)], check=True, capture_output=True, text=True).stdout
    rows = [line for line in table.splitlines() if line.startswith("| ") and "±" in line]
    assert rows[0].startswith("| reference: bench/minigpt.py")  # in the recipes' order
    assert len(rows) == len(recipes) + len(results["crystalline"]["summary"])


def test_our_lr_schedule_is_nanogpts_at_every_step() -> None:
    from model.schedule import lr_at
    from pipeline.config import TrainConfig

    minigpt = _load("minigpt")
    tc = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=20, max_steps=200, scheduler="cosine")
    ours = [lr_at(step, tc) for step in range(210)]
    theirs = [minigpt.nanogpt_lr(step, lr=1e-3, min_lr=1e-4, warmup=20, decay_steps=200)
              for step in range(210)]
    assert ours == [pytest.approx(lr, rel=1e-12) for lr in theirs]
    assert ours[0] == pytest.approx(1e-3 / 21) and ours[-1] == 1e-4
