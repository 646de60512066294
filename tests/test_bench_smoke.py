"""Every benchmark in bench/ in its --smoke mode (tiny sizes, figures meaningless, no timing
asserted), so that none rots; and the README's benchmark table is what bench/results gives."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
# benchmarks following bench/common.py: their smoke run writes a results file with --out
RECORDED = ("extract", "tokenization", "train", "crawl", "pii", "rerun", "scale", "langid",
            "sample", "dedup")
SMOKE_ONLY = ("formats",)  # --smoke, no --out yet
ELSEWHERE = {
    "quality": "tests/test_quality_bench.py runs its --smoke",
}
NOT_BENCHMARKS = {"common", "report", "hardware", "minigpt", "corpus", "quality_data",
                  "quality_summary", "dedup_datatrove",  # helpers, and dedup's peer in its venv
                  "formats_office"}  # one side of formats.py's Office part, in its own process


def _load(name: str):  # noqa: ANN202
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def _smoke(bench: Path, name: str, out: Path | None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(bench / f"{name}.py"), "--smoke"]
    if out is not None:
        cmd += ["--out", str(out)]
    # the repository, and tests/ for the helpers a benchmark shares with the tests (formatkit)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


def test_every_benchmark_is_run_here_or_named_with_the_reason() -> None:
    scripts = {p.stem for p in BENCH.glob("*.py")} - NOT_BENCHMARKS
    assert scripts == set(RECORDED) | set(SMOKE_ONLY) | set(ELSEWHERE)


@pytest.mark.slow
def test_every_benchmark_runs_in_its_smoke_mode(tmp_path: Path) -> None:
    # a copy of bench/: a script that records even its smoke figures writes in the copy
    bench = tmp_path / "bench"
    shutil.copytree(BENCH, bench, ignore=shutil.ignore_patterns("results", "__pycache__"))
    names = list(RECORDED) + list(SMOKE_ONLY)
    outs = {n: tmp_path / f"{n}.json" if n in RECORDED else None for n in names}
    with ThreadPoolExecutor(2) as pool:  # two at a time: most of a smoke run is start-up
        done = dict(zip(names, pool.map(lambda n: _smoke(bench, n, outs[n]), names),
                        strict=True))
    failed = {n: p.stderr[-2000:] for n, p in done.items() if p.returncode}
    assert not failed
    report = _load("report")
    for name in RECORDED:
        record = json.loads(outs[name].read_text())
        assert record["mode"] == "smoke" and record["environment"]["cpu"]
        rows = report.rows_of(name, record)  # its own "table", or report.py's reader of it
        assert rows and all(row["ours"] and row["source"] for row in rows)
    assert report.table(tmp_path).count("\n") == 1  # smoke figures never reach the README


def test_the_readme_table_is_what_the_results_files_give() -> None:
    report = _load("report")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert report.BEGIN in readme and report.END in readme
    assert report.with_table(readme, report.table()) == readme, "run bench/report.py"


def test_the_cpu_peak_is_derived_from_the_cores_clock_and_flags() -> None:
    hardware = _load("hardware")
    zen4 = {"vendor_id": "AuthenticAMD", "cpu family": "25", "flags": "fma avx2 avx512f "
            "avx512_bf16", "model name": "AMD EPYC 9654"}
    assert hardware.flops_per_cycle(zen4) == (32, 64, "AMD Zen 4")
    spr = {"vendor_id": "GenuineIntel", "cpu family": "6", "flags": "avx2 fma avx512f amx_bf16"}
    assert hardware.flops_per_cycle(spr)[:2] == (64, 2048)
    assert hardware.flops_per_cycle({"flags": "sse2"})[:2] == (8, 8)
    assert hardware.gpu_peak("NVIDIA H100 PCIe")["flops"] == 756e12
    assert hardware.gpu_peak("NVIDIA H100 80GB HBM3")["flops"] == 989e12
