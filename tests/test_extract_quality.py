"""Extraction quality on documents made here: the OCR decision and Tesseract's error rate.

Text PDFs are made with PyMuPDF; the same pages rendered to images make image-only PDFs
(what a scanner produces), so the right text of every page is known.
"""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest
from test_docproc_samples import (
    MARGIN,
    page_texts,
    scanned_pdf_bytes,
    sentences,
    text_pdf_bytes,
    write,
)

from docproc.document import extract_file
from docproc.ocr_policy import OcrMode
from docproc.options import ExtractOptions
from docproc.pdf import decide_page

# Tesseract 5 on clean 300-dpi renders of an 11-point sans-serif font misreads well under 1%
# of characters (measured here: 0.0-0.3% per page). 2% leaves room for another Tesseract
# build or font rendering, and still fails if the rendering, the dpi or the page
# segmentation went wrong (those give 10% and more).
MAX_CER = 0.02


def levenshtein(a: str, b: str, band: int) -> int:
    """Edit distance of a and b, exact when it is at most `band` (Ukkonen's band)."""
    if abs(len(a) - len(b)) > band:
        return band + 1
    inf = band + 1
    prev = [j if j <= band else inf for j in range(len(b) + 1)]
    for i in range(1, len(a) + 1):
        cur = [inf] * (len(b) + 1)
        if i <= band:
            cur[0] = i
        lo, hi = max(1, i - band), min(len(b), i + band)
        for j in range(lo, hi + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        prev = cur
    return min(prev[len(b)], inf)


def cer(truth: str, ocr: str) -> float:
    truth, ocr = " ".join(truth.split()), " ".join(ocr.split())
    band = max(10, len(truth) // 10)
    return levenshtein(truth, ocr, band) / len(truth)


def test_levenshtein() -> None:
    assert levenshtein("kitten", "sitting", 5) == 3
    assert levenshtein("same", "same", 2) == 0
    assert levenshtein("a" * 50, "b" * 50, 5) == 6  # beyond the band: reported as band + 1


def _figure_page_pdf(text: str) -> bytes:
    """A text page with a picture covering the top 40% (a manual's figure page)."""
    doc = pymupdf.open(stream=text_pdf_bytes([text]), filetype="pdf")
    page = doc[0]
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 64, 64), False)
    pix.clear_with(180)
    page.insert_image(pymupdf.Rect(MARGIN, 400, page.rect.width - MARGIN, 720), pixmap=pix)
    return doc.tobytes()


def test_auto_decision_ocrs_every_image_page_and_no_text_page() -> None:
    texts = page_texts(8, words=120, seed=21)
    text_pages = pymupdf.open(stream=text_pdf_bytes(texts), filetype="pdf")
    variants = [pymupdf.open(stream=text_pdf_bytes(["Contents"]), filetype="pdf"),  # title page
                pymupdf.open(stream=text_pdf_bytes([sentences(5, 40)], fontsize=7),
                             filetype="pdf"),
                pymupdf.open(stream=_figure_page_pdf(sentences(6, 60)), filetype="pdf")]
    scans = pymupdf.open(stream=scanned_pdf_bytes(text_pdf_bytes(texts), dpi=72),
                         filetype="pdf")
    title_scan = pymupdf.open(stream=scanned_pdf_bytes(text_pdf_bytes(["Contents"]), dpi=72),
                              filetype="pdf")
    decided = {"text": [], "image": []}
    for doc in (text_pages, *variants):
        decided["text"] += [decide_page(p, OcrMode.AUTO)[1] for p in doc]
    for doc in (scans, title_scan):
        decided["image"] += [decide_page(p, OcrMode.AUTO)[1] for p in doc]
    assert len(decided["text"]) == 11 and len(decided["image"]) == 9
    assert not any(d.ocr for d in decided["text"]), decided["text"]
    assert all(d.ocr and d.reason == "no_text_layer" for d in decided["image"])


@pytest.mark.slow
def test_ocr_character_error_rate_on_300_dpi_scans(tmp_path: Path,
                                                   record_property: pytest.FixtureRequest,
                                                   ) -> None:
    texts = page_texts(2, words=180, seed=42)
    scan = write(tmp_path / "scan.pdf", scanned_pdf_bytes(text_pdf_bytes(texts), dpi=300))
    pages = [extract_file(scan, ExtractOptions(dpi=300, pages=(n,))) for n in (1, 2)]
    assert [p.ocr_pages for p in pages] == [[1], [2]]
    page_cer = [cer(truth, p.text) for truth, p in zip(texts, pages, strict=True)]
    whole = cer("\n".join(texts), "\n".join(p.text for p in pages))
    confidence = min(p.stats["ocr_confidence"] for p in pages)
    record_property("ocr_cer", whole)
    print(f"\nOCR character error rate at 300 dpi: {whole:.4f} "
          f"(pages: {', '.join(f'{c:.4f}' for c in page_cer)}); lowest confidence "
          f"{confidence:.1f}")
    assert whole < MAX_CER and max(page_cer) < MAX_CER
    assert confidence > 85
