"""bench/scale.py: its generated text, its summaries and merges, and every stage in its smoke
mode (figures meaningless, no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_bench_smoke import BENCH, ROOT, _load

scale = _load("scale")


def _run(seconds: float, units: float = 10.0, rss: float = 100.0, rerun: float = 0.01
         ) -> dict[str, float]:
    return scale.with_rates({"units": units, "seconds": seconds, "cpu_s": seconds,
                             "peak_rss_mb": rss, "rerun_seconds": rerun})


def test_documents_are_prose_of_the_sizes_asked_with_copies_at_the_known_rates() -> None:
    tokenization = _load("tokenization")
    copies: dict[str, int] = {}
    docs = list(scale.with_duplicates(
        tokenization.generated_documents(2.0, seed=3, sizes=scale.DOC_BYTES), copies))
    sizes = [len(d.text.encode()) for d in docs]
    assert min(sizes) >= scale.DOC_BYTES[0] and max(sizes) < 2 * scale.DOC_BYTES[1]
    assert 2500 < sum(sizes) / len(sizes) < 4500  # log-uniform 0.5-10 kB: ~3.5 kB
    originals = len(docs) - sum(copies.values())
    assert 0.6 * scale.NEAR_RATE < copies["near"] / originals < 1.6 * scale.NEAR_RATE
    assert 0.4 * scale.EXACT_RATE < copies["exact"] / originals < 2.0 * scale.EXACT_RATE
    words = {w for d in docs[:50] for w in d.text.split()}
    assert len(words) > 3000  # a vocabulary, not repeated lines
    assert len({d.id for d in docs}) == len(docs)


def test_the_summary_compares_the_largest_factor_with_the_smallest_and_names_misses() -> None:
    runs = {"1": _run(1.0, units=10, rss=100), "16": _run(20.0, units=160, rss=200, rerun=2.0),
            "4": _run(4.0, units=40, rss=120)}
    got = scale.summarise(runs)
    assert got["factors"] == "16x over 1x"
    assert got["time_per_unit"] == 1.25 and got["peak_rss"] == 2.0
    assert got["rerun_share"] == 0.1
    assert got["misses"] == ["peak_rss", "rerun_share"]
    assert scale.summarise({"1": _run(1.0), "4": _run(4.0, units=40)})["misses"] == []


def test_a_merge_adds_factors_keeps_other_stages_and_drops_runs_of_another_base(
        tmp_path: Path) -> None:
    before = {"stages": {
        "extract": {"base": 3125, "runs": {"1": _run(1.0), "4": _run(4.0)}},
        "crawl": {"base": 1250, "runs": {"1": _run(1.0)}}}}
    previous = tmp_path / "scale.json"
    previous.write_text(json.dumps(before))
    now = {"extract": {"base": 3125, "runs": {"4": _run(5.0), "16": _run(16.0)}},
           "crawl": {"base": 100, "runs": {"4": _run(2.0)}}}
    got = scale.merged(previous, now)
    assert sorted(got["extract"]["runs"], key=int) == ["1", "4", "16"]
    assert got["extract"]["runs"]["4"]["seconds"] == 5.0  # measured now replaces before
    assert list(got["crawl"]["runs"]) == ["4"]  # another 1x size: the old runs do not compare
    assert scale.merged(tmp_path / "none.json", now) == now


def test_a_merged_row_names_the_machine_of_each_of_its_runs(tmp_path: Path) -> None:
    """Runs merged from two sessions ran on two machines: the README row names both; an old
    file's runs, which did not record theirs, get the file's."""
    report = _load("report")
    xeon = {"date": "2026-12-02T15:00:00+00:00", "cpu": "Intel(R) Xeon(R) Processor",
            "load_avg_1m": 2.4}
    epyc = {"date": "2026-12-03T16:00:00+00:00", "cpu": "AMD EPYC", "load_avg_1m": 0.5}
    previous = tmp_path / "scale.json"
    previous.write_text(json.dumps({"environment": xeon, "stages": {
        "extract": {"base": 3125, "runs": {"1": _run(1.0)}}}}))
    now = {"extract": {"base": 3125, "runs": {"4": {**_run(4.0), "environment": epyc}}}}
    got = scale.merged(previous, now)
    assert got["extract"]["runs"]["1"]["environment"] == xeon
    got["extract"]["summary"] = scale.summarise(got["extract"]["runs"])
    [row] = scale.table(got)
    [shown] = report.rows_of("scale", {"environment": epyc, "table": [row]})
    assert shown["source"].endswith(
        "(2026-12-02, Intel Xeon, load 2.4; 2026-12-03, AMD EPYC, load 0.5)")


def test_only_whole_generated_pdf_files_are_measured() -> None:
    assert scale.whole_files(3125) == 3125 and scale.whole_files(20) == 25
    assert scale.whole_files(50_000) % scale.PDF_PAGES_PER_FILE == 0


@pytest.mark.slow
def test_every_stage_runs_at_two_factors_in_the_smoke_mode_and_merges(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}

    def smoke(*args: str) -> dict:
        done = subprocess.run([sys.executable, str(BENCH / "scale.py"), "--smoke", "--out",
                               str(out), "--workdir", str(tmp_path), *args],
                              capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(out.read_text())

    record = smoke()
    assert list(record["stages"]) == list(scale.STAGES)
    for stage, got in record["stages"].items():
        assert sorted(got["runs"]) == ["1", "2"], stage
        for run in got["runs"].values():
            assert run["units"] > 0 and run["peak_rss_mb"] > 0 and run["cpu_s"] > 0
            assert run["rerun_seconds"] > 0
    assert record["stages"]["extract"]["runs"]["2"]["units"] == 50  # two whole files
    assert record["stages"]["crawl"]["runs"]["2"]["stored"] >= 24
    for run in record["stages"]["clean"]["runs"].values():  # dedup finds the copies made
        assert run["dropped"].get("near_duplicate", 0) == run["copies_made"].get("near", 0)
        assert run["dropped"].get("exact_duplicate", 0) == run["copies_made"].get("exact", 0)
    assert len(record["table"]) == len(scale.STAGES)
    again = smoke("--stages", "crawl", "--factors", "4", "--merge")
    assert sorted(again["stages"]["crawl"]["runs"], key=int) == ["1", "2", "4"]
    assert again["stages"]["extract"] == record["stages"]["extract"]
