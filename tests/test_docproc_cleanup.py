"""The clean-up every extractor shares."""

from __future__ import annotations

from docproc.cleanup import (
    clean_pages,
    clean_text,
    dehyphenate,
    normalize_unicode,
    normalize_whitespace,
    remove_running_lines,
)


def test_dehyphenation_joins_words_broken_at_line_ends() -> None:
    text = "an exam-\nple of it, and a sen-\ntence."
    assert dehyphenate(text) == "an example\nof it, and a sentence."


def test_dehyphenation_keeps_compounds_the_document_writes_with_a_hyphen() -> None:
    text = "a well-\nknown fact. It is well-known."
    assert dehyphenate(text) == "a well-known\nfact. It is well-known."


def test_dehyphenation_leaves_capitalised_continuations_and_dashes() -> None:
    text = "Anglo-\nSaxon words\nand a list -\nlike this"
    assert dehyphenate(text) == text


def test_unicode_normalisation_folds_ligatures_and_invisible_characters() -> None:
    assert normalize_unicode("e\u0301\ufb01ne\u00ad\u200bx\u00a0y\ufffd\x07") == "\u00e9finex y"
    # superscripts and full-width digits carry meaning: NFKC would fold them, we do not
    assert normalize_unicode("x\u00b2 \uff11") == "x\u00b2 \uff11"


def test_whitespace_keeps_paragraph_breaks_and_indentation() -> None:
    text = "first   line  \n\n\n\n  indented\tcode\n \nlast"
    assert normalize_whitespace(text) == "first line\n\n  indented code\n\nlast"


def test_running_headers_footers_and_page_numbers_are_removed() -> None:
    bodies = ["Install the tool.\nRun it once.", "Open the lid.\nClose it again.",
              "A page with a figure only", "Turn the key.\nWait.", "Read the log.\nDone."]
    pages = [f"ACME Manual v2\n{body}\n- {n} -" for n, body in enumerate(bodies, 1)]
    pages[2] = "ACME Manual v2\nA page with a figure only\nPage 3 of 5"
    out = remove_running_lines(pages)
    assert out[0] == "Install the tool.\nRun it once."
    assert out[2] == "A page with a figure only"
    assert all("ACME" not in p for p in out)


def test_a_table_on_most_pages_stays_while_the_running_header_goes() -> None:
    # the same chart's data on every slide (as text and as Markdown): at the pages' edges and
    # repeated, but rows of a table; the header line and the page number are not
    tables = ["Imports | Exports\nNorth | 12 | 3\nSouth | 4 | 5", "| | Imports |\n| --- | --- |"]
    for table in tables:
        bodies = [f"{table}\n{words}" for words in ("Tonnage rose.\nAs planned.", "It fell.",
                                                      "Flat.\nNo change.", "Up again.")]
        pages = [f"ACME Review | Q{n}\n\n{body}\nPage {n}" for n, body in enumerate(bodies, 1)]
        assert remove_running_lines(pages) == ["\n" + body for body in bodies]


def test_lines_repeated_on_few_pages_or_in_the_body_stay() -> None:
    pages = ["Title\nbody one\nSee the table.", "body two\nSee the table.\nend two",
             "body three\nend three", "Title\nbody four"]
    # "Title" is on 2 of 4 pages (not most); "See the table." is on 2 of 4 too
    assert remove_running_lines(pages) == pages
    assert remove_running_lines(pages[:2]) == pages[:2]  # too few pages to tell


def test_clean_pages_joins_a_word_hyphenated_across_a_page_break() -> None:
    _, text = clean_pages(["The first page ends with a hyphen-", "ated word and goes on."])
    assert text == "The first page ends with a hyphenated\nword and goes on."


def test_clean_text_end_to_end() -> None:
    raw = "\ufeffTitle\r\n\r\n\r\nA para-\r\ngraph  with\ttabs.\r\n"
    assert clean_text(raw) == "Title\n\nA paragraph\nwith tabs."


def test_cleaned_text_has_single_blanks_and_countable_words() -> None:
    import random
    import string

    from docproc.document import word_count

    rnd = random.Random(0)
    alphabet = string.ascii_letters + "  \t\n\n-.,\u00e9\u00a0"
    for _ in range(400):
        raw = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 300)))
        for text in (clean_text(raw), clean_pages([raw, raw[::-1], raw.upper()])[1]):
            assert word_count(text) == len(text.split())
            assert "\n\n\n" not in text and text == text.strip("\n").rstrip()
            for line in text.split("\n"):
                body = line.lstrip(" \t")
                assert "  " not in body and "\t" not in body and body == body.rstrip()


def test_extraction_and_clean_share_the_invisible_characters_and_the_alpha_ratio() -> None:
    import random

    from docproc.detect import Detected, Kind
    from docproc.document import build_document
    from docproc.options import ExtractOptions
    from docproc.result import Extracted
    from pipeline.config import CleanConfig
    from pipeline.filters import normalize_text, text_stats
    from pipeline.text import INVISIBLE

    rnd = random.Random(1)
    alphabet = ["a", "Z", "é", "1", "²", "½", " ", "\n", "\t", ".", "\u2005", "\x07", "\x85",
                "\u200b", "\ufeff", "\f", "\r\n", "\ud800", "e\u0301"]
    cfg = CleanConfig()
    for _ in range(300):
        raw = "word " + "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 80)))
        text = clean_text(raw)
        assert not INVISIBLE.search(text) and not INVISIBLE.search(normalize_text(raw))
        found = Detected(kind=Kind.TEXT, mime="text/plain", filetype=None)
        doc = build_document(Extracted(extractor="test", text=raw), found, source="t.txt",
                             opts=ExtractOptions(), sha256="0" * 64)
        stats = text_stats(doc.text, cfg.short_line_chars, cfg.repeated_line_min_words)
        assert doc.stats["alpha_ratio"] == round(stats.alpha_ratio, 4)
