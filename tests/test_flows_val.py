"""With no val data the promotion gate refuses and validation says so: neither promotes nor
passes silently (no Prefect server needed: the flows' bodies are called directly)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_dataset import add_parts, small_config

from pipeline.layout import DataRoot
from pipeline.shards import read_manifest
from pipeline.tokenization import tokenize_dataset


def _no_val_root(root: DataRoot) -> None:
    add_parts(root, [41], docs=6, words=150)
    tokenize_dataset(small_config(shards={"val_fraction": 0.0}), root, progress=False)
    assert read_manifest(root.manifest).totals()["val"]["tokens"] == 0


def test_the_gate_refuses_and_validate_reports_no_val_data(root: DataRoot, tmp_path: Path
                                                          ) -> None:
    from flows.registry import Registry
    from flows.train import decide_and_promote
    from flows.validate import run_validate

    _no_val_root(root)
    cfg = small_config(shards={"val_fraction": 0.0})
    decision = decide_and_promote(cfg, root, tmp_path / "candidate.pt", "run-1")
    assert not decision.promoted and decision.reason.startswith("no val data: the val split")
    registry = Registry(root)
    assert registry.current() is None
    assert [(d["promoted"], d["reason"]) for d in registry.decisions()] == \
        [(False, decision.reason)]
    result = run_validate(cfg, root)
    assert result["validated"] is False and result["reason"].startswith("no val data")


def test_train_warns_about_an_empty_val_split(root: DataRoot,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from model.train import _warn_about_val_split

    _no_val_root(root)
    with caplog.at_level(logging.WARNING, logger="model.train"):
        _warn_about_val_split(small_config(), read_manifest(root.manifest))
    assert "train: the val split is empty because shards.val_fraction is 0" in caplog.text
