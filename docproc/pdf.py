"""PDF and the other formats PyMuPDF opens (EPUB, XPS, FB2, MOBI, CBZ): text per page in
reading order, with a per-page OCR decision and Tesseract where it says so."""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# PyMuPDF 2 imports its optional layout analyser, which loads an ONNX model and starts a
# native thread pool (0.45 s of the 0.9 s import), and pymupdf4llm where installed (numpy and
# onnxruntime: 0.66 s more), for wrappers text extraction never uses. Blocking those imports
# keeps workers and the cllm_* tools quick to start; they are unblocked afterwards, so code
# that wants `pymupdf.layout` or `pymupdf4llm` can still import them.
if "pymupdf" not in sys.modules and sys.modules.keys().isdisjoint(
        ("pymupdf.layout", "pymupdf4llm")):
    sys.modules.update(dict.fromkeys(("pymupdf.layout", "pymupdf4llm")))  # None: "absent"
    try:
        import pymupdf
    finally:
        del sys.modules["pymupdf.layout"], sys.modules["pymupdf4llm"]
import pymupdf  # noqa: E402

from docproc.budget import TimeBudget
from docproc.ocr import ocr_pixmap
from docproc.ocr_policy import OCR_LAYER_FONT, OcrDecision, OcrMode, Reason, decide
from docproc.reading import join_blocks, reading_order
from docproc.result import Extracted, PageResult
from pipeline.errors import (
    CorruptInput,
    EncryptedInput,
    InputError,
    TooLargeInput,
)

log = logging.getLogger(__name__)

# Unmapped glyphs come out as U+FFFD (no TEXT_USE_CID_FOR_UNKNOWN_UNICODE), so the OCR decision
# can count them; ligatures are expanded; image blocks are kept to measure image coverage.
TEXT_FLAGS = pymupdf.TEXT_MEDIABOX_CLIP | pymupdf.TEXT_PRESERVE_IMAGES
TEXT_BLOCK, IMAGE_BLOCK = 0, 1
# MuPDF messages that only say the cross-reference table was rebuilt: the content is intact.
XREF_REPAIR_MESSAGES = ("startxref", "repair", "xref", "trailer")
XREF_REPAIRED_MARK = "repairing pdf document"  # MuPDF's line when it starts the rebuild


def _silence_mupdf() -> None:
    pymupdf.TOOLS.mupdf_display_errors(False)
    pymupdf.TOOLS.mupdf_display_warnings(False)


def pymupdf_version() -> str:
    return f"pymupdf {pymupdf.__version__} (mupdf {pymupdf.mupdf_version})"


# MuPDF's own errors (pymupdf.mupdf.FzError*: a cycle in the page tree, a limit hit) are not
# RuntimeErrors; every call into a document catches them with the Python ones.
MUPDF_ERRORS = (pymupdf.FileDataError, pymupdf.mupdf.FzErrorBase, RuntimeError, ValueError)
# "code=2: malloc (N bytes) failed" (FZ_ERROR_SYSTEM: out of memory, e.g. under the worker's
# extract.max_memory_mb) and "code=5: ..." (FZ_ERROR_LIMIT: "text too large") mean the input
# needs more than we give it, not that it is damaged.
_TOO_BIG = re.compile(r"code=5:|malloc|out of memory|MemoryError|too large", re.IGNORECASE)


def input_error(source: str, what: str, e: BaseException, path: Path | None = None
                ) -> InputError:
    """The InputError for a MuPDF failure on `what` ("PDF", "page 3") of `source`."""
    reason = str(e) or type(e).__name__
    if path is not None:
        reason = reason.replace(f" '{path}'", "")  # the source names the input, not our copy
    if isinstance(e, MemoryError) or _TOO_BIG.search(reason):
        return TooLargeInput(source, f"{what} needs more memory than extract.max_memory_mb "
                                     f"allows, or passes a MuPDF limit: {reason}")
    return CorruptInput(source, f"damaged or truncated {what}: {reason}")


def _pin_character_boxes() -> None:
    """MuPDF's character quad corrections on, as MuPDF defaults. Importing `pymupdf.layout`
    (PyMuPDF 2 does, unless blocked as above; pymupdf4llm does) turns them off for the whole
    process, which shrinks line boxes and so changes the paragraph breaks and reading order
    we derive from them (in 23 of 45 manuals under /usr/share/doc): the text of a PDF must not
    depend on what the process imported first. Off is 10-25% faster in `get_text`; the
    benchmark's bare loop keeps them on too."""
    pymupdf.TOOLS.unset_quad_corrections(False)


def open_document(path: Path, source: str, max_pages: int, filetype: str | None = None) -> Any:
    """Open a document, refusing encrypted, damaged and over-long ones with a reason."""
    _silence_mupdf()
    pymupdf.TOOLS.reset_mupdf_warnings()
    _pin_character_boxes()
    kind = (filetype or "pdf").upper()
    try:
        doc = pymupdf.open(str(path), filetype=filetype)
    except pymupdf.EmptyFileError:
        raise CorruptInput(source, f"empty {kind} stream") from None
    except (*MUPDF_ERRORS, MemoryError) as e:
        raise input_error(source, kind, e, path) from None
    try:
        if doc.needs_pass and not doc.authenticate(""):
            raise EncryptedInput(source, f"encrypted {kind}: a password is needed to open it")
        try:
            count = doc.page_count
        except (*MUPDF_ERRORS, MemoryError) as e:
            raise input_error(source, kind, e) from None
        if count == 0:
            raise CorruptInput(source, f"damaged or truncated {kind}: no pages")
        if count > max_pages:
            raise TooLargeInput(source, f"{count} pages is over extract.max_pages={max_pages}")
    except BaseException:
        doc.close()
        raise
    return doc


def damage_report(doc: Any) -> str:
    """What MuPDF had to repair beyond the cross-reference table ("" when nothing was lost)."""
    if not doc.is_pdf or not doc.is_repaired:
        return ""
    messages = [m for m in pymupdf.TOOLS.mupdf_warnings().splitlines() if m.strip()]
    # What MuPDF met before it rebuilt the xref ("expected 'obj' keyword" at an offset the
    # broken table gave) says only that the table was wrong; damage shows up after.
    for i in range(len(messages) - 1, -1, -1):
        if XREF_REPAIRED_MARK in messages[i].lower():
            messages = messages[i + 1:]
            break
    lost = [m for m in messages if not any(k in m.lower() for k in XREF_REPAIR_MESSAGES)]
    return "; ".join(lost[:3])


def metadata(doc: Any) -> dict[str, str]:
    meta = {k: str(v) for k, v in (doc.metadata or {}).items() if v}
    meta["pages"] = str(doc.page_count)
    return meta


# --- one page ---------------------------------------------------------------------------


class _Probe:
    """The OCR decision's lazy view of a page (see ocr_policy.PageProbe)."""

    def __init__(self, page: Any, image_blocks: list[tuple]) -> None:
        self.page = page
        self.image_blocks = image_blocks

    def image_share(self) -> float:
        rect = self.page.rect
        area = max(rect.width * rect.height, 1e-6)
        covered = 0.0
        for b in self.image_blocks:
            box = pymupdf.Rect(b[:4]) & rect
            if not box.is_empty:
                covered += box.width * box.height
        return min(1.0, covered / area)

    def has_marks(self) -> bool:
        return bool(self.image_blocks) or bool(self.page.get_bboxlog())

    def has_ocr_layer(self) -> bool:
        return any(OCR_LAYER_FONT in (font[3] or "") for font in self.page.get_fonts())


def page_blocks(page: Any, textpage: Any = None) -> tuple[list[tuple], list[tuple]]:
    """(text blocks in reading order, image blocks) of a page (`textpage`: made for it)."""
    blocks = (textpage or page.get_textpage(flags=TEXT_FLAGS)).extractBLOCKS()
    text_blocks = [b for b in blocks if b[6] == TEXT_BLOCK]
    images = [b for b in blocks if b[6] == IMAGE_BLOCK]
    return reading_order(text_blocks), images


def page_text(page: Any, textpage: Any = None) -> tuple[str, list[tuple]]:
    """(text layer in reading order, image blocks) of a page (`textpage`: made for it)."""
    text_blocks, images = page_blocks(page, textpage)
    return join_blocks(text_blocks), images


def decide_page(page: Any, mode: OcrMode, redo: bool = False, textpage: Any = None
                ) -> tuple[str, OcrDecision]:
    text, images = page_text(page, textpage)
    return text, decide(mode, text, _Probe(page, images), redo)


def _markdown_page(page: Any, mode: OcrMode, redo: bool) -> tuple[str, OcrDecision]:
    """Markdown mode's page: the OCR decision on text mode's text, then, where the text layer
    is kept, that layer marked up from the same text page and blocks."""
    from docproc.pdf_markdown import page_markdown

    textpage = page.get_textpage(flags=TEXT_FLAGS)
    text_blocks, images = page_blocks(page, textpage)
    text = join_blocks(text_blocks)
    decision = decide(mode, text, _Probe(page, images), redo)
    if decision.ocr or not text:
        return text, decision
    return page_markdown(page, TEXT_FLAGS, textpage, text_blocks), decision


def render_dpi(page: Any, dpi: int, max_pixels: int) -> int:
    """`dpi`, or lower where the page would render to more than `max_pixels` pixels."""
    rect = page.rect
    pixels = (rect.width * dpi / 72) * (rect.height * dpi / 72)
    if pixels <= max_pixels:
        return dpi
    return max(1, int(dpi * math.sqrt(max_pixels / pixels)))  # the memory limit wins


def ocr_page(page: Any, *, lang: str, psm: int, dpi: int, max_pixels: int, source: str,
             deadline: float | None) -> tuple[str, float | None]:
    use_dpi = render_dpi(page, dpi, max_pixels)
    if use_dpi != dpi:
        log.info("%s: page %d rendered at %d dpi (too large for %d)", source, page.number + 1,
                 use_dpi, dpi)
    try:
        pix = page.get_pixmap(dpi=use_dpi, colorspace=pymupdf.csGRAY, alpha=False)
    except (*MUPDF_ERRORS, MemoryError) as e:
        raise input_error(source, f"page {page.number + 1}", e) from None
    result = ocr_pixmap(pix, lang=lang, psm=psm, dpi=use_dpi, source=source, deadline=deadline)
    return result.text, result.confidence


def iter_pages(doc: Any, numbers: Sequence[int], *, mode: OcrMode, redo: bool, lang: str,
               psm: int, dpi: int, max_pixels: int, source: str, budget: TimeBudget | None,
               markdown: bool = False) -> Iterator[PageResult]:
    """Each requested page (1-based numbers): its text layer or, where decided, its OCR text
    (`markdown`: the text layer with headings, lists and tables marked up)."""
    count = doc.page_count  # a call into MuPDF each time it is read
    for number in numbers:
        if budget is not None:
            budget.check(source, f"page {number} of {count}")
        try:
            page = doc.load_page(number - 1)
            text, decision = (_markdown_page if markdown else decide_page)(page, mode, redo)
        except (*MUPDF_ERRORS, MemoryError) as e:
            raise input_error(source, f"page {number}", e) from None
        confidence = None
        if decision.ocr:
            text, confidence = ocr_page(page, lang=lang, psm=psm, dpi=dpi,
                                        max_pixels=max_pixels, source=source,
                                        deadline=budget.deadline if budget else None)
        yield PageResult(number=number, text=text, ocr=decision.ocr, reason=str(decision.reason),
                         confidence=confidence)


def page_numbers(count: int, only: Sequence[int] | None, source: str) -> list[int]:
    if not only:
        return list(range(1, count + 1))
    bad = [n for n in only if not 1 <= n <= count]
    if bad:
        from pipeline.errors import InputError

        raise InputError(source, f"no page {bad[0]} (the document has {count} pages)")
    return list(only)


def extract_pymupdf(path: Path, *, source: str, filetype: str | None, mode: OcrMode,
                    redo: bool, lang: str, psm: int, dpi: int, max_pages: int, max_pixels: int,
                    only_pages: Sequence[int] | None = None,
                    budget: TimeBudget | None = None, markdown: bool = False) -> Extracted:
    """Pages of a PDF (or EPUB, XPS, ...) with the OCR decision applied to each."""
    doc = open_document(path, source, max_pages, filetype)
    try:
        numbers = page_numbers(doc.page_count, only_pages, source)
        if budget is not None:
            budget.grant(doc.page_count)
        pages = list(iter_pages(doc, numbers, mode=mode, redo=redo, lang=lang, psm=psm, dpi=dpi,
                                max_pixels=max_pixels, source=source, budget=budget,
                                markdown=markdown))
        damage = damage_report(doc)
        if damage:
            raise CorruptInput(source, f"damaged or truncated PDF, content lost: {damage}")
        try:
            meta = metadata(doc)
        except MUPDF_ERRORS as e:
            log.info("%s: metadata unreadable (%s)", source, e)
            meta = {"pages": str(doc.page_count)}
        return Extracted(extractor=pymupdf_version(), pages=pages, page_count=doc.page_count,
                         title=meta.get("title", "").strip(), lang=_doc_lang(doc),
                         metadata=meta)
    finally:
        doc.close()


def _doc_lang(doc: Any) -> str:
    try:
        lang = doc.language or ""
    except (AttributeError, *MUPDF_ERRORS):
        return ""
    return lang.split("-")[0].lower()


def classify(path: Path, source: str, max_pages: int, filetype: str | None = None) -> str:
    """"text", "image" or "mixed": whether pages need OCR (auto decision), without OCR."""
    doc = open_document(path, source, max_pages, filetype)
    try:
        decisions = [decide_page(doc.load_page(i), OcrMode.AUTO)[1]
                     for i in range(doc.page_count)]
    finally:
        doc.close()
    needs = [d.ocr for d in decisions if d.reason is not Reason.BLANK_PAGE]
    if not any(needs):
        return "text"
    return "image" if all(needs) else "mixed"
