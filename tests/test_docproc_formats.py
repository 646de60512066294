"""Images (real Tesseract), EPUB, HTML and plain text, and the Tesseract checks."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from docsite import heading, sphinx_page
from test_docproc_samples import (
    bomb_png,
    epub_bytes,
    multipage_tiff,
    page_image,
    page_texts,
    sentences,
    write,
)

from docproc.document import extract_file
from docproc.ocr import check_tesseract, mean_confidence
from docproc.ocr_policy import OcrMode
from docproc.options import ExtractOptions
from pipeline.errors import (
    CorruptInput,
    EmptyInput,
    EnvironmentProblem,
    TooLargeInput,
)

SHORT = "Pack my box with five dozen liquor jugs.\n\nThe market opened at nine."


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() else " " for c in text).split()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["png", "jpg", "bmp", "gif"])
def test_image_files_are_ocred_with_a_real_confidence(tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path / f"page.{fmt}", page_image(SHORT, dpi=120, fmt=fmt))
    doc = extract_file(path, ExtractOptions())
    assert _words(doc.text) == _words(SHORT)
    assert doc.ocr_pages == [1] and doc.page_info[0].reason == "image"
    assert 60 < doc.page_info[0].confidence <= 100
    assert doc.stats["ocr_confidence"] == doc.page_info[0].confidence
    assert doc.extractor.startswith("tesseract") and doc.mime.startswith("image/")


@pytest.mark.slow
def test_every_page_of_a_multipage_tiff_is_ocred(tmp_path: Path) -> None:
    texts = ["First page says hello.", "Second page says goodbye."]
    doc = extract_file(write(tmp_path / "scan.tif", multipage_tiff(texts, dpi=120)),
                       ExtractOptions())
    assert doc.pages == 2 and doc.ocr_pages == [1, 2]
    assert _words(doc.text) == _words(" ".join(texts))


@pytest.mark.slow
def test_confidence_comes_from_tesseract_and_falls_on_a_degraded_image(tmp_path: Path) -> None:
    from PIL import Image, ImageFilter

    clean = Image.open(io.BytesIO(page_image(SHORT, dpi=120)))
    blurred = clean.filter(ImageFilter.GaussianBlur(2.2))
    blurred.save(tmp_path / "blurred.png")
    clean.save(tmp_path / "clean.png")
    opts = ExtractOptions(preprocess=False)
    good = extract_file(tmp_path / "clean.png", opts).stats["ocr_confidence"]
    try:
        bad = extract_file(tmp_path / "blurred.png", opts).stats.get("ocr_confidence", 0.0)
    except EmptyInput:
        bad = 0.0
    assert good > bad + 5  # a constant (the old tools said 85%) could not do this


def test_mean_confidence_reads_word_rows_only() -> None:
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight" \
             "\tconf\ttext"
    rows = ["1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t", "5\t1\t1\t1\t1\t1\t0\t0\t9\t9\t90.5\tA",
            "5\t1\t1\t1\t1\t2\t0\t0\t9\t9\t70.5\tB", "5\t1\t1\t1\t1\t3\t0\t0\t9\t9\t95\t "]
    assert mean_confidence("\n".join([header, *rows])) == (80.5, 2)


def test_image_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = write(tmp_path / "bomb.png", bomb_png(3000))
    assert path.stat().st_size < 20_000
    with pytest.raises(TooLargeInput, match="3000x3000 = 9000000 pixels is over"):
        extract_file(path, ExtractOptions(max_image_pixels=5_000_000))


def test_truncated_image_is_corrupt(tmp_path: Path) -> None:
    data = page_image(SHORT, dpi=72)
    path = write(tmp_path / "cut.png", data[: len(data) // 3])
    with pytest.raises(CorruptInput, match="unreadable image"):
        extract_file(path, ExtractOptions())


def test_image_with_ocr_off_has_no_text(tmp_path: Path) -> None:
    path = write(tmp_path / "p.png", page_image(SHORT, dpi=72))
    with pytest.raises(EmptyInput, match="ocr_off"):
        extract_file(path, ExtractOptions(ocr=OcrMode.NEVER))


def test_missing_language_names_the_package_to_install() -> None:
    with pytest.raises(EnvironmentProblem, match="apt-get install tesseract-ocr-zzz"):
        check_tesseract("eng+zzz")


def test_missing_tesseract_gives_the_install_command(tmp_path: Path,
                                                     missing_tesseract: Path) -> None:
    with pytest.raises(EnvironmentProblem, match="apt-get install tesseract-ocr"):
        check_tesseract("eng")
    path = write(tmp_path / "p.png", page_image(SHORT, dpi=72))
    with pytest.raises(EnvironmentProblem, match="not installed"):
        extract_file(path, ExtractOptions())


def test_epub_chapters_and_title(tmp_path: Path) -> None:
    chapters = page_texts(2, words=60)
    path = write(tmp_path / "book.epub", epub_bytes("A Small Book", chapters))
    doc = extract_file(path, ExtractOptions(ocr=OcrMode.NEVER))
    assert doc.mime == "application/epub+zip" and doc.title == "A Small Book"
    flat = " ".join(doc.text.split())
    for text in chapters:
        for para in text.split("\n\n"):
            assert " ".join(para.split()) in flat
    assert flat.index("Chapter 1") < flat.index("Chapter 2")
    assert doc.pages >= 2 and doc.ocr_pages == []


HTML = """<!DOCTYPE html><html lang="de"><head><meta charset="utf-8"><title>Ein Titel</title>
</head><body><nav><a href="/">Home</a> | <a href="/about">About us</a> | <a href="/x">Shop</a>
</nav><main><article><h1>Die Überschrift</h1>
<p>Der erste Absatz erzählt eine Geschichte, die lang genug ist, um als Inhalt zu gelten.
Sie geht über zwei Zeilen im Quelltext.</p>
<p>Der zweite Absatz folgt nach einer Leerzeile, mit <b>fettem</b> Text und einem
<a href="/link">Verweis</a> darin.</p>
<ul><li>erster Punkt</li><li>zweiter Punkt</li></ul></article></main>
<footer>Impressum · Datenschutz · Cookies</footer>
<script>var tracking = "should never appear";</script></body></html>"""


def test_html_main_content_keeps_paragraphs_and_drops_boilerplate(tmp_path: Path) -> None:
    doc = extract_file(write(tmp_path / "page.html", HTML.encode()), ExtractOptions())
    paragraphs = doc.text.split("\n\n")
    assert paragraphs[0] == "Die Überschrift"
    assert paragraphs[1].startswith("Der erste Absatz") and "Quelltext." in paragraphs[1]
    assert paragraphs[2].startswith("Der zweite Absatz") and "fettem Text" in paragraphs[2]
    assert "- erster Punkt\n- zweiter Punkt" in doc.text
    for junk in ("Home", "Impressum", "tracking"):
        assert junk not in doc.text
    assert doc.title in ("Die Überschrift", "Ein Titel") and doc.lang == "de"
    assert doc.extractor.startswith("trafilatura")


def test_html_in_a_legacy_charset(tmp_path: Path) -> None:
    html = HTML.replace('charset="utf-8"', 'charset="windows-1252"').encode("cp1252")
    doc = extract_file(write(tmp_path / "old.html", html), ExtractOptions())
    assert "Die Überschrift" in doc.text and "erzählt" in doc.text


def _page(body: str, around: str = "", body_class: str = "") -> bytes:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Guide</title>'
            f'</head><body class="{body_class}">{around}<main>{body}</main></body></html>'
            ).encode()


# permalink anchors as documentation generators write them, and the heading each must leave
PERMALINKS = {
    "Sphinx": ('<h2 id="a">Installation<a class="headerlink" href="#a" '
               'title="Link to this heading">\N{PILCROW SIGN}</a></h2>', "Installation"),
    "MkDocs": ('<h2 id="b">Configuration<a class="headerlink" href="#b" '
               'title="Permanent link">&para;</a></h2>', "Configuration"),
    "Docusaurus": ('<h2 class="anchor anchorWithStickyNavbar" id="c">Usage<a href="#c" '
                   'class="hash-link" aria-label="Direct link to Usage" '
                   'title="Direct link to Usage">&#8203;</a></h2>', "Usage"),
    "GitHub": ('<h2><a id="user-content-d" class="anchor" aria-hidden="true" href="#d">'
               '<svg class="octicon octicon-link" viewBox="0 0 16 16" width="16" height="16">'
               '<path d="M7.775 3.275a.75.75 0 0 0 1.06 1.06"></path></svg></a>Setup</h2>',
               "Setup"),
    "rustdoc": ('<h3 id="e"><a href="#e" class="anchor">&sect;</a>Method new</h3>',
                "Method new"),
    "hash mark": ('<h3 id="f">Questions <a class="anchor-link" href="#f">#</a></h3>',
                  "Questions"),
    "Sphinx API entry": ('<dl class="py function"><dt class="sig sig-object py" id="g">'
                         '<span class="sig-name descname">run</span>(<em>path</em>)'
                         '<a class="headerlink" href="#g" title="Link to this definition">'
                         "\N{PILCROW SIGN}</a></dt><dd><p>Run the tool on the given path and "
                         "return what it found.</p></dd></dl>", "run(path)"),
}


def test_permalink_anchors_leave_headings_and_api_entries_bare(tmp_path: Path) -> None:
    body = ('<h1 id="top">User guide<a class="headerlink" href="#top">\N{PILCROW SIGN}</a></h1>'
            f"<p>{sentences(1, 40)} The pilcrow (\N{PILCROW SIGN}) and the section sign "
            '(\N{SECTION SIGN} 4) in this sentence are text, and so is <a href="#a">the '
            "link to the installation notes</a>.</p>")
    for i, (markup, _) in enumerate(PERMALINKS.values()):
        body += markup + f"<p>{sentences(10 + i, 30)}</p>"
    doc = extract_file(write(tmp_path / "guide.html", _page(body)), ExtractOptions())
    lines = doc.text.split("\n")
    assert lines[0] == "User guide"
    for generator, (_, title) in PERMALINKS.items():
        assert title in lines, f"{generator}: {title!r} not a line of its own"
    # marks in the text are text: only the anchors went, by their structure
    assert doc.text.count("\N{PILCROW SIGN}") == 1 and doc.text.count("\N{SECTION SIGN}") == 1
    assert "(\N{PILCROW SIGN}) and the section sign (\N{SECTION SIGN} 4)" in doc.text
    assert "the link to the installation notes." in doc.text and "#" not in doc.text


def test_a_list_of_links_that_is_the_content_is_kept_and_navigation_is_not(
        tmp_path: Path) -> None:
    modules = [("pickle.html", "pickle — Python object serialization"),
               ("shelve.html", "shelve — Python object persistence"),
               ("dbm.html", "dbm — Interfaces to Unix databases")]
    items = "".join(f'<li><a class="reference internal" href="{href}">{text}</a></li>'
                    for href, text in modules)
    body = ('<nav class="breadcrumbs"><ul><li><a href="/">Crumb home</a></li>'
            '<li><a href="/lib/">Crumb library</a></li></ul></nav>'
            f"<h1>Data Persistence</h1><p>{sentences(3, 50)}</p>"
            '<ul><li><a href="#intro">Local contents one</a></li>'
            '<li><a href="#more">Local contents two</a></li></ul>'
            "<p>The list of modules described in this chapter is:</p>"
            f'<div class="toctree-wrapper compound"><ul>{items}</ul></div>'
            '<ul class="pager"><li><a href="files.html">Previous: File and Directory Access</a>'
            '</li><li><a href="pickle.html">Next: the pickle module</a></li></ul>')
    sidebar = ('<div class="sphinxsidebar" role="navigation"><h3>Table of contents</h3><ul>'
               + "".join(f'<li><a href="s{i}.html">Sidebar entry {i}</a></li>'
                         for i in range(8)) + "</ul></div>")
    page = _page(body, around=sidebar, body_class="wy-body-for-nav")  # as Read the Docs has it
    doc = extract_file(write(tmp_path / "persistence.html", page), ExtractOptions())
    listed = "\n".join(f"- {text}" for _, text in modules)
    assert doc.text.endswith("The list of modules described in this chapter is:\n\n" + listed)
    for nav in ("Crumb", "Local contents", "Previous:", "Next:", "Sidebar entry"):
        assert nav not in doc.text, nav


def test_a_page_that_is_only_a_list_is_read_from_its_main_content(tmp_path: Path) -> None:
    # too little text for trafilatura's main pass: its fallbacks read the whole page, sidebar
    # and next/previous bars included, unless the page is cut to what it marks as main
    faqs = ["General Python FAQ", "Programming FAQ", "Design and History FAQ",
            "Library and Extension FAQ", "Extending/Embedding FAQ", "Python on Windows FAQ"]
    items = "".join(f'<li class="toctree-l1"><a class="reference internal" href="f{i}.html">'
                    f"{faq}</a></li>" for i, faq in enumerate(faqs))
    body = (heading(1, "faq", "Python Frequently Asked Questions")
            + f'<div class="toctree-wrapper compound"><ul>{items}</ul></div>')
    page = sphinx_page("Python Frequently Asked Questions", body, up="../",
                       prev="isolating.html", next_="general.html")
    doc = extract_file(write(tmp_path / "index.html", page.encode()), ExtractOptions())
    assert doc.text == "Python Frequently Asked Questions\n\n" + "\n".join(
        f"- {faq}" for faq in faqs)


def test_nested_lists_and_definitions_keep_their_lines(tmp_path: Path) -> None:
    body = (f"<h1>Reference</h1><p>{sentences(4, 40)}</p>"
            '<ul><li><a href="os.html">os — Operating system interfaces</a><ul>'
            '<li><a href="os.html#files">Files and directories</a><ul>'
            '<li><a href="os.html#os.stat">os.stat()</a></li></ul></li></ul></li>'
            '<li><a href="io.html">io — Core tools for streams</a></li></ul>'
            '<dl><dt id="x">dump(obj, file)</dt><dd><p>Write the object to the open file.</p>'
            "<p>The file must be opened for writing in binary mode.</p></dd></dl>")
    doc = extract_file(write(tmp_path / "ref.html", _page(body)), ExtractOptions())
    assert ("- os — Operating system interfaces\n  - Files and directories\n    - os.stat()\n"
            "- io — Core tools for streams") in doc.text
    # back-to-back paragraphs of a definition: each on its own line, not run together
    assert ("dump(obj, file)\nWrite the object to the open file.\n"
            "The file must be opened for writing in binary mode.") in doc.text


def test_non_utf8_text_is_detected_and_decoded(tmp_path: Path) -> None:
    cases = {
        "latin.txt": ("Crème brûlée, café au lait et garçon.".encode("cp1252"), "Crème brûlée"),
        "cyr.txt": ("Привет, как дела? Это простой тест кодировки.".encode("cp1251"), "Привет"),
        "u16.txt": ("Grüße aus Köln".encode("utf-16"), "Grüße aus Köln"),
    }
    for name, (data, expected) in cases.items():
        doc = extract_file(write(tmp_path / name, data), ExtractOptions())
        assert doc.text.startswith(expected), name
        assert doc.mime == "text/plain"


def test_undecodable_bytes_declared_as_text_are_a_failure(tmp_path: Path) -> None:
    # Binary data often holds a line that is valid UTF-8 by chance, a 2-byte sequence between
    # two newlines: 1 random blob in 20 did, and passed as text mixed of UTF-8 and a charset.
    by_chance = randbytes(2048, seed=0) + b"\n\xc3\xa9\n" + randbytes(2048, seed=1)
    blobs = [by_chance, *(randbytes(4096, seed) for seed in range(2, 202))]
    for n, blob in enumerate(blobs):
        path = write(tmp_path / f"blob{n}.bin", blob)
        with pytest.raises(CorruptInput, match="not decodable as text"):
            extract_file(path, ExtractOptions(), claimed_mime="text/plain",
                         source="http://x/notes.txt")


def randbytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def test_markdown_title_and_paragraphs(tmp_path: Path) -> None:
    md = "# Release notes\n\nFixed the frobnicator.\nIt no longer   frobs twice.\n\n\n\nDone.\n"
    doc = extract_file(write(tmp_path / "notes.md", md.encode()), ExtractOptions())
    assert doc.mime == "text/markdown" and doc.title == "Release notes"
    assert doc.text == ("# Release notes\n\nFixed the frobnicator.\nIt no longer frobs twice."
                        "\n\nDone.")


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    with pytest.raises(EmptyInput, match="0 bytes"):
        extract_file(write(tmp_path / "empty.pdf", b""), ExtractOptions())


FB2 = """<?xml version="1.0" encoding="utf-8"?>
<FictionBook xmlns="http://www.gribuser.ru/xml/fictionbook/2.0"><description><title-info>
<book-title>The Fable</book-title><lang>en</lang></title-info></description><body><section>
<title><p>Chapter One</p></title><p>Once upon a time there was a fox.</p>
<p>The end of the story.</p></section></body></FictionBook>"""


def test_fictionbook_is_sniffed_and_extracted_by_pymupdf(tmp_path: Path) -> None:
    doc = extract_file(write(tmp_path / "fable.xml", FB2.encode()),
                       ExtractOptions(ocr=OcrMode.NEVER))
    assert doc.mime == "application/x-fictionbook+xml" and doc.title == "The Fable"
    assert "Once upon a time there was a fox." in doc.text
    assert doc.extractor.startswith("pymupdf")


def test_xhtml_with_an_xml_declaration_is_html(tmp_path: Path) -> None:
    xhtml = ('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n<html xmlns="http://www.'
             'w3.org/1999/xhtml"><head><title>X</title></head><body><article><p>An XHTML page '
             'with a paragraph that is the main content of the page.</p></article></body></html>')
    doc = extract_file(write(tmp_path / "page.xhtml", xhtml.encode()), ExtractOptions())
    assert doc.mime == "text/html" and doc.text.startswith("An XHTML page")


def test_mobi_and_xps_are_recognised_by_their_bytes(tmp_path: Path) -> None:
    import zipfile

    from docproc.detect import Kind, detect

    mobi = write(tmp_path / "book.bin", b"A Book".ljust(60, b"\0") + b"BOOKMOBI" + bytes(200))
    assert (detect(mobi).kind, detect(mobi).filetype) == (Kind.EBOOK, "mobi")
    xps = tmp_path / "doc.bin"
    with zipfile.ZipFile(xps, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("FixedDocumentSequence.fdseq", "<FixedDocumentSequence/>")
    assert (detect(xps).kind, detect(xps).filetype) == (Kind.EBOOK, "xps")
    plain_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(plain_zip, "w") as zf:
        zf.writestr("a.txt", "x")
    assert (detect(plain_zip).kind, detect(plain_zip).filetype) == (Kind.ARCHIVE, "zip")
