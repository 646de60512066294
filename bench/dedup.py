"""Benchmark near-duplicate removal: recall and precision per kind of near-copy and per length,
ours (the clean stage's exact + MinHash LSH dedup at the defaults) next to datatrove's MinHash
(its defaults: 5-grams, 14 buckets x 8 hashes), and the time of each on the same documents.

    pip install datatrove "xxhash<4" spacy   # into .venv: only this benchmark uses them
    .venv/bin/python bench/dedup.py [--per-kind 10] [--runs 3] [--smoke]

Real text: the docstrings of the Python standard library on this machine, as paragraphs.
For each length (30, 100, 300, 1000, 5000 words) and each kind, --per-kind originals (fewer
at 5000 words: the standard library's docstrings hold about 200k words), each
with one near-copy: edits of 1, 2, 5 and 10% of the words (a word replaced by another), a
sentence inserted or deleted every ten, paragraphs reordered, the boilerplate changed (a
header and footer line around the same body); and as many non-duplicates, different bodies
inside the same boilerplate. Originals come first (part 0), then copies and non-duplicates.
A pair counts as found when exactly one of its two documents is removed; every other removal
is a false positive. Medians of interleaved runs; writes bench/results/dedup.json.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import random
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pipeline.clean import clean_documents  # noqa: E402
from pipeline.config import build_config  # noqa: E402
from pipeline.docstore import write_part  # noqa: E402
from pipeline.layout import DataRoot  # noqa: E402
from pipeline.records import Document  # noqa: E402

RESULTS = HERE / "results" / "dedup.json"
LENGTHS = (30, 100, 300, 1000, 5000)
KINDS = ("edit1", "edit2", "edit5", "edit10", "insert", "delete", "reorder", "boilerplate")
HEADERS = ("Documentation for this release. See the index for other topics.",
           "Back to the table of contents | Search | Report a bug on this page")


def paragraphs() -> list[str]:
    """Docstring paragraphs of at least 12 words from the standard library (its tests and
    site-packages apart)."""
    out: list[str] = []
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
                doc = ast.get_docstring(node) or ""
                out += [" ".join(p.split()) for p in doc.split("\n\n") if len(p.split()) >= 12]
    return list(dict.fromkeys(out))  # each once


def body(pool: list[str], rng: random.Random, words: int) -> list[str]:
    """Paragraphs taken from the pool (each used once) up to `words` words, cut to it."""
    paras, count = [], 0
    while count < words:
        p = pool.pop().split()[:words - count]
        paras.append(" ".join(p))
        count += len(p)
    return paras


def sentences(paras: list[str]) -> list[list[str]]:
    return [[s.strip() + "." for s in p.split(". ") if s.strip()] for p in paras]


def near_copy(kind: str, paras: list[str], rng: random.Random, vocab: list[str]) -> list[str]:
    if kind.startswith("edit"):
        words = " \n\n ".join(paras).split(" ")
        slots = [i for i, w in enumerate(words) if w != "\n\n"]
        for i in rng.sample(slots, max(1, round(len(slots) * int(kind[4:]) / 100))):
            words[i] = rng.choice(vocab)
        return " ".join(words).split(" \n\n ")
    if kind in ("insert", "delete"):
        out = []
        for para in sentences(paras):
            kept = []
            for k, s in enumerate(para):
                if kind == "delete" and k % 10 == 5 and len(para) > 1:
                    continue
                kept.append(s)
                if kind == "insert" and k % 10 == 0:
                    kept.append(" ".join(rng.choice(vocab) for _ in range(10)).capitalize() + ".")
            out.append(" ".join(kept))
        return out
    if kind == "reorder":
        out = list(paras)
        rng.shuffle(out)
        return out if out != paras or len(out) == 1 else out[1:] + out[:1]
    return [f"Updated page {rng.randrange(1000)}: see also the notes.", *paras,
            "Last changed on a later date."]  # boilerplate changed


def dataset(per_kind_max: int, seed: int = 0) -> tuple[list[Document], list[Document], dict]:
    """(originals, others, truth): truth maps a copy's id to (original id, kind, length) and
    a non-duplicate's id to (None, "nondup", length)."""
    rng = random.Random(seed)
    material = paragraphs()
    words = sum(len(p.split()) for p in material)
    vocab = sorted({w for p in material for w in p.split() if w.isalpha()})
    originals, others, truth = [], [], {}

    def doc(key: str, paras: list[str], boiler: bool = True) -> Document:
        text = "\n\n".join([HEADERS[0], *paras, HEADERS[1]] if boiler else paras)
        return Document(id=hashlib.sha256(key.encode()).hexdigest(), source=key, mime="text/plain",
                        text=text, created_at="2026-01-01")

    for length in LENGTHS:
        # a fresh pool per length, no paragraph twice within one: as many as it has text for
        pool = list(material)
        rng.shuffle(pool)
        per_kind = min(per_kind_max, int(words / (1.2 * (len(KINDS) + 1) * length)))
        for kind in KINDS:
            for i in range(per_kind):
                paras = body(pool, rng, length)
                original = doc(f"{length}/{kind}/{i}", paras)
                copy_paras = near_copy(kind, paras, rng, vocab)
                copy = doc(f"{length}/{kind}/{i}/copy", copy_paras, boiler=kind != "boilerplate")
                originals.append(original)
                others.append(copy)
                truth[copy.id] = (original.id, kind, length)
        for i in range(per_kind):
            nondup = doc(f"{length}/nondup/{i}", body(pool, rng, length))
            others.append(nondup)
            truth[nondup.id] = (None, "nondup", length)
    return originals, others, truth


def ours(workdir: Path, originals: list[Document], others: list[Document]) -> tuple[set, float]:
    """Removed ids and seconds of the clean stage (filters off, dedup at its defaults)."""
    root = DataRoot.at(workdir / "ours")
    shutil.rmtree(root.path, ignore_errors=True)
    write_part(root.docs, originals, number=0)
    write_part(root.docs, others, number=1)
    cfg = build_config([{"clean": {"workers": 1, "min_chars": 0, "min_words": 0,
                                   "min_alpha_ratio": 0.0, "max_symbol_ratio": 1.0,
                                   "max_repeated_line_ratio": 1.0, "max_short_line_ratio": 1.0,
                                   "pii": "off"}}])
    started = time.perf_counter()
    clean_documents(cfg, root, progress=False)
    seconds = time.perf_counter() - started
    import sqlite3

    db = sqlite3.connect(root.dedup_index)
    removed = {row[0] for row in db.execute("SELECT id FROM docs WHERE status != 'kept'")}
    db.close()
    return removed, seconds


def datatrove(workdir: Path, originals: list[Document], others: list[Document]
              ) -> tuple[set, float]:
    from datatrove.data import Document as DtDocument
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )

    base = workdir / "datatrove"
    shutil.rmtree(base, ignore_errors=True)
    docs = [DtDocument(text=d.text, id=d.id) for d in [*originals, *others]]
    config = MinhashConfig()
    kept: list[str] = []

    def collect(data, rank: int = 0, world_size: int = 1):  # noqa: ANN001, ANN202
        for d in data:
            kept.append(d.id)
            yield d

    stages = [
        ([docs, MinhashDedupSignature(output_folder=str(base / "sigs"), config=config)], 1),
        ([MinhashDedupBuckets(input_folder=str(base / "sigs"), output_folder=str(base / "bkt"),
                              config=config)], config.num_buckets),
        ([MinhashDedupCluster(input_folder=str(base / "bkt"), output_folder=str(base / "rm"),
                              config=config)], 1),
        ([docs, MinhashDedupFilter(input_folder=str(base / "rm")), collect], 1),
    ]
    started = time.perf_counter()
    for i, (pipeline, tasks) in enumerate(stages):
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1,
                              logging_dir=str(base / f"logs{i}")).run()
    seconds = time.perf_counter() - started
    return {d.id for d in docs} - set(kept), seconds


def score(removed: set, originals: list[Document], truth: dict) -> dict[str, dict]:
    """Recall and precision per kind and length (the non-duplicates' row: false positives)."""
    rows: dict[str, dict] = {}
    pairs = {k: v for k, v in truth.items() if v[0] is not None}
    for copy, (original, kind, length) in pairs.items():
        row = rows.setdefault(f"{kind}@{length}", {"pairs": 0, "found": 0})
        row["pairs"] += 1
        row["found"] += (copy in removed) != (original in removed)
    wrong = {i for i in removed if truth.get(i, ("x",))[0] is None}  # non-dups, originals
    wrong |= {c for c, (o, _, _) in pairs.items() if c in removed and o in removed}
    for row in rows.values():
        row["recall"] = round(row["found"] / row["pairs"], 3)
    found = sum(r["found"] for r in rows.values())
    rows["all"] = {"pairs": len(pairs), "found": found, "false_positives": len(wrong),
                   "recall": round(found / len(pairs), 3),
                   "precision": round(found / max(found + len(wrong), 1), 3)}
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--per-kind", type=int, default=20,
                   help="pairs per kind and length (fewer at lengths the text cannot fill)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="2 per kind, one run")
    args = p.parse_args()
    if args.smoke:
        args.per_kind, args.runs = 2, 1
    originals, others, truth = dataset(args.per_kind)
    times: dict[str, list[float]] = {"ours": [], "datatrove": []}
    removed: dict[str, set] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):  # interleaved
            removed["ours"], seconds = ours(Path(tmp), originals, others)
            times["ours"].append(seconds)
            removed["datatrove"], seconds = datatrove(Path(tmp), originals, others)
            times["datatrove"].append(seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    scores = {k: score(v, originals, truth) for k, v in removed.items()}
    result = {"documents": len(originals) + len(others), "per_kind": args.per_kind,
              "runs": args.runs, "smoke": args.smoke, "seconds": med,
              "speed_ratio_ours_vs_datatrove": round(med["datatrove"] / med["ours"], 2),
              "scores": scores}
    print(f"{result['documents']} documents; medians of {args.runs} interleaved runs")
    print(f"ours {med['ours']:.2f} s, datatrove {med['datatrove']:.2f} s: ours "
          f"{result['speed_ratio_ours_vs_datatrove']}x datatrove's speed")
    print(f"{'kind@length':18} {'ours':>6} {'datatrove':>9}")
    for key in scores["ours"]:
        if key != "all":
            print(f"{key:18} {scores['ours'][key]['recall']:6.2f} "
                  f"{scores['datatrove'][key]['recall']:9.2f}")
    for who in ("ours", "datatrove"):
        a = scores[who]["all"]
        print(f"{who}: recall {a['recall']}, precision {a['precision']} "
              f"({a['false_positives']} false positives)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
