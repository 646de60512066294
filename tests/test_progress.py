"""Stage statistics count every outcome with its reason; progress logs lines off a terminal."""

from __future__ import annotations

import logging

import pytest

from pipeline import progress as progress_mod
from pipeline.progress import Progress
from pipeline.records import Failure
from pipeline.stats import StageStats


def test_stats_count_reasons_and_summarise() -> None:
    stats = StageStats(stage="clean", unit_name="tokens")
    stats.keep(3)
    stats.drop("too_short")
    stats.drop("too_short")
    stats.drop("near_duplicate")
    stats.skip("already_done")
    stats.fail(Failure(source="a", stage="clean", error="corrupt", message="bad"))
    stats.units = 1200
    stats.finish()
    assert stats.seen == 8 and stats.kept == 3 and stats.n_failed == 1
    line = stats.summary()
    assert line.startswith("clean: 8 seen, 3 kept")
    assert "3 dropped (too_short=2, near_duplicate=1)" in line
    assert "1 skipped (already_done=1)" in line and "1 failed (corrupt=1)" in line
    assert "1200 tokens" in line
    as_dict = stats.to_dict()
    assert as_dict["dropped"] == {"too_short": 2, "near_duplicate": 1}
    assert as_dict["failures"][0]["source"] == "a"


def test_progress_logs_periodic_lines_without_a_terminal(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_mod, "LOG_EVERY_S", 0.0)
    stats = StageStats(stage="extract")
    with caplog.at_level(logging.INFO, logger="pipeline.progress"):
        with Progress(stats, total=3, unit="doc") as bar:
            for _ in range(3):
                bar.update(pages=7)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[-1].startswith("extract: 3/3 docs") and "pages=7" in lines[-1]
