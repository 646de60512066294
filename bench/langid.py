"""Benchmark language identification: the clean stage with identification (always on since it
records every document's language) vs without it (the stage's identification replaced by a
no-op, in this process), next to the bare library (py3langid's `classify` on each whole text,
and on the same sample ours reads), and its accuracy (ours on its sample, and the whole text).

    .venv/bin/python bench/langid.py [--docs-per-language 60] [--runs 5]
    .venv/bin/python bench/langid.py --quick | --smoke   # see bench/common.py

The multilingual set is built from material on the machine: the gettext translations under
/usr/share/locale (<lang>/LC_MESSAGES/*.mo; every msgstr of a language's catalogues, in
catalogue order, joined into documents of about --doc-chars characters, and again of about
200), for the languages in LANGUAGES; the expected code is the locale's language (pt_BR -> pt,
zh_CN -> zh). These are user-interface strings, shorter and more technical than prose.

Speed: the stage in one process (clean.workers=1, what the bare peer has), its model loaded
before timing, on the same documents; medians of interleaved runs. The identification's own
speed is the documents over (time on - time off); target >= 0.9x the bare library.
Writes bench/results/langid.json.
"""

from __future__ import annotations

import argparse
import gettext
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pipeline import clean  # noqa: E402
from pipeline.clean import clean_documents  # noqa: E402
from pipeline.config import build_config  # noqa: E402
from pipeline.docstore import write_part  # noqa: E402
from pipeline.filters import KEEP  # noqa: E402
from pipeline.langid import SAMPLE_CHARS, SAMPLE_WINDOWS, _identifier, identify, sample  # noqa: E402
from pipeline.layout import DataRoot  # noqa: E402
from pipeline.records import Document  # noqa: E402

SIZES = {"smoke": (3, 1), "quick": (20, 3), "full": (60, 5)}  # docs per language, runs
LOCALES = Path("/usr/share/locale")
LANGUAGES = ("de", "fr", "es", "it", "pt_BR", "nl", "ru", "ja", "zh_CN", "pl", "sv", "cs", "tr",
             "uk", "fi", "hu", "da")


def catalogue_strings(lang: str) -> list[str]:
    out: list[str] = []
    for mo in sorted((LOCALES / lang / "LC_MESSAGES").glob("*.mo")):
        try:
            with open(mo, "rb") as fh:
                catalog = gettext.GNUTranslations(fh)._catalog  # type: ignore[attr-defined]
        except (OSError, UnicodeDecodeError, ValueError):  # a damaged or odd catalogue
            continue
        for key, value in catalog.items():
            if key and isinstance(value, str) and len(value) > 15:
                out.append(value.replace("&", "").replace("_", ""))
    return out


def multilingual_docs(per_language: int, doc_chars: int) -> list[tuple[str, str]]:
    """(expected code, text) pairs."""
    docs = []
    for lang in LANGUAGES:
        strings, text, made = catalogue_strings(lang), [], 0
        for s in strings:
            text.append(s)
            if sum(map(len, text)) >= doc_chars:
                docs.append((lang.split("_")[0], "\n".join(text)))
                text, made = [], made + 1
                if made >= per_language:
                    break
    return docs


def accuracy(docs: list[tuple[str, str]]) -> tuple[float, dict[str, float]]:
    per: dict[str, list[bool]] = {}
    for code, text in docs:
        per.setdefault(code, []).append(identify(text)[0] == code)
    hits = [h for v in per.values() for h in v]
    return sum(hits) / len(hits), {k: round(sum(v) / len(v), 3) for k, v in per.items()}


def stage_seconds(workdir: Path, texts: list[str], identify_on: bool) -> float:
    root = DataRoot.at(workdir / "root")
    shutil.rmtree(root.path, ignore_errors=True)
    write_part(root.docs, [Document(id=f"{i:064x}", source=f"/bench/{i}", mime="text/plain",
                                    text=t, created_at="2026-01-01")
                           for i, t in enumerate(texts)], number=0)
    # nothing dropped, so both runs write the same documents
    cfg = build_config([{"clean": {"workers": 1, "min_words": 0,
                                   "min_chars": 0, "max_symbol_ratio": 1.0,
                                   "min_alpha_ratio": 0.0, "max_short_line_ratio": 1.0,
                                   "max_repeated_line_ratio": 1.0, "dedup_near": False,
                                   "dedup_exact": False}}])
    saved = clean._language_verdict
    if not identify_on:
        clean._language_verdict = lambda doc, cfg: KEEP  # the stage without identification
    try:
        started = time.perf_counter()
        stats = clean_documents(cfg, root, progress=False)
        seconds = time.perf_counter() - started
    finally:
        clean._language_verdict = saved
    assert stats.seen == len(texts), stats
    return seconds


def bare_seconds(texts: list[str], sampled: bool = False) -> float:
    """classify on each text (or on the sample ours reads of it: the same work as ours)."""
    ident = _identifier()
    started = time.perf_counter()
    for text in texts:
        ident.classify(sample(text) if sampled else text)
    return time.perf_counter() - started


def whole_text_accuracy(docs: list[tuple[str, str]]) -> float:
    ident = _identifier()
    return sum(ident.classify(text)[0] == code for code, text in docs) / len(docs)


def main() -> None:
    from common import add_mode_args, mode, write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs-per-language", type=int, help="full: 60")
    p.add_argument("--doc-chars", type=int, default=1500)
    p.add_argument("--runs", type=int, help="full: 5")
    add_mode_args(p)
    args = p.parse_args()
    for key, value in zip(("docs_per_language", "runs"), SIZES[mode(args)], strict=True):
        if getattr(args, key) is None:
            setattr(args, key, value)
    docs = multilingual_docs(args.docs_per_language, args.doc_chars)
    if not docs:
        raise SystemExit(f"no gettext catalogues under {LOCALES}")
    texts = [t for _, t in docs]
    _identifier()  # the model's load (about 4 s) is not what is measured
    acc, per_language = accuracy(docs)
    short_acc, short_per_language = accuracy(multilingual_docs(args.docs_per_language, 200))
    runs: dict[str, list[float]] = {"off": [], "on": [], "bare": [], "bare_sample": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):  # interleaved
            runs["off"].append(stage_seconds(Path(tmp), texts, False))
            runs["on"].append(stage_seconds(Path(tmp), texts, True))
            runs["bare"].append(bare_seconds(texts))
            runs["bare_sample"].append(bare_seconds(texts, sampled=True))
    med = {k: statistics.median(v) for k, v in runs.items()}
    n = len(texts)
    ident_rate = n / max(med["on"] - med["off"], 1e-9)
    bare_rate = n / med["bare"]
    bare_sample_rate = n / med["bare_sample"]
    result = {
        "documents": n, "languages": len(LANGUAGES), "chars": sum(map(len, texts)),
        "runs": args.runs,
        "stage_off_docs_per_s": round(n / med["off"], 1),
        "stage_on_docs_per_s": round(n / med["on"], 1),
        "identification_docs_per_s": round(ident_rate, 1),
        "bare_library_docs_per_s": round(bare_rate, 1),
        "ratio_identification_vs_bare": round(ident_rate / bare_rate, 3),
        "bare_library_on_our_sample_docs_per_s": round(bare_sample_rate, 1),
        "ratio_identification_vs_bare_on_sample": round(ident_rate / bare_sample_rate, 3),
        "sample_chars": SAMPLE_CHARS, "sample_windows": SAMPLE_WINDOWS,
        "accuracy": round(acc, 4), "accuracy_per_language": per_language,
        "accuracy_bare_whole_text": round(whole_text_accuracy(docs), 4),
        "accuracy_200_chars": round(short_acc, 4),
        "accuracy_200_chars_per_language": short_per_language,
        "seconds": {k: [round(x, 4) for x in v] for k, v in runs.items()},
    }
    print(f"{n} documents in {len(LANGUAGES)} languages ({result['chars']} chars), "
          f"medians of {args.runs} interleaved runs")
    print(f"clean stage, identification off: {result['stage_off_docs_per_s']} docs/s")
    print(f"clean stage, identification on:  {result['stage_on_docs_per_s']} docs/s")
    print(f"ours, identification alone:      {result['identification_docs_per_s']} docs/s")
    print(f"bare py3langid classify:         {result['bare_library_docs_per_s']} docs/s")
    print(f"ratio ours / bare:               {result['ratio_identification_vs_bare']}"
          " (target >= 0.9)")
    print(f"bare classify on our sample:     {result['bare_library_on_our_sample_docs_per_s']}"
          f" docs/s (ratio {result['ratio_identification_vs_bare_on_sample']})")
    print(f"accuracy at ~{args.doc_chars} chars: {acc:.3f} (bare on the whole text "
          f"{result['accuracy_bare_whole_text']:.3f}); per language: {per_language}")
    print(f"accuracy at ~200 chars: {short_acc:.3f}; per language: {short_per_language}")
    write_results("langid", result, args, "py3langid")


if __name__ == "__main__":
    main()
