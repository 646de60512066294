"""How cost grows with the data: clean (with dedup) and tokenize at 1x, 4x and 16x their input.

    .venv/bin/python bench/scale.py [--base 64]      # MB of text at 1x: 64 gives 1 GB at 16x
    .venv/bin/python bench/scale.py --quick | --smoke

Each size runs in a fresh process: generated documents are written as docs parts (untimed),
then `clean_documents` (quality filters, exact and near dedup, its worker processes at every
size) and `tokenize_dataset` (tokenizer training, encoding, shards), then the shards again
from scratch with the tokenizer just trained given (encoding and shards alone) are timed,
each with its peak RSS (this process and its workers, sampled every 20 ms), and each is run
again with nothing new.

The text looks like prose, not repeated lines: a Zipf vocabulary of 30k words (common English
words first), sentences of 5-28 words, paragraphs of 2-7 sentences, documents of 1-20 kB
(log-uniform); and near-duplicates at a known rate: NEAR_RATE of the documents are an
earlier one with 1% of its words changed, EXACT_RATE exact copies.

Targets (issue 16): time per MB within 1.25x from 1x to 16x, peak RSS within 1.5x, a re-run
with nothing new under 5% of the first run's time. Writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tokenization import PeakRss, generated_documents, reset_shards, write_docs

from pipeline.records import Document

FACTORS = (1, 4, 16)
NEAR_RATE = 0.05  # share of documents that are a near-copy (1% of words changed) of another
EXACT_RATE = 0.02  # share that are exact copies
STAGES = {"clean": "clean + dedup", "tokenize": "tokenize (train the BPE + shards)",
          "shards": "tokenize with that tokenizer given (encode + shards)"}
SIZES = {"smoke": 0.1, "quick": 1.0, "full": 64.0}  # MB at 1x


def with_duplicates(docs: Iterator[Document], copies: dict[str, int], seed: int = 7
                    ) -> Iterator[Document]:
    """The documents, with near and exact copies of earlier ones mixed in at known rates
    (counted in `copies`)."""
    rng = random.Random(seed)
    kept: list[Document] = []
    for n, doc in enumerate(docs):
        yield doc
        if len(kept) < 200:  # small: this process's RSS is what the stages measure
            kept.append(doc)
        else:
            kept[rng.randrange(len(kept))] = doc  # a reservoir: copies from all over the run
        draw = rng.random()
        if draw < EXACT_RATE + NEAR_RATE:
            original = rng.choice(kept)
            kind = "exact" if draw < EXACT_RATE else "near"
            copies[kind] = copies.get(kind, 0) + 1
            text = original.text if kind == "exact" else _edit(original.text, rng)
            yield Document(id=f"{n:056x}dup{draw:.6f}"[:64].ljust(64, "0"),
                           source=f"{original.source}#copy{n}", mime="text/plain", text=text,
                           created_at=original.created_at)


def _edit(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    for _ in range(max(1, len(words) // 100)):
        words[rng.randrange(len(words))] = rng.choice(("river", "stone", "lantern", "quiet"))
    return " ".join(words)


def run_size(mb: float, workdir: Path) -> dict[str, Any]:
    """One size in this process: write, clean, tokenize, then both again with nothing new."""
    from pipeline import clean
    from pipeline.clean import clean_documents
    from pipeline.config import build_config
    from pipeline.layout import DataRoot
    from pipeline.tokenization import tokenize_dataset

    clean.POOL_MIN_BYTES = 0  # clean workers at every size (as at 16x), so the sizes compare
    root = DataRoot.at(Path(tempfile.mkdtemp(prefix="scale-", dir=workdir)))
    try:
        copies: dict[str, int] = {}
        sizes: list[int] = []

        def counted(docs: Iterator[Document]) -> Iterator[Document]:
            for doc in docs:
                sizes.append(len(doc.text.encode()))
                yield doc

        # streamed to disk, never held: the RSS measured below is the stages', not the input's
        write_docs(root, counted(with_duplicates(generated_documents(mb, seed=3), copies)))
        text_mb = sum(sizes) / 1e6
        cfg = build_config([{"tokenize": {"vocab_size": 8192}}])
        tokenizer = root.path / "given-tokenizer.json"
        given = build_config([{"tokenize": {"vocab_size": 8192, "tokenizer": str(tokenizer)}}])

        def shards_only() -> Any:  # the tokenizer trained above given: encoding and shards
            shutil.copyfile(root.tokenizer_json, tokenizer)
            reset_shards(root)
            return tokenize_dataset(given, root, progress=False)

        out: dict[str, Any] = {"mb": round(text_mb, 2), "documents": len(sizes),
                               "copies_made": copies}
        for stage, call in (("clean", lambda: clean_documents(cfg, root, progress=False)),
                            ("tokenize", lambda: tokenize_dataset(cfg, root, progress=False)),
                            ("shards", shards_only)):
            with PeakRss() as peak:
                began = time.perf_counter()
                stats = call()
                seconds = time.perf_counter() - began
            again = time.perf_counter()
            if stage == "shards":
                tokenize_dataset(given, root, progress=False)
            else:
                call()
            out[stage] = {"seconds": round(seconds, 3), "s_per_mb": round(seconds / text_mb, 4),
                          "peak_rss_mb": round(peak.peak_total / 2**20, 1),
                          "peak_rss_self_mb": round(peak.peak_self / 2**20, 1),
                          "rerun_seconds": round(time.perf_counter() - again, 3),
                          "kept": stats.kept, "dropped": dict(stats.dropped)}
        return out
    finally:
        shutil.rmtree(root.path, ignore_errors=True)


def child(mb: float, workdir: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(mb), "--workdir", str(workdir)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"scale child at {mb} MB failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    small, large = runs[min(runs)], runs[max(runs)]
    summary = {}
    for stage in STAGES:
        a, b = small[stage], large[stage]
        summary[stage] = {
            "time_per_mb_16x_over_1x": round(b["s_per_mb"] / a["s_per_mb"], 3),
            "peak_rss_16x_over_1x": round(b["peak_rss_mb"] / a["peak_rss_mb"], 3),
            "rerun_share_of_first": {f: round(runs[f][stage]["rerun_seconds"] /
                                              runs[f][stage]["seconds"], 4) for f in runs}}
    return summary


def table(base: float, runs: dict[int, dict[str, Any]], summary: dict[str, Any]
          ) -> list[dict[str, str]]:
    from common import row

    sizes = " / ".join(f"{runs[f]['mb']:.0f} MB ({runs[f]['documents']} docs)" for f in runs)
    rows = []
    for stage, what in STAGES.items():
        s = summary[stage]
        per = " / ".join(f"{runs[f][stage]['s_per_mb']:.2f}" for f in runs)
        rss = " / ".join(f"{runs[f][stage]['peak_rss_mb']:.0f}" for f in runs)
        rerun = max(s["rerun_share_of_first"].values())
        rows.append(row(f"scale: {what} at 1x / 4x / 16x = {sizes}",
                        f"{per} s per MB; peak RSS {rss} MB; re-run ≤ {rerun:.1%} of the first",
                        "", f"time/MB {s['time_per_mb_16x_over_1x']:.2f}x, RSS "
                        f"{s['peak_rss_16x_over_1x']:.2f}x (16x over 1x)",
                        "≤ 1.25x, ≤ 1.5x, re-run < 5%"))
    return rows


def main() -> None:
    from common import add_mode_args, mode, write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", type=float, help="MB of text at 1x (full 64: 1 GB at 16x)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    p.add_argument("--child", type=float, help=argparse.SUPPRESS)
    add_mode_args(p)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(run_size(args.child, args.workdir)))
        return
    base = args.base or SIZES[mode(args)]
    factors = (1, 2) if args.smoke else FACTORS  # smoke: the code paths, not the curve
    runs: dict[int, dict[str, Any]] = {}
    for factor in factors:
        runs[factor] = child(base * factor, args.workdir)
        r = runs[factor]
        print(f"{factor:2d}x: {r['mb']:.1f} MB, {r['documents']} documents ({r['copies_made']} "
              "copies made); " + "; ".join(
            f"{st} {r[st]['seconds']:.1f} s ({r[st]['s_per_mb']:.2f} s/MB), peak RSS "
            f"{r[st]['peak_rss_mb']:.0f} MB, re-run {r[st]['rerun_seconds']:.2f} s, dropped "
            f"{r[st]['dropped']}"
            for st in STAGES), flush=True)
    summary = summarise(runs)
    for stage, s in summary.items():
        print(f"{stage}: time per MB 16x/1x {s['time_per_mb_16x_over_1x']:.2f}x (target <= "
              f"1.25x), peak RSS {s['peak_rss_16x_over_1x']:.2f}x (<= 1.5x), re-run share "
              f"{s['rerun_share_of_first']} (< 5%)")
    write_results("scale", {
        "base_mb": base, "factors": list(factors), "near_rate": NEAR_RATE,
        "exact_rate": EXACT_RATE, "runs": {str(f): r for f, r in runs.items()},
        "summary": summary, "table": table(base, runs, summary),
        "not_measured": "extract (50k PDF pages) and crawl (20k loopback pages) at scale"}, args)


if __name__ == "__main__":
    main()
