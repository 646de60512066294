"""Exact and near-duplicate removal, within a run and against the index of earlier runs."""

from __future__ import annotations

import random

import pytest
from test_dataset_support import doc_id, make_text

from pipeline.clean import clean_documents
from pipeline.config import Config, build_config
from pipeline.dedup import DedupIndex, dedup_text, estimated_jaccard, fingerprint, shingles
from pipeline.docstore import write_part
from pipeline.layout import DataRoot
from pipeline.records import Document


def _doc(name: str, text: str) -> Document:
    return Document(id=doc_id(name), source=f"/{name}.txt", mime="text/plain", text=text)


def _edit_words(text: str, every: int, seed: int) -> str:
    """Replace one word in `every` with another: a near duplicate of `text`."""
    rng = random.Random(seed)
    words = text.split(" ")
    for i in range(0, len(words), every):
        words[i] = rng.choice(["lighthouse", "parliament", "sparrow", "quartz"])
    return " ".join(words)


BASE = make_text(random.Random(1), 400)
OTHER = make_text(random.Random(2), 400)


def _cfg(**clean: object) -> Config:
    return build_config([{"clean": {"workers": 1, **clean}}])


def test_exact_key_ignores_case_whitespace_and_compatibility_forms() -> None:
    assert dedup_text("The  Quick\n\nBrown\tFOX") == dedup_text("the quick brown fox")
    assert dedup_text("ﬁne ＡＢＣ") == dedup_text("fine abc")  # NFKC ligature and full width
    assert dedup_text("the quick brown fox") != dedup_text("the quick brown fax")


def test_minhash_estimates_jaccard_of_the_shingles() -> None:
    near = _edit_words(BASE, 100, seed=0)
    a, b = set(shingles(BASE, 5)), set(shingles(near, 5))
    true_jaccard = len(a & b) / len(a | b)
    cfg = _cfg().clean
    estimate = estimated_jaccard(fingerprint(BASE, cfg).sig, fingerprint(near, cfg).sig)
    assert true_jaccard > 0.8 and abs(estimate - true_jaccard) < 0.1
    assert estimated_jaccard(fingerprint(BASE, cfg).sig, fingerprint(OTHER, cfg).sig) < 0.1


def test_duplicates_are_dropped_within_a_run(root: DataRoot) -> None:
    write_part(root.docs, [
        _doc("base", BASE),
        _doc("exact", BASE.upper().replace(" ", "   ")),
        _doc("near", _edit_words(BASE, 100, seed=1)),
        _doc("other", OTHER),
        _doc("far", _edit_words(BASE, 3, seed=2)),  # a third of the words changed: kept
    ])
    stats = clean_documents(_cfg(), root, progress=False)
    assert stats.kept == 3
    assert dict(stats.dropped) == {"exact_duplicate": 1, "near_duplicate": 1}
    with DedupIndex(root.dedup_index, _cfg().clean) as index:
        assert index.decision(doc_id("exact")) == ("exact_duplicate",
                                                   f"same text as {doc_id('base')}")
        status, detail = index.decision(doc_id("near"))
        assert status == "near_duplicate" and doc_id("base") in detail
        assert index.decision(doc_id("far"))[0] == "kept"


def test_later_documents_are_deduplicated_against_earlier_runs(root: DataRoot) -> None:
    write_part(root.docs, [_doc("base", BASE), _doc("other", OTHER)])
    assert clean_documents(_cfg(), root, progress=False).kept == 2

    write_part(root.docs, [_doc("again", BASE + "\n"), _doc("near", _edit_words(OTHER, 100, 3)),
                           _doc("new", make_text(random.Random(3), 300)),
                           _doc("base", BASE)])  # the same document id once more
    stats = clean_documents(_cfg(), root, progress=False)
    assert stats.kept == 1 and stats.skipped["already_cleaned"] == 2
    assert dict(stats.dropped) == {"exact_duplicate": 1, "near_duplicate": 1, "duplicate_id": 1}
    assert stats.extra["dataset"] == {"kept": 3, "exact_duplicate": 1, "near_duplicate": 1}


def test_switches_and_thresholds(root: DataRoot) -> None:
    near = _edit_words(BASE, 30, seed=4)  # about 0.7 similar
    write_part(root.docs, [_doc("base", BASE), _doc("near", near)])
    stats = clean_documents(_cfg(near_jaccard=0.9), root, progress=False)
    assert stats.kept == 2  # not similar enough at 0.9

    write_part(root.docs, [_doc("near2", _edit_words(BASE, 30, seed=5)),
                           _doc("exact", BASE)])
    stats = clean_documents(_cfg(near_jaccard=0.5, dedup_exact=False), root, progress=False)
    # a new threshold rebuilds the LSH bands over the stored signatures; with exact dedup
    # off, the exact copy is caught as a (Jaccard 1.0) near duplicate instead
    assert dict(stats.dropped) == {"near_duplicate": 2}


def test_an_index_signed_with_other_settings_is_signed_again(root: DataRoot) -> None:
    old = {"shingle_words": 5, "near_jaccard": 0.8}  # the defaults before 3 words and 0.6
    write_part(root.docs, [_doc("base", BASE), _doc("other", OTHER), _doc("dup", BASE)])
    assert clean_documents(_cfg(**old), root, progress=False).kept == 2
    near = _edit_words(OTHER, 20, seed=7)  # 5% of the words: ~0.63 at 5 words, ~0.75 at 3
    write_part(root.docs, [_doc("near", near)])
    stats = clean_documents(_cfg(), root, progress=False)
    assert stats.extra["resigned"] == 2 and dict(stats.dropped) == {"near_duplicate": 1}
    with DedupIndex(root.dedup_index, _cfg().clean) as index:
        assert index.stale is None and doc_id("other") in index.decision(doc_id("near"))[1]
        assert index.decision(doc_id("dup"))[0] == "exact_duplicate"  # decisions stay
    with DedupIndex(root.dedup_index, _cfg(minhash_perm=64, dedup_near=False).clean) as index:
        assert index.stale is None  # signatures unused: left as they are
    with DedupIndex(root.dedup_index, _cfg(minhash_perm=64).clean) as index:
        assert index.stale == "minhash_perm 128 -> 64"
        with pytest.raises(RuntimeError, match="resign first"):
            index.find_duplicate(fingerprint(BASE, _cfg(minhash_perm=64).clean))
    write_part(root.docs, [_doc("again", _edit_words(BASE, 50, seed=8))])
    stats = clean_documents(_cfg(minhash_perm=64), root, progress=False)
    assert stats.extra["resigned"] == 2 and dict(stats.dropped) == {"near_duplicate": 1}


def test_near_dedup_can_be_switched_off(root: DataRoot) -> None:
    write_part(root.docs, [_doc("base", BASE), _doc("near", _edit_words(BASE, 100, seed=6))])
    stats = clean_documents(_cfg(dedup_near=False), root, progress=False)
    assert stats.kept == 2


def test_short_pages_in_one_template_are_kept_and_their_light_edits_dropped(root: DataRoot
                                                                            ) -> None:
    """The defaults on the hard case: 30-word bodies inside the same 23 words of header and
    footer (a site's pages) are not near-duplicates of each other; 5% of the words (2 of
    30) replaced is one."""
    header = "Documentation for this release. See the index for other topics."
    footer = "Back to the table of contents | Search | Report a bug on this page"
    rng = random.Random(9)
    bodies = [" ".join(make_text(rng, 40).split()[:30]) for _ in range(12)]
    pages = [_doc(f"page{i}", f"{header}\n\n{body}\n\n{footer}") for i, body in enumerate(bodies)]
    words = bodies[0].split()
    words[7], words[21] = "lighthouse", "parliament"
    edited = _doc("edited", f"{header}\n\n{' '.join(words)}\n\n{footer}")
    write_part(root.docs, [*pages, edited])
    stats = clean_documents(_cfg(min_chars=0, min_words=0), root, progress=False)
    assert stats.kept == 12 and dict(stats.dropped) == {"near_duplicate": 1}
    with DedupIndex(root.dedup_index, _cfg().clean) as index:
        assert doc_id("page0") in index.decision(doc_id("edited"))[1]
