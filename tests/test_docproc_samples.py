"""Documents the docproc tests make: text PDFs (PyMuPDF), their scans, images, EPUB, odd PDFs.

Imported by the other test_docproc_* / test_extract* files; its own tests check that the
samples are what they claim to be (a scan has no text layer, an OCR layer uses GlyphLessFont).
"""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import pymupdf
import pytest

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there one all we their has been would when who "
    "will more if no out so said what up its about into than them can only other new some "
    "could time these two may then do first any my now such like our over man me even most "
    "made after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very make world still "
    "own see men work long get here between both life being under never day same another know "
    "while last might us great old year off come since against go came right used take three "
    "house water page paper table window garden river market letter number question system"
).split()
FONT_SIZE = 11
MARGIN = 72


def sentences(seed: int, n_words: int) -> str:
    """Plain English-looking text (real words, so Tesseract's dictionary helps as in life)."""
    rnd = random.Random(seed)
    out, sentence = [], []
    for _ in range(n_words):
        sentence.append(rnd.choice(WORDS))
        if len(sentence) >= rnd.randint(8, 14):
            out.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    if sentence:
        out.append(" ".join(sentence).capitalize() + ".")
    return " ".join(out)


def page_texts(n_pages: int, words: int = 160, seed: int = 0) -> list[str]:
    """Each page: two paragraphs of `words` words in all."""
    return [sentences(seed + i, words // 2) + "\n\n" + sentences(seed + 100 + i, words // 2)
            for i in range(n_pages)]


def text_pdf_bytes(pages: list[str], fontsize: float = FONT_SIZE) -> bytes:
    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page()
        box = pymupdf.Rect(MARGIN, MARGIN, page.rect.width - MARGIN, page.rect.height - MARGIN)
        left = page.insert_textbox(box, text, fontsize=fontsize, fontname="helv")
        assert left >= 0, "sample text does not fit on the page"
    return doc.tobytes()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def scanned_pdf_bytes(pdf: bytes, dpi: int = 150) -> bytes:
    """The same pages as images only: what a scanner makes (no text layer)."""
    src = pymupdf.open(stream=pdf, filetype="pdf")
    out = pymupdf.open()
    for page in src:
        pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
        new = out.new_page(width=page.rect.width, height=page.rect.height)
        new.insert_image(new.rect, stream=pix.tobytes("png"))
    return out.tobytes()


def mixed_pdf_bytes(pages: list[str], scanned: set[int], dpi: int = 150) -> bytes:
    """Pages 1..n, the ones numbered in `scanned` as images only."""
    text = pymupdf.open(stream=text_pdf_bytes(pages), filetype="pdf")
    scans = pymupdf.open(stream=scanned_pdf_bytes(text_pdf_bytes(pages), dpi), filetype="pdf")
    out = pymupdf.open()
    for n in range(1, len(pages) + 1):
        src = scans if n in scanned else text
        out.insert_pdf(src, from_page=n - 1, to_page=n - 1)
    return out.tobytes()


def page_image(text: str, dpi: int = 150, fmt: str = "png") -> bytes:
    """One page of text rendered to an image file (PNG, JPEG, BMP, GIF, TIFF...)."""
    img = render_page(text, dpi)
    buf = io.BytesIO()
    save_fmt = {"jpg": "JPEG", "tif": "TIFF"}.get(fmt, fmt.upper())
    extra = {} if save_fmt == "GIF" else {"dpi": (dpi, dpi)}
    img.save(buf, format=save_fmt, **extra)
    return buf.getvalue()


def render_page(text: str, dpi: int = 150):  # noqa: ANN201 - a PIL image
    from PIL import Image

    doc = pymupdf.open(stream=text_pdf_bytes([text]), filetype="pdf")
    pix = doc[0].get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
    return Image.frombytes("L", (pix.width, pix.height), pix.samples)


def multipage_tiff(texts: list[str], dpi: int = 150) -> bytes:
    images = [render_page(t, dpi) for t in texts]
    buf = io.BytesIO()
    images[0].save(buf, format="TIFF", save_all=True, append_images=images[1:], dpi=(dpi, dpi))
    return buf.getvalue()


def image_page_with_label_pdf(label: str, dpi: int = 100) -> bytes:
    """A full-page image of text with a few characters of real text on top (a stamped scan)."""
    scan = pymupdf.open(stream=scanned_pdf_bytes(text_pdf_bytes(page_texts(1, seed=7)), dpi),
                        filetype="pdf")
    scan[0].insert_text((MARGIN, 40), label, fontsize=9, fontname="helv")
    return scan.tobytes()


def ocr_layer_pdf_bytes(text: str, dpi: int = 150) -> bytes:
    """A scan with Tesseract's own invisible text layer (GlyphLessFont), as OCRmyPDF makes."""
    import pytesseract

    return pytesseract.image_to_pdf_or_hocr(render_page(text, dpi), extension="pdf",
                                            config=f"--dpi {dpi}")


def garbled_pdf_bytes(line: str, lines: int = 15) -> bytes:
    """Visible Helvetica text whose ToUnicode map sends every glyph to U+FFFD (broken fonts)."""
    doc = pymupdf.open()
    page = doc.new_page()
    entries = "\n".join(f"<{c:02X}> <FFFD>" for c in range(0x21, 0x7F))
    cmap = ("/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
            "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
            "/CMapName /Broken-UCS def /CMapType 2 def\n"
            "1 begincodespacerange <00> <FF> endcodespacerange\n"
            f"{0x7F - 0x21} beginbfchar\n{entries}\nendbfchar\n"
            "endcmap CMapName currentdict /CMap defineresource pop end end")
    to_unicode = doc.get_new_xref()
    doc.update_object(to_unicode, "<< >>")
    doc.update_stream(to_unicode, cmap.encode())
    font = doc.get_new_xref()
    doc.update_object(font, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
                            f"/Encoding /WinAnsiEncoding /ToUnicode {to_unicode} 0 R >>")
    doc.xref_set_key(page.xref, "Resources", f"<< /Font << /FX {font} 0 R >> >>")
    content = doc.get_new_xref()
    doc.update_object(content, "<< >>")
    shows = "".join(f"({line}) Tj 0 -18 Td " for _ in range(lines))
    doc.update_stream(content, f"BT /FX 14 Tf 72 750 Td {shows} ET".encode())
    doc.xref_set_key(page.xref, "Contents", f"{content} 0 R")
    return doc.tobytes()


def two_column_pdf_bytes(title: str, left: list[str], right: list[str],
                         right_first: bool = True) -> bytes:
    """A title across the top and two columns of paragraphs; the right column drawn first."""
    doc = pymupdf.open()
    page = doc.new_page()
    mid = page.rect.width / 2

    def column(x0: float, x1: float, paragraphs: list[str]) -> None:
        y = 120.0
        for para in paragraphs:
            box = pymupdf.Rect(x0, y, x1, y + 120)
            page.insert_textbox(box, para, fontsize=10, fontname="helv")
            y += 140

    if right_first:
        column(mid + 12, page.rect.width - 50, right)
        column(50, mid - 12, left)
    else:
        column(50, mid - 12, left)
        column(mid + 12, page.rect.width - 50, right)
    page.insert_text((50, 80), title, fontsize=16, fontname="helv")
    return doc.tobytes()


def epub_bytes(title: str, chapters: list[str]) -> bytes:
    """A minimal valid EPUB 3: mimetype first and stored, container, package, XHTML chapters."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        zf.writestr("META-INF/container.xml",
                    '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:'
                    'opendocument:xmlns:container"><rootfiles><rootfile full-path="OEBPS/'
                    'content.opf" media-type="application/oebps-package+xml"/></rootfiles>'
                    '</container>')
        items = "".join(f'<item id="c{i}" href="c{i}.xhtml" media-type="application/xhtml+xml"/>'
                        for i in range(len(chapters)))
        spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
        zf.writestr("OEBPS/content.opf",
                    '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" '
                    'version="3.0" unique-identifier="id"><metadata xmlns:dc="http://purl.org/'
                    f'dc/elements/1.1/"><dc:identifier id="id">sample</dc:identifier><dc:title>'
                    f'{title}</dc:title><dc:language>en</dc:language></metadata><manifest>'
                    f'{items}</manifest><spine>{spine}</spine></package>')
        for i, text in enumerate(chapters):
            paras = "".join(f"<p>{p}</p>" for p in text.split("\n\n"))
            zf.writestr(f"OEBPS/c{i}.xhtml",
                        '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/'
                        f'1999/xhtml"><head><title>c{i}</title></head><body><h1>Chapter {i + 1}'
                        f'</h1>{paras}</body></html>')
    return buf.getvalue()


def bomb_png(side: int) -> bytes:
    """A tiny PNG that decodes to side x side pixels (a decompression bomb at large sides)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# --- the samples are what they claim --------------------------------------------------------


def test_scanned_pdf_has_no_text_layer_but_the_same_page_count() -> None:
    pdf = text_pdf_bytes(page_texts(2))
    scan = pymupdf.open(stream=scanned_pdf_bytes(pdf, dpi=72), filetype="pdf")
    assert scan.page_count == 2
    assert all(page.get_text().strip() == "" for page in scan)
    assert all(page.get_images() for page in scan)


@pytest.mark.slow
def test_ocr_layer_sample_uses_glyphless_font() -> None:
    doc = pymupdf.open(stream=ocr_layer_pdf_bytes("Invisible words here.", dpi=100),
                       filetype="pdf")
    assert any("GlyphLessFont" in f[3] for f in doc[0].get_fonts())
    assert "Invisible" in doc[0].get_text()
