"""A documentation folder as Sphinx builds it (tests/docsite.py), through ingest, extract and
clean with the default config: the pages, and only the pages, end as clean documents."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from docsite import CHAPTER_LIST, LISTINGS, NAV_WORDS, DocSite, build_docsite

from docproc.extract import extract_all
from pipeline.clean import clean_documents, cleaned_parts, iter_clean_documents
from pipeline.config import build_config
from pipeline.ingest import ingest_paths
from pipeline.layout import DataRoot
from pipeline.records import Document
from pipeline.stats import StageStats


@dataclass(frozen=True, slots=True)
class Run:
    site: DocSite
    ingest: StageStats
    extract: StageStats
    clean: StageStats
    docs: dict[str, Document]  # the cleaned documents, by path relative to the folder


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    base = tmp_path_factory.mktemp("docs")
    site, root = build_docsite(base / "html"), DataRoot.at(base / "data")
    cfg = build_config([{"extract": {"workers": 1}, "clean": {"workers": 1}}])  # defaults else
    ingest = ingest_paths([site.top], cfg, root, progress=False)
    extract = extract_all(cfg, root, progress=False)
    clean = clean_documents(cfg, root, progress=False)
    names = [p.name for p in cleaned_parts(root, cfg)]
    docs = {str(Path(d.source).relative_to(site.top)): d
            for d in iter_clean_documents(root, names)}
    return Run(site, ingest, extract, clean, docs)


def test_only_the_pages_become_documents(run: Run) -> None:
    assert run.ingest.skipped == {"static_asset": len(run.site.assets)}
    assert run.ingest.failed == {} and run.extract.failed == {}
    assert run.clean.kept == len(run.site.pages) and run.clean.dropped == {}
    assert set(run.docs) == set(run.site.pages)


def test_pages_hold_their_content_without_marks_or_navigation(run: Run) -> None:
    for rel, doc in run.docs.items():
        assert doc.text.split("\n")[0] == run.site.pages[rel]  # the heading, no "¶"
        for nav in NAV_WORDS:
            assert nav not in doc.text, f"{rel}: {nav!r}"
    assert "\N{PILCROW SIGN}" not in run.docs["library/persistence.html"].text
    api = run.docs["library/pickle.html"].text
    assert api.count("\N{PILCROW SIGN}") == 1  # the one the prose holds
    assert "\npickle.dump(obj, file, protocol=None)\nWrite the pickled" in api


def test_a_chapter_page_ends_with_its_list_of_modules(run: Run) -> None:
    lines = []
    for _, text, sections in CHAPTER_LIST:
        lines += [f"- {text}", *(f"  - {s}" for s in sections)]
    assert run.docs["library/persistence.html"].text.endswith(
        "The list of modules described in this chapter is:\n\n" + "\n".join(lines))


def test_the_tutorial_keeps_every_listing(run: Run) -> None:
    text = run.docs["extending/newtypes_tutorial.html"].text
    for listing in LISTINGS:
        assert " ".join(listing.split()) in " ".join(text.split())
