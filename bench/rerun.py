"""What a re-run costs on an unchanged data root of 100k documents: `cllm extract` and
`cllm tokenize` as whole processes, each against the floor of a process that only imports
the same stage and exits, and against what extract's "what is done" cost when it re-read
every docs part (today it reads each part's id record).

    .venv/bin/python bench/rerun.py [--docs 100000] [--runs 5] [--workdir DIR]
    .venv/bin/python bench/rerun.py --quick | --smoke   # see bench/common.py

The data root is built once per workdir by the real stages (ingest of generated text files,
extract, tokenize) and kept for later runs. Prints medians; writes bench/results/rerun.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLLM = [sys.executable, "-m", "flows.shell.cllm"]
WORDS = ("data model token shard crawl page text train batch loss layer head attention vector "
         "weight update step river stone cloud light garden market winter summer").split()
FILES_PER_FOLDER = 1000


def _text(i: int) -> str:
    rng = random.Random(i)
    return f"Document {i}. " + " ".join(rng.choice(WORDS) for _ in range(60)) + "\n"


def write_sources(folder: Path, n: int) -> None:
    for i in range(n):
        sub = folder / f"{i // FILES_PER_FOLDER:04d}"
        if i % FILES_PER_FOLDER == 0:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"doc-{i:06d}.txt").write_text(_text(i), encoding="utf-8")


def cllm(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLLM, "--root", str(root), "-q", *args], capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"cllm {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done


def build(workdir: Path, n: int) -> Path:
    root = workdir / f"root-{n}"
    if (root / "shards" / "manifest.json").is_file():
        return root
    sources = workdir / f"sources-{n}"
    if not sources.is_dir():
        print(f"writing {n} text files ...", file=sys.stderr)
        write_sources(sources, n)
    # small settings: the point is the number of documents, not their size
    settings = ["--set", "clean.min_chars=20", "--set", "clean.min_words=5",
                "--set", "clean.dedup_near=false", "--set", "tokenize.vocab_size=512"]
    for step in (["ingest", str(sources)], ["extract"], ["tokenize"]):
        started = time.monotonic()
        print(f"cllm {step[0]} ...", file=sys.stderr)
        cllm(root, *step, *settings)
        print(f"  {time.monotonic() - started:.0f}s", file=sys.stderr)
    return root


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)
    return time.perf_counter() - started


def old_done_scan(root: Path) -> float:
    """What extract paid to learn what is done before the id records: every part read."""
    code = ("import sys, time; from pipeline.docstore import iter_documents; t = "
            "time.perf_counter(); ids = {d.id for d in iter_documents(sys.argv[1])}; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code, str(root / "docs")], capture_output=True,
                         text=True, check=True)
    return float(out.stdout)


def main() -> int:
    from common import add_mode_args, mode, row, write_results

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, help="documents (default 100000, --quick 10000)")
    p.add_argument("--runs", type=int, help="interleaved runs (default 5, --quick 3)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/cllm-bench-rerun"))
    add_mode_args(p)
    args = p.parse_args()
    size = {"smoke": (200, 1), "quick": (10_000, 3), "full": (100_000, 5)}[mode(args)]
    args.docs, args.runs = args.docs or size[0], args.runs or size[1]
    args.workdir.mkdir(parents=True, exist_ok=True)
    root = build(args.workdir, args.docs)
    settings = ["--set", "clean.min_chars=20", "--set", "clean.min_words=5",
                "--set", "clean.dedup_near=false", "--set", "tokenize.vocab_size=512"]
    commands = {
        "extract": [*CLLM, "--root", str(root), "-q", "extract", *settings],
        "extract_floor": [sys.executable, "-c", "import flows.shell.cllm, docproc.extract"],
        "tokenize": [*CLLM, "--root", str(root), "-q", "tokenize", *settings],
        "tokenize_floor": [sys.executable, "-c",
                           "import flows.shell.cllm, pipeline.tokenization, tokenizers"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):  # interleaved, so drift hits every figure alike
        for name, command in commands.items():
            times[name].append(timed(command))
    scans = [old_done_scan(root) for _ in range(args.runs)]
    med = {name: statistics.median(t) for name, t in times.items()}
    docs = json.loads((root / "shards" / "manifest.json").read_text())["totals"]
    results = {
        "docs_in_root": args.docs, "docs_in_shards": sum(t["docs"] for t in docs.values()),
        "runs": args.runs, "cpu": os.cpu_count(),
        "seconds_median": med, "seconds_all": times,
        "old_extract_done_scan_s_median": statistics.median(scans),
    }
    for stage in ("extract", "tokenize"):
        print(f"cllm {stage} re-run on {args.docs} unchanged documents: {med[stage]:.2f} s "
              f"(a process importing the same code: {med[stage + '_floor']:.2f} s; "
              f"target < 2 s)")
    print(f"reading every docs part to learn what is done (before the id records): "
          f"{results['old_extract_done_scan_s_median']:.2f} s")
    results["table"] = [row(
        f"re-run with nothing new, {args.docs} documents: `cllm extract` / `cllm tokenize`, "
        "whole processes", f"{med['extract']:.2f} / {med['tokenize']:.2f} s",
        f"{med['extract_floor']:.2f} / {med['tokenize_floor']:.2f} s (a process importing "
        "the same code and exiting)", f"{med['extract'] / med['extract_floor']:.1f}x / "
        f"{med['tokenize'] / med['tokenize_floor']:.1f}x of the floor", "< 2 s")]
    write_results("rerun", results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
