"""Text normalisation and the quality filters: each drop has its reason, and reasons are counted."""

from __future__ import annotations

import random

import pytest
from test_dataset_support import doc_id, make_text

from pipeline.clean import KEEP, REASONS, Drop, normalize_text, quality_verdict, text_stats
from pipeline.config import CleanConfig, build_config
from pipeline.dataset import clean_documents, iter_clean_documents
from pipeline.dedup import DedupIndex
from pipeline.docstore import write_part
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
    st = text_stats(PROSE, 20)
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
