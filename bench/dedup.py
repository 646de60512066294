"""Benchmark near-duplicate removal: recall and precision per kind of near-copy and per length,
ours (the clean stage's exact + MinHash LSH dedup at the defaults) next to datatrove's MinHash
(its defaults: 5-grams, 14 buckets x 8 hashes), and the time of each on the same documents.

    python3.11 -m venv /work/venvs/dt && /work/venvs/dt/bin/pip install datatrove \
        "xxhash<4" spacy regex tokenizers
    .venv/bin/python bench/dedup.py --datatrove-python /work/venvs/dt/bin/python \
        [--per-kind 10] [--runs 3] [--quick | --smoke] [--out F]   # see bench/common.py

datatrove runs in a venv of its own (bench/dedup_datatrove.py, which imports nothing of ours):
it pins versions this project's venv should not take. Each side times only its own dedup.

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
import subprocess
import sys
import sysconfig
import tempfile
import time
from importlib.metadata import version as dist_version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pipeline.clean import clean_documents  # noqa: E402
from pipeline.config import build_config  # noqa: E402
from pipeline.docstore import write_part  # noqa: E402
from pipeline.layout import DataRoot  # noqa: E402
from pipeline.records import Document  # noqa: E402

SIZES = {"smoke": (2, 1), "quick": (3, 1), "full": (20, 3)}  # pairs per kind and length, runs
LENGTHS = (30, 100, 300, 1000, 5000)
KINDS = ("edit1", "edit2", "edit5", "edit10", "insert", "delete", "reorder", "boilerplate")
PEER_VERSION: list[str] = []  # datatrove's version, as the peer interpreter reports it
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


def defaults() -> dict:
    """The clean settings that decide near-duplicates, as the config has them."""
    clean = build_config([]).clean
    return {"near_jaccard": clean.near_jaccard, "shingle_words": clean.shingle_words,
            "minhash_perm": clean.minhash_perm}


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


def datatrove(workdir: Path, docs: list[Document], python: str | None) -> tuple[set, float]:
    """Removed ids and seconds of datatrove's MinHash dedup, in this process or, with
    `python`, in that interpreter (a venv of its own: datatrove pins what this project uses)."""
    if python is None:
        from dedup_datatrove import removed_by_datatrove

        return removed_by_datatrove([(d.id, d.text) for d in docs], workdir)
    src, out = workdir / "dt-docs.jsonl", workdir / "dt-out.json"
    src.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in docs),
                   encoding="utf-8")
    run = subprocess.run([python, str(HERE / "dedup_datatrove.py"), str(src), str(workdir),
                          str(out)], capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"{python} bench/dedup_datatrove.py failed:\n{run.stderr[-2000:]}")
    answer = json.loads(out.read_text(encoding="utf-8"))
    PEER_VERSION.append(answer["version"])
    return set(answer["removed"]), answer["seconds"]


def datatrove_available(python: str | None) -> bool:
    if python is not None:
        return True
    try:
        import datatrove  # noqa: F401
    except ImportError:
        return False
    return True


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


def margins(originals: list[Document], others: list[Document], truth: dict) -> dict:
    """How far the defaults' threshold is from each side: the lowest true Jaccard (shingle
    sets) of the copies per kind, and the highest true and estimated Jaccard of a
    non-duplicate with any original (they share the boilerplate)."""
    import numpy as np

    from pipeline.dedup import SIG_DTYPE, fingerprint, shingle_hashes

    clean = build_config([]).clean
    sets = {d.id: set(shingle_hashes(d.text, clean.shingle_words).tolist())
            for d in [*originals, *others]}
    sigs = np.stack([np.frombuffer(fingerprint(d.text, clean).sig, dtype=SIG_DTYPE)
                     for d in originals])
    lowest: dict[str, float] = {}
    nondup = {"true": 0.0, "estimated": 0.0}
    for d in others:
        original, kind, _ = truth[d.id]
        if original is not None:
            a, b = sets[d.id], sets[original]
            lowest[kind] = min(lowest.get(kind, 1.0), len(a & b) / len(a | b))
            continue
        estimates = (sigs == np.frombuffer(fingerprint(d.text, clean).sig, dtype=SIG_DTYPE)
                     ).mean(axis=1)
        trues = [len(sets[d.id] & sets[o.id]) / len(sets[d.id] | sets[o.id]) for o in originals]
        nondup = {"true": max(nondup["true"], max(trues)),
                  "estimated": max(nondup["estimated"], float(estimates.max()))}
    return {"copies_lowest_true_jaccard": {k: round(v, 3) for k, v in lowest.items()},
            "nondup_highest_jaccard": {k: round(v, 3) for k, v in nondup.items()}}


TARGET_KINDS = ("edit1", "edit2", "edit5")  # the target: recall >= 0.95 at every length


def targets(scores: dict, ratio: float | None) -> dict[str, bool]:
    """Which of the issue's targets ours meets at the defaults."""
    low = {k: v["recall"] for k, v in scores.items()
           if k.split("@")[0] in TARGET_KINDS and v["recall"] < 0.95}
    met = {"recall_edits_up_to_5pct": not low, "precision_0.99": scores["all"]["precision"] >= 0.99}
    if ratio is not None:
        met["speed_2x_datatrove"] = ratio >= 2.0
    return met


def report(result: dict) -> None:
    scores, med = result["scores"], result["seconds"]
    print(f"{result['documents']} documents; medians of {result['runs']} interleaved runs")
    peer = "datatrove" in scores
    if peer:
        print(f"ours {med['ours']:.2f} s, datatrove {med['datatrove']:.2f} s: ours "
              f"{result['speed_ratio_ours_vs_datatrove']}x datatrove's speed")
    else:
        print(f"ours {med['ours']:.2f} s (datatrove not installed: no peer run)")
    print(f"{'kind@length':18} {'ours':>6} {'datatrove' if peer else '':>9}")
    for key in scores["ours"]:
        if key != "all":
            other = f"{scores['datatrove'][key]['recall']:9.2f}" if peer else ""
            print(f"{key:18} {scores['ours'][key]['recall']:6.2f} {other}")
    for who in scores:
        a = scores[who]["all"]
        print(f"{who}: recall {a['recall']}, precision {a['precision']} "
              f"({a['false_positives']} false positives)")
    print("targets met:", result["targets"])
    print("margins at the defaults:", result["margins"])


def main() -> None:
    from common import add_mode_args, mode, write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--per-kind", type=int,
                   help="pairs per kind and length, fewer at lengths the text cannot fill "
                        "(full: 20)")
    p.add_argument("--runs", type=int, help="full: 3")
    p.add_argument("--datatrove-python", metavar="PYTHON",
                   help="run datatrove's half in this interpreter (a venv that has datatrove)")
    add_mode_args(p)  # smoke: datatrove only if it is there
    args = p.parse_args()
    for key, value in zip(("per_kind", "runs"), SIZES[mode(args)], strict=True):
        if getattr(args, key) is None:
            setattr(args, key, value)
    peer = datatrove_available(args.datatrove_python)
    if not peer and not args.smoke:
        p.error("datatrove is not importable: pip install datatrove 'xxhash<4' spacy regex "
                "tokenizers into a venv of its own and pass --datatrove-python VENV/bin/python")
    originals, others, truth = dataset(args.per_kind)
    times: dict[str, list[float]] = {"ours": [], **({"datatrove": []} if peer else {})}
    removed: dict[str, set] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):  # interleaved
            removed["ours"], seconds = ours(Path(tmp), originals, others)
            times["ours"].append(seconds)
            if peer:
                removed["datatrove"], seconds = datatrove(Path(tmp), [*originals, *others],
                                                          args.datatrove_python)
                times["datatrove"].append(seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    scores = {k: score(v, originals, truth) for k, v in removed.items()}
    ratio = round(med["datatrove"] / med["ours"], 2) if peer else None
    result = {"documents": len(originals) + len(others), "per_kind": args.per_kind,
              "runs": args.runs, "seconds": med,
              "speed_ratio_ours_vs_datatrove": ratio, "defaults": defaults(),
              "targets": targets(scores["ours"], ratio),
              "margins": margins(originals, others, truth), "scores": scores,
              "datatrove": PEER_VERSION[-1] if PEER_VERSION else
              (dist_version("datatrove") if peer else None)}
    report(result)
    write_results("dedup", result, args, "datasketch")


if __name__ == "__main__":
    main()
