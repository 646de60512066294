"""OMP_THREAD_LIMIT, which Tesseract needs (one thread) and torch's bf16 kernels trip over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_docproc_samples import mixed_pdf_bytes, page_texts, write

from docproc.document import extract_file
from docproc.options import ExtractOptions


@pytest.mark.parametrize("before", [None, "3"])
def test_in_process_ocr_leaves_the_callers_thread_limit_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: str | None) -> None:
    if before is None:
        monkeypatch.delenv("OMP_THREAD_LIMIT", raising=False)
    else:
        monkeypatch.setenv("OMP_THREAD_LIMIT", before)
    path = write(tmp_path / "scan.pdf", mixed_pdf_bytes(page_texts(1, words=30), scanned={1},
                                                        dpi=100))
    doc = extract_file(path, ExtractOptions(dpi=100))
    assert doc.ocr_pages == [1] and doc.text.strip()  # Tesseract did run, in this process
    assert os.environ.get("OMP_THREAD_LIMIT") == before


TRAIN_UNDER_LIMIT = """
import json, sys
from flows.shell.cllm import main
from model.tiny import corpus, make_shards
from pipeline.layout import DataRoot
root = sys.argv[1]
make_shards(DataRoot.at(root), corpus(docs=20))
sets = ["train.n_layer=1", "train.n_embd=16", "train.n_head=2", "train.block_size=16",
        "train.batch_size=2", "train.eval_interval=2", "train.eval_iters=1",
        "train.precision=\\"bf16\\"", "train.threads=2"]
code = main(["--root", root, "-q", "train", "--max-steps", "3", "--device", "cpu",
             *[a for s in sets for a in ("--set", s)]])
print(json.dumps(code))
"""


def test_bf16_training_under_a_thread_limit_of_one_has_finite_losses(tmp_path: Path) -> None:
    # torch 2.13's bf16 LayerNorm on 2 threads under OMP_THREAD_LIMIT=1 gave NaN at step 1
    root = tmp_path / "r"
    done = subprocess.run([sys.executable, "-c", TRAIN_UNDER_LIMIT, str(root)],
                          env={**os.environ, "OMP_THREAD_LIMIT": "1"}, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and json.loads(done.stdout.splitlines()[-1]) == 0, done.stderr
    rows = [json.loads(line) for line in
            (root / "runs" / "default" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r and "event" not in r]
    assert len(losses) == 3 and all(0 < loss < 20 for loss in losses)
