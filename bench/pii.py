"""Benchmark PII scrubbing: MB/s of the clean stage with clean.pii = "replace" vs "off" on the
same generated documents (prose with an e-mail address, phone number, IP address or key in
about one paragraph in ten), and of `scrub` alone on their texts.

    .venv/bin/python bench/pii.py [--mb 20] [--runs 5] [--smoke]

The stage runs in one process (clean.workers=1); medians of interleaved runs.
Writes bench/results/pii.json.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pipeline.clean import clean_documents  # noqa: E402
from pipeline.config import build_config  # noqa: E402
from pipeline.docstore import write_part  # noqa: E402
from pipeline.layout import DataRoot  # noqa: E402
from pipeline.pii import scrub  # noqa: E402
from pipeline.records import Document  # noqa: E402

WORDS = ("the of and to in is was for that with as on by at from which this be are or had "
         "not but have were their one all been has there when who more they into time than "
         "river mountain garden winter harbour library engine letter market village station "
         "version 3.12.1 released 2026-01-01 table 1,234.56 value 0.5 commit 4f9d2a1b").split()
PII = ("mail alice{n}@example.com", "call +1 415 555 {n:04d}", "host 10.0.{m}.{k}",
       "key AKIAIOSFODNN7EXAMPL{c}", 'password = "pw{n}"')


def documents(mb: float, seed: int = 0) -> list[Document]:
    rng = random.Random(seed)
    docs, size, i = [], 0, 0
    while size < mb * 1e6:
        paragraphs = []
        for _ in range(rng.randint(3, 12)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(40, 120))]
            if rng.random() < 0.1:
                n = rng.randrange(10_000)
                words.insert(rng.randrange(len(words)), rng.choice(PII).format(
                    n=n, m=n % 256, k=n // 256 % 256, c=chr(65 + n % 26)))
            paragraphs.append(" ".join(words) + ".")
        text = "\n\n".join(paragraphs)
        docs.append(Document(id=f"{i:064x}", source=f"/bench/{i}", mime="text/plain", text=text,
                             created_at="2026-01-01"))
        size += len(text.encode())
        i += 1
    return docs


def stage_seconds(workdir: Path, docs: list[Document], pii: str) -> float:
    root = DataRoot.at(workdir / "root")
    shutil.rmtree(root.path, ignore_errors=True)
    for k in range(0, len(docs), 200):
        write_part(root.docs, docs[k:k + 200])
    cfg = build_config([{"clean": {"workers": 1, "pii": pii}}])
    started = time.perf_counter()
    clean_documents(cfg, root, progress=False)
    return time.perf_counter() - started


def main() -> None:
    from common import add_mode_args, mode, write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=float, help="generated prose (default 20, --quick 5)")
    p.add_argument("--runs", type=int, help="interleaved runs (default 5, --quick 3)")
    add_mode_args(p)
    args = p.parse_args()
    size = {"smoke": (1.0, 1), "quick": (5.0, 3), "full": (20.0, 5)}[mode(args)]
    args.mb, args.runs = args.mb or size[0], args.runs or size[1]
    docs = documents(args.mb)
    mb = sum(len(d.text.encode()) for d in docs) / 1e6
    runs: dict[str, list[float]] = {"off": [], "replace": [], "scrub": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):  # interleaved
            for mode in ("off", "replace"):
                runs[mode].append(stage_seconds(Path(tmp), docs, mode))
            started = time.perf_counter()
            replaced = sum(sum(scrub(d.text)[1].values()) for d in docs)
            runs["scrub"].append(time.perf_counter() - started)
    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {"mb": round(mb, 2), "documents": len(docs), "replaced": replaced,
              "runs": args.runs,
              "clean_off_mb_per_s": round(mb / med["off"], 2),
              "clean_pii_mb_per_s": round(mb / med["replace"], 2),
              "ratio_on_vs_off": round(med["off"] / med["replace"], 3),
              "scrub_alone_mb_per_s": round(mb / med["scrub"], 2),
              "seconds": {k: [round(x, 3) for x in v] for k, v in runs.items()}}
    print(f"{mb:.1f} MB, {len(docs)} documents, {replaced} items replaced; medians of "
          f"{args.runs} interleaved runs")
    print(f"clean, pii off:     {result['clean_off_mb_per_s']} MB/s")
    print(f"clean, pii replace: {result['clean_pii_mb_per_s']} MB/s "
          f"({result['ratio_on_vs_off']}x of off)")
    print(f"scrub alone:        {result['scrub_alone_mb_per_s']} MB/s")
    write_results("pii", result, args)


if __name__ == "__main__":
    main()
