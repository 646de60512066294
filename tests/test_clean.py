"""Text normalisation and the quality filters: each drop has its reason, and reasons are counted."""

from __future__ import annotations

import random

import pytest
from docsite import LISTINGS, TUTORIAL_PROSE
from test_dataset_support import doc_id, make_text

from pipeline.clean import clean_documents, iter_clean_documents
from pipeline.config import CleanConfig, build_config
from pipeline.dedup import DedupIndex
from pipeline.docstore import write_part
from pipeline.filters import (
    KEEP,
    REASONS,
    Drop,
    normalize_text,
    quality_verdict,
    reads_as_prose,
    text_stats,
)
from pipeline.layout import DataRoot
from pipeline.records import Document

PROSE = make_text(random.Random(0), 200)


def test_normalize_text() -> None:
    raw = ("\ufeff\n\nTitle\r\nline one  \t\r\n\r\n\r\n\r\nline\u200b two\x00\x07\n"
           "cafe\u0301 \ud800end   \n\n\n")
    assert normalize_text(raw) == "Title\nline one\n\nline two\ncafé end"
    assert normalize_text("keep\ttabs and  inner  spaces\n\nand one blank line") == \
        "keep\ttabs and  inner  spaces\n\nand one blank line"


def _lines(*lines: str) -> str:
    return "\n".join(lines)


CASES = {
    "too_short": "A few words only.",
    "too_few_words": "Supercalifragilisticexpialidocious " * 8,
    "low_alpha": " ".join(f"{n} {n * 7} {n * 13}" for n in range(100, 200)) + " and words",
    "symbol_heavy": " ".join(f"{w}(){{}}" for w in PROSE.split()[:60]),
    "repeated_lines": _lines(*(["Click here to subscribe to our newsletter today!"] * 8),
                             PROSE[:400]),
    "short_lines": _lines(*[f"Item {w}" for w in PROSE.split()[:60]]),
}


@pytest.mark.parametrize("reason", REASONS)
def test_each_filter_drops_with_its_reason(reason: str) -> None:
    verdict = quality_verdict(normalize_text(CASES[reason]), CleanConfig())
    assert isinstance(verdict, Drop) and verdict.reason == reason, verdict
    assert verdict.detail  # says which figure failed


def test_ordinary_prose_is_kept() -> None:
    assert quality_verdict(PROSE, CleanConfig()) is KEEP
    st = text_stats(PROSE, 20, 4)
    assert st.alpha_ratio > 0.9 and st.symbol_ratio < 0.05 and st.repeated_line_chars == 0


def test_thresholds_come_from_the_config() -> None:
    text = CASES["repeated_lines"]
    assert quality_verdict(text, CleanConfig(max_repeated_line_ratio=0.95)) is KEEP
    assert quality_verdict(PROSE, CleanConfig(min_chars=len(PROSE) + 1)) == \
        Drop("too_short", f"{len(PROSE)} chars < {len(PROSE) + 1}")
    assert quality_verdict(PROSE, CleanConfig(min_alpha_ratio=0.99)).reason == "low_alpha"


def test_clean_stage_counts_every_reason_and_keeps_normalised_text(root: DataRoot) -> None:
    docs = [Document(id=doc_id(reason), source=f"/{reason}.txt", mime="text/plain", text=text)
            for reason, text in CASES.items()]
    docs.append(Document(id=doc_id("good"), source="/good.txt", mime="text/plain",
                         text=PROSE.replace("\n\n", "\r\n\r\n\r\n") + "   "))
    write_part(root.docs, docs)
    cfg = build_config([{"clean": {"workers": 1}}])
    stats = clean_documents(cfg, root, progress=False)
    assert stats.seen == 7 and stats.kept == 1
    assert dict(stats.dropped) == dict.fromkeys(REASONS, 1)
    assert [d.text for d in iter_clean_documents(root, ["part-00000.jsonl.zst"])] == [PROSE]
    with DedupIndex(root.dedup_index, cfg.clean) as index:
        assert index.decision(doc_id("symbol_heavy"))[0] == "symbol_heavy"
        assert index.decision(doc_id("good")) == ("kept", "")
        assert index.counts()["kept"] == 1


# --- repeated lines: code repeats by nature, boilerplate sentences do not ------------------


def _tutorial_text() -> str:
    """The tutorial page of tests/docsite.py as extraction leaves it: prose, and the whole
    module listed again after each step, as extending/newtypes_tutorial.html does."""
    parts = [TUTORIAL_PROSE[0]]
    for prose, listing in zip(TUTORIAL_PROSE[1:], LISTINGS, strict=True):
        parts += [prose, listing]
    return normalize_text("\n\n".join(parts))


def test_a_tutorial_whose_code_listings_repeat_is_kept() -> None:
    text = _tutorial_text()
    assert quality_verdict(text, CleanConfig()) is KEEP
    assert text_stats(text, 20, 4).repeated_line_ratio < 0.05  # its prose never repeats
    # counting every repeated line, as before: more than half the page "repeats"
    assert text_stats(text, 20, 0).repeated_line_ratio > 0.5
    assert quality_verdict(text, CleanConfig(repeated_line_min_words=0)).reason == \
        "repeated_lines"


def test_a_page_of_repeated_boilerplate_sentences_is_still_dropped() -> None:
    teasers = [s.strip() + "." for s in PROSE.replace("\n", " ").split(".")[:6]]
    posts = [f"Post number {n}\nPosted by admin in Uncategorized\n{teaser}\n"
             "Read more about this article on our blog\n"
             "Share this post on Facebook, Twitter and LinkedIn"
             for n, teaser in enumerate(teasers, 1)]
    text = normalize_text("\n\n".join(posts))
    verdict = quality_verdict(text, CleanConfig())
    assert isinstance(verdict, Drop) and verdict.reason == "repeated_lines", verdict
    assert text_stats(text, 20, 4).repeated_line_ratio > 0.3


@pytest.mark.parametrize(("line", "prose"), [
    ("Click here to subscribe to our newsletter today!", True),
    ("Posted by admin in Uncategorized on March 3, 2021", True),
    ("“Why is Python Installed on my Computer?” FAQ", True),
    ("return NULL;", False),
    ('if (PyModule_AddObject(m, "Custom", (PyObject *) &CustomType) < 0) {', False),
    ("Custom_init(CustomObject *self, PyObject *args, PyObject *kwds)", False),
    ("static PyObject *", False),
    ("Methods defined here:", False),  # three words: a heading, not a sentence
    ("Previous topic", False),
])
def test_which_repeated_lines_count(line: str, prose: bool) -> None:
    assert reads_as_prose(line, 4) is prose
    assert reads_as_prose(line, 0)  # 0: every line counts
