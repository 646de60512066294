"""PDF text, reading order, the per-page OCR decision and bad PDFs, on PDFs made here."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest
from formatkit import MARKUP, table_pdf_bytes, word_bag_f1
from test_docproc_samples import (
    garbled_pdf_bytes,
    image_page_with_label_pdf,
    mixed_pdf_bytes,
    ocr_layer_pdf_bytes,
    page_texts,
    scanned_pdf_bytes,
    text_pdf_bytes,
    two_column_pdf_bytes,
    write,
)

from docproc.document import extract_file
from docproc.ocr_policy import OcrDecision, OcrMode, Reason, decide
from docproc.options import ExtractOptions
from docproc.pdf import decide_page, render_dpi
from pipeline.errors import CorruptInput, EncryptedInput, TooLargeInput


class CountingProbe:
    """A page seen through the probe interface, counting what the decision asks."""

    def __init__(self, image_share: float = 0.0, marks: bool = True, ocr_layer: bool = False):
        self._share, self._marks, self._layer = image_share, marks, ocr_layer
        self.calls: list[str] = []

    def image_share(self) -> float:
        self.calls.append("image_share")
        return self._share

    def has_marks(self) -> bool:
        self.calls.append("has_marks")
        return self._marks

    def has_ocr_layer(self) -> bool:
        self.calls.append("has_ocr_layer")
        return self._layer


LONG_TEXT = "word " * 100


def test_a_page_with_plenty_of_text_is_decided_without_measuring_the_page() -> None:
    probe = CountingProbe(image_share=1.0)
    assert decide(OcrMode.AUTO, LONG_TEXT, probe) == OcrDecision(False, Reason.HAS_TEXT)
    assert probe.calls == []


@pytest.mark.parametrize(("mode", "text", "probe", "redo", "expected"), [
    (OcrMode.NEVER, "", CountingProbe(), False, (False, Reason.OCR_OFF)),
    (OcrMode.FORCE, LONG_TEXT, CountingProbe(), False, (True, Reason.FORCED)),
    (OcrMode.AUTO, "  \n", CountingProbe(marks=True), False, (True, Reason.NO_TEXT_LAYER)),
    (OcrMode.AUTO, "", CountingProbe(marks=False), False, (False, Reason.BLANK_PAGE)),
    (OcrMode.AUTO, "Page 3", CountingProbe(image_share=0.9), False,
     (True, Reason.IMAGE_PAGE_LITTLE_TEXT)),
    (OcrMode.AUTO, "Page 3", CountingProbe(image_share=0.1), False, (False, Reason.HAS_TEXT)),
    (OcrMode.AUTO, "ab\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd", CountingProbe(), False,
     (True, Reason.GARBLED_TEXT)),
    (OcrMode.AUTO, LONG_TEXT + "\ufffd" * 5, CountingProbe(), False, (False, Reason.HAS_TEXT)),
    (OcrMode.AUTO, LONG_TEXT, CountingProbe(ocr_layer=True), True, (True, Reason.REDO_OCR_LAYER)),
    (OcrMode.AUTO, LONG_TEXT, CountingProbe(ocr_layer=True), False, (False, Reason.HAS_TEXT)),
    (OcrMode.AUTO, "Page 3", CountingProbe(image_share=0.9, ocr_layer=True), False,
     (False, Reason.HAS_OCR_LAYER)),
])
def test_decision_table(mode: OcrMode, text: str, probe: CountingProbe, redo: bool,
                        expected: tuple[bool, Reason]) -> None:
    assert decide(mode, text, probe, redo) == OcrDecision(*expected)


def _first_page(data: bytes) -> pymupdf.Page:
    return pymupdf.open(stream=data, filetype="pdf")[0]


def test_real_pages_get_the_reason_that_fits_them() -> None:
    text = text_pdf_bytes(page_texts(1))
    blank = pymupdf.open()
    blank.new_page()
    cases = {
        "text": (text, False, Reason.HAS_TEXT),
        "scan": (scanned_pdf_bytes(text, dpi=50), False, Reason.NO_TEXT_LAYER),
        "blank": (blank.tobytes(), False, Reason.BLANK_PAGE),
        "stamped scan": (image_page_with_label_pdf("Page 3", dpi=50), False,
                         Reason.IMAGE_PAGE_LITTLE_TEXT),
        "garbled": (garbled_pdf_bytes("The quick brown fox"), False, Reason.GARBLED_TEXT),
    }
    for name, (data, redo, reason) in cases.items():
        _, decision = decide_page(_first_page(data), OcrMode.AUTO, redo)
        assert decision.reason is reason, name
        assert decision.ocr == (reason is not Reason.HAS_TEXT and reason is not Reason.BLANK_PAGE)


@pytest.mark.slow
def test_an_earlier_ocr_layer_is_kept_unless_redo_is_asked() -> None:
    short = ocr_layer_pdf_bytes("Some scanned words on a page.", dpi=100)
    full = ocr_layer_pdf_bytes(page_texts(1)[0], dpi=100)
    assert decide_page(_first_page(full), OcrMode.AUTO, False)[1].reason is Reason.HAS_TEXT
    assert decide_page(_first_page(short), OcrMode.AUTO, False)[1].reason is Reason.HAS_OCR_LAYER
    for data in (short, full):
        assert decide_page(_first_page(data), OcrMode.AUTO, True)[1].reason \
            is Reason.REDO_OCR_LAYER


def test_text_pdf_pages_come_out_in_order_with_paragraph_breaks(tmp_path: Path) -> None:
    texts = page_texts(3)
    doc = extract_file(write(tmp_path / "t.pdf", text_pdf_bytes(texts)), ExtractOptions())
    assert doc.pages == 3 and doc.ocr_pages == []
    assert [p.reason for p in doc.page_info] == ["has_text"] * 3
    paragraphs = [p for t in texts for p in t.split("\n\n")]
    flat = [" ".join(p.split()) for p in doc.text.split("\n\n")]
    assert flat == paragraphs
    assert doc.extractor.startswith("pymupdf") and doc.mime == "application/pdf"
    assert doc.stats["words"] == sum(len(t.split()) for t in texts)


def test_two_columns_are_read_column_by_column(tmp_path: Path) -> None:
    left = ["Left one alpha.", "Left two beta."]
    right = ["Right one gamma.", "Right two delta."]
    data = two_column_pdf_bytes("The Title Line", left, right, right_first=True)
    doc = extract_file(write(tmp_path / "cols.pdf", data), ExtractOptions(ocr=OcrMode.NEVER))
    order = [doc.text.index(s) for s in ["The Title Line", *left, *right]]
    assert order == sorted(order), doc.text
    # pymupdf's sort=True reads rows across both columns, interleaving them
    sorted_text = _first_page(data).get_text(sort=True)
    assert sorted_text.index("Right one") < sorted_text.index("Left two")


@pytest.mark.slow
def test_garbled_and_scanned_pages_are_ocred_and_text_pages_are_not(tmp_path: Path) -> None:
    texts = page_texts(3, words=60, seed=3)
    data = mixed_pdf_bytes(texts, scanned={2}, dpi=150)
    garbled = pymupdf.open(stream=garbled_pdf_bytes("The quick brown fox jumps"),
                           filetype="pdf")
    doc_pdf = pymupdf.open(stream=data, filetype="pdf")
    doc_pdf.insert_pdf(garbled)
    path = write(tmp_path / "mixed.pdf", doc_pdf.tobytes())
    doc = extract_file(path, ExtractOptions(dpi=150))
    assert doc.ocr_pages == [2, 4]
    assert [p.reason for p in doc.page_info] == ["has_text", "no_text_layer", "has_text",
                                                  "garbled_text"]
    assert "\ufffd" not in doc.text and "quick brown fox jumps" in doc.text
    ocr_info = [p for p in doc.page_info if p.ocr]
    assert all(p.confidence is not None and 50 < p.confidence <= 100 for p in ocr_info)
    assert "tesseract" in doc.extractor and doc.lang == "en"
    first_words = texts[1].split()[:6]
    assert " ".join(first_words).lower() in " ".join(doc.text.split()).lower()


def test_never_mode_leaves_scanned_pages_empty_and_says_so(tmp_path: Path) -> None:
    texts = page_texts(2, words=40)
    path = write(tmp_path / "m.pdf", mixed_pdf_bytes(texts, scanned={2}, dpi=50))
    doc = extract_file(path, ExtractOptions(ocr=OcrMode.NEVER))
    assert doc.ocr_pages == []
    assert [(p.reason, p.chars > 0) for p in doc.page_info] == [("ocr_off", True),
                                                                 ("ocr_off", False)]


def test_password_protected_pdf_is_refused(tmp_path: Path) -> None:
    doc = pymupdf.open(stream=text_pdf_bytes(page_texts(1)), filetype="pdf")
    path = tmp_path / "locked.pdf"
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="owner")
    with pytest.raises(EncryptedInput, match="password"):
        extract_file(path, ExtractOptions())


def test_encrypted_pdf_without_user_password_is_extracted(tmp_path: Path) -> None:
    texts = page_texts(1)
    doc = pymupdf.open(stream=text_pdf_bytes(texts), filetype="pdf")
    path = tmp_path / "restricted.pdf"
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner", permissions=0)
    out = extract_file(path, ExtractOptions())
    assert " ".join(out.text.split()) == " ".join(texts[0].split())


def test_truncated_and_corrupt_pdfs_are_refused_with_a_reason(tmp_path: Path) -> None:
    data = text_pdf_bytes(page_texts(6))
    for name, blob in [("cut60.pdf", data[: len(data) * 6 // 10]),
                       ("cut20.pdf", data[: len(data) // 5]),
                       ("junk.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 40)]:
        with pytest.raises(CorruptInput, match="damaged or truncated"):
            extract_file(write(tmp_path / name, blob), ExtractOptions(ocr=OcrMode.NEVER))


def test_pdf_that_lost_only_its_xref_table_is_still_extracted(tmp_path: Path) -> None:
    texts = page_texts(2)
    data = text_pdf_bytes(texts)
    cut = data[: data.rindex(b"xref")]  # the objects are all there; MuPDF rebuilds the table
    doc = extract_file(write(tmp_path / "noxref.pdf", cut), ExtractOptions(ocr=OcrMode.NEVER))
    assert doc.pages == 2


def manual_pdf(pages: int) -> bytes:
    doc = pymupdf.open()
    for n in range(1, pages + 1):
        doc.new_page().insert_text((72, 72), f"Chapter {n // 100}, page {n}: the reference "
                                             "manual describes every function in detail.")
    return doc.tobytes()


def test_a_3000_page_manual_extracts_by_default_and_the_cap_is_a_guard(tmp_path: Path) -> None:
    path = write(tmp_path / "manual.pdf", manual_pdf(3000))
    doc = extract_file(path, ExtractOptions())  # the defaults: no page cap in the way
    assert doc.pages == 3000 and "page 2999: the reference manual" in doc.text
    assert ExtractOptions().max_pages >= 100_000  # far above any real book
    with pytest.raises(TooLargeInput, match="3000 pages is over extract.max_pages=1000"):
        extract_file(path, ExtractOptions(max_pages=1000))  # refused before any work


def test_the_time_limit_grows_with_the_pages(tmp_path: Path) -> None:
    """A base too short for 3000 pages: the per-page budget carries the manual through, in a
    worker (whose watchdog learns the pages) and in this process; without it, a timeout."""
    from docproc.pool import Task, WorkerPool, run_one

    path = write(tmp_path / "manual.pdf", manual_pdf(3000))
    task = Task(path=str(path), source=str(path))
    slow = ExtractOptions(ocr=OcrMode.NEVER, timeout_s=0.01, timeout_per_page_s=0.05)
    (outcome,) = WorkerPool(slow, workers=1, timeout_s=0.01, tasks_per_worker=5).run([task])
    assert outcome.doc is not None and outcome.doc.pages == 3000, outcome.message
    assert run_one(task, slow, slow.timeout_s).doc is not None
    no_budget = ExtractOptions(ocr=OcrMode.NEVER, timeout_s=0.01, timeout_per_page_s=0)
    failed = run_one(task, no_budget, no_budget.timeout_s)
    assert failed.error == "timeout" and "extract.timeout_s=0.01s" in failed.message


def test_markdown_mode_keeps_headings_lists_and_table_cells(tmp_path: Path) -> None:
    data, tables = table_pdf_bytes(2)
    path = write(tmp_path / "fittings.pdf", data)
    md = extract_file(path, ExtractOptions(ocr=OcrMode.NEVER, format="markdown")).text
    lines = md.splitlines()
    headings = [line for line in lines if line.startswith("# Chapter ")]
    assert [h.split(":")[0] for h in headings] == ["# Chapter 1", "# Chapter 2"]
    assert "- check the depth 2" in lines and "- log the berth 1" in lines
    for rows in tables:  # every cell in its row and column, in page order
        table = ["| " + " | ".join(row) + " |" for row in rows]
        start = lines.index(table[0], lines.index(headings[tables.index(rows)]))
        assert lines[start + 1] == "| --- | --- | --- |"
        assert lines[start + 2:start + 2 + len(rows) - 1] == table[1:]
    assert md.index("bolt-1") < md.index("Chapter 2")
    text = extract_file(path, ExtractOptions(ocr=OcrMode.NEVER)).text
    assert "|" not in text and "#" not in text  # text mode: no markup
    assert word_bag_f1(MARKUP.sub("", md), text) >= 0.98  # nothing lost, nothing twice


def test_html_saved_as_pdf_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "report.pdf", b"<!DOCTYPE html><html><body>Login</body></html>")
    with pytest.raises(CorruptInput, match="content is HTML"):
        extract_file(path, ExtractOptions())


def test_huge_pages_render_below_the_pixel_limit() -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=14400, height=14400)  # a 200-inch poster
    dpi = render_dpi(page, 300, 100_000_000)
    assert dpi < 300 and (200 * dpi) ** 2 <= 100_000_000
    assert render_dpi(doc.new_page(), 300, 100_000_000) == 300


def test_text_does_not_depend_on_pymupdf_layout_being_imported_first(tmp_path: Path) -> None:
    """`pymupdf.layout` (imported by a plain `import pymupdf` where it is installed, and by
    pymupdf4llm) turns MuPDF's character quad corrections off for the whole process; our
    extraction turns them back on, so a PDF's text is the same whatever came first."""
    import subprocess
    import sys

    pdf = tmp_path / "one.pdf"
    with pymupdf.open() as doc:
        doc.new_page().insert_text((72, 72), "Quads pinned.", fontsize=12)
        doc.save(pdf)
    probe = (
        "import pymupdf, pymupdf.layout\n"
        "before = bool(pymupdf._globals.skip_quad_corrections)\n"
        "from pathlib import Path\n"
        "from docproc.document import extract_file\n"
        "from docproc.options import ExtractOptions\n"
        f"text = extract_file(Path({str(pdf)!r}), ExtractOptions(ocr='never')).text\n"
        "print(before, bool(pymupdf._globals.skip_quad_corrections), text.strip())\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert out[:2] == ["True", "False"], out  # layout had them off; extraction put them on
    assert " ".join(out[2:]) == "Quads pinned."
