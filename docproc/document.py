"""One file in, one Document out: detection, the extractor for its kind, clean-up, stats."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path

from docproc.budget import TimeBudget
from docproc.cleanup import clean_pages, clean_text
from docproc.detect import Detected, Kind, detect
from docproc.ocr_policy import OcrMode, Reason
from docproc.options import ExtractOptions
from docproc.result import Extracted, PageResult
from pipeline.errors import CorruptInput, EmptyInput, EncryptedInput, TooLargeInput
from pipeline.rawstore import sha256_file
from pipeline.records import Document, PageInfo
from pipeline.text import CharCounts, char_counts

log = logging.getLogger(__name__)

TITLE_MAX_CHARS = 200
# a ZIP member may unpack to 1/UNPACK_SHARE of the worker's memory: MuPDF holds the
# unpacked bytes and the tree it parses from them
UNPACK_SHARE = 2
_INDENT = re.compile(r"^[ \t]+", re.MULTILINE)
# an indented line after the first, found from the newlines (the regex engine skips to each in
# a C loop, where `"\n " in text` tests every space)
_INDENTED = re.compile(r"\n[ \t]")


def extract_file(path: Path, opts: ExtractOptions, *, source: str = "", claimed_mime: str = "",
                 sha256: str = "", budget: TimeBudget | None = None,
                 found: Detected | None = None) -> Document:
    """Extract the file at `path` into a Document; bad input raises an InputError naming it.

    `budget` is the time it may take (None: no limit); `found`, its type when known.
    """
    source = source or str(path)
    started = time.monotonic()
    found = found or detect(path, source, claimed_mime)
    extracted = _run_extractor(path, found, opts, source, budget)
    doc = build_document(extracted, found, source=source, opts=opts,
                         sha256=sha256 or sha256_file(path))
    doc.stats["seconds"] = round(time.monotonic() - started, 3)
    return doc


def check_unpacked_size(path: Path, source: str, max_memory_mb: int) -> None:
    """Refuse a ZIP container (EPUB, XPS, CBZ) with a member too big to unpack in memory.

    MuPDF inflates a member whole, into a buffer of the size the archive declares, and then
    parses it: a zip bomb (a few MB holding a GB of text) would take the worker's memory.
    """
    import zipfile

    if not max_memory_mb or not zipfile.is_zipfile(path):
        return
    limit = max_memory_mb * 1024 * 1024 // UNPACK_SHARE
    try:
        with zipfile.ZipFile(path) as zf:
            biggest = max(zf.infolist(), key=lambda i: i.file_size, default=None)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CorruptInput(source, f"damaged ZIP container: {e}") from None
    if biggest is not None and biggest.file_size > limit:
        raise TooLargeInput(source, f"member {biggest.filename} unpacks to "
                                    f"{biggest.file_size / 1e6:.0f} MB from "
                                    f"{biggest.compress_size / 1e6:.1f} MB (zip bomb?): over "
                                    f"1/{UNPACK_SHARE} of extract.max_memory_mb={max_memory_mb}")


def _run_extractor(path: Path, found: Detected, opts: ExtractOptions, source: str,
                   budget: TimeBudget | None) -> Extracted:
    if found.kind in (Kind.PDF, Kind.EBOOK):
        from docproc.pdf import extract_pymupdf

        if found.kind is Kind.EBOOK:
            check_unpacked_size(path, source, opts.max_memory_mb)
        return extract_pymupdf(path, source=source, filetype=found.filetype, mode=opts.ocr,
                               redo=opts.ocr_redo, lang=opts.lang, psm=opts.psm, dpi=opts.dpi,
                               max_pages=opts.max_pages, max_pixels=opts.max_image_pixels,
                               only_pages=opts.pages, budget=budget,
                               markdown=opts.format == "markdown")
    if found.kind is Kind.IMAGE:
        return extract_image(path, found.mime, opts, source, budget)
    if found.kind is Kind.HTML:
        from docproc.html import extract_html

        return extract_html(path, source, markdown=opts.format == "markdown")
    if found.kind in OFFICE_READERS:
        return _office(path, found, opts, source)
    if found.kind is Kind.ENCRYPTED:
        raise EncryptedInput(source, "password-protected Office file (an encrypted package): "
                                     "a password is needed to open it")
    from docproc.text import extract_text

    return extract_text(path, source)


# kind -> (module, function) of the reader: imported when a file of that kind comes
OFFICE_READERS = {Kind.DOCX: ("docproc.office", "extract_docx"),
                  Kind.PPTX: ("docproc.office", "extract_pptx"),
                  Kind.XLSX: ("docproc.office", "extract_xlsx"),
                  Kind.ODF: ("docproc.odf", "extract_odf"),
                  Kind.RTF: ("docproc.rtf", "extract_rtf")}


def _office(path: Path, found: Detected, opts: ExtractOptions, source: str) -> Extracted:
    import importlib

    if found.kind is not Kind.RTF:  # ZIP packages: no member may unpack past the memory cap
        check_unpacked_size(path, source, opts.max_memory_mb or opts.max_unpacked_mb * UNPACK_SHARE)
    module, name = OFFICE_READERS[found.kind]
    reader = getattr(importlib.import_module(module), name)
    return reader(path, source) if found.kind is Kind.RTF else reader(path, source, opts)


def extract_image(path: Path, mime: str, opts: ExtractOptions, source: str,
                  budget: TimeBudget | None) -> Extracted:
    """OCR each page of an image file (each TIFF page; one frame of a GIF/WebP)."""
    from docproc.image import frame_count, iter_frames, ocr_frame, open_image
    from docproc.ocr import iso_lang, tesseract_version
    from docproc.pdf import page_numbers

    with open_image(path, source, opts.max_image_pixels) as img:
        count = frame_count(img, mime)
        if count > opts.max_pages:
            raise TooLargeInput(source, f"{count} pages is over extract.max_pages="
                                        f"{opts.max_pages}")
        wanted = set(page_numbers(count, opts.pages, source))
        if budget is not None:
            budget.grant(count)
        pages = []
        for number, frame in enumerate(iter_frames(img, mime, source, opts.max_image_pixels), 1):
            if number not in wanted:
                continue
            if opts.ocr is OcrMode.NEVER:
                pages.append(PageResult(number, "", False, str(Reason.OCR_OFF)))
                continue
            result = ocr_frame(frame, lang=opts.lang, psm=opts.psm, dpi=opts.image_dpi,
                               preprocess=opts.preprocess, source=source,
                               deadline=budget.deadline if budget else None)
            pages.append(PageResult(number, result.text, True, str(Reason.IMAGE),
                                    result.confidence))
    return Extracted(extractor=f"tesseract {tesseract_version()}", pages=pages,
                     page_count=count, lang=iso_lang(opts.lang))


def word_count(text: str, counts: CharCounts | None = None) -> int:
    """Whitespace-separated words of a cleaned text (counted without splitting where its only
    whitespace is spaces, tabs and newlines; `counts`: the text's, when known).

    Clean-up leaves single spaces between words, no trailing blanks and at most one blank
    line in a row, so separators can be counted; leading indentation is not a separator.
    """
    if not text:
        return 0
    counts = counts or char_counts(text)
    if counts.other_spaces:
        return len(text.split())
    indent = 0
    if text[0] in " \t" or _INDENTED.search(text):
        indent = sum(len(m) for m in _INDENT.findall(text))
    lines = counts.newlines + 1 - text.count("\n\n")
    return counts.blanks - indent + lines


def _text_stats(text: str) -> dict[str, float]:
    counts = char_counts(text)  # one pass for the words and the alpha ratio
    return {"chars": len(text), "words": word_count(text, counts),
            "lines": counts.newlines + 1 if text else 0,
            "alpha_ratio": round(counts.alpha_ratio, 4)}


def _ocr_stats(pages: Sequence[PageResult]) -> dict[str, float]:
    ocred = [p for p in pages if p.ocr]
    if not pages:
        return {}
    out: dict[str, float] = {"ocr_share": round(len(ocred) / len(pages), 4)}
    confidences = [p.confidence for p in ocred if p.confidence is not None]
    if confidences:
        out["ocr_confidence"] = round(sum(confidences) / len(confidences), 2)
    return out


def _fallback_title(text: str, source: str) -> str:
    # the text starts non-blank; a Markdown heading's marks are no part of its title
    first = text[:TITLE_MAX_CHARS + 1].partition("\n")[0].lstrip("#").strip()
    if 0 < len(first) <= TITLE_MAX_CHARS:
        return first
    return Path(source.rstrip("/")).name


def _extractor_name(extracted: Extracted, pages: Sequence[PageResult]) -> str:
    if any(p.ocr for p in pages) and not extracted.extractor.startswith("tesseract"):
        from docproc.ocr import tesseract_version

        return f"{extracted.extractor} + tesseract {tesseract_version()}"
    return extracted.extractor


def build_document(extracted: Extracted, found: Detected, *, source: str, opts: ExtractOptions,
                   sha256: str) -> Document:
    """Clean the extracted text and wrap it, with per-page facts and stats, as a Document."""
    from docproc.ocr import iso_lang

    pages = extracted.pages
    if extracted.page_count:
        page_texts, text = clean_pages([p.text for p in pages])
    else:
        page_texts, text = [], clean_text(extracted.text)
    if not text:
        reasons = sorted({p.reason for p in pages})
        detail = f" ({len(pages)} pages: {', '.join(reasons)})" if pages else ""
        raise EmptyInput(source, f"no text found{detail}")
    info = [PageInfo(number=p.number, chars=len(t), ocr=p.ocr, reason=p.reason,
                     confidence=p.confidence) for p, t in zip(pages, page_texts, strict=True)]
    ocr_pages = [p.number for p in pages if p.ocr]
    lang = extracted.lang or (iso_lang(opts.lang) if ocr_pages else "")
    stats = _text_stats(text) | _ocr_stats(pages)
    title = " ".join(extracted.title.split())[:TITLE_MAX_CHARS] or _fallback_title(text, source)
    stats.update({f"cut_{what}": n for what, n in extracted.cut.items()})
    return Document(id=sha256, source=source, mime=found.mime, text=text, title=title,
                    pages=extracted.page_count, ocr_pages=ocr_pages, page_info=info, lang=lang,
                    extractor=_extractor_name(extracted, pages), stats=stats,
                    meta=dict(extracted.record_meta))
