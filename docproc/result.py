"""What an extractor hands back before it becomes a Document."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class PageResult:
    number: int  # 1-based
    text: str
    ocr: bool  # the text came from Tesseract
    reason: str  # the OCR decision's reason (ocr_policy.Reason)
    confidence: float | None = None  # mean word confidence when OCRed


@dataclass(slots=True)
class Extracted:
    """Pages (PDF, e-books, images) or one text (HTML, plain text), plus what is known of it."""

    extractor: str  # name and version
    pages: list[PageResult] = field(default_factory=list)
    text: str = ""  # formats without pages; for paged formats the pages are joined later
    page_count: int = 0  # pages in the document (0: a format without pages)
    title: str = ""
    lang: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    cleaned: bool = False  # text is already cleaned (pages are cleaned when joined)
    record_meta: dict[str, str] = field(default_factory=dict)  # for Document.meta (mail fields)
    cut: dict[str, int] = field(default_factory=dict)  # what caps left out: "rows" -> count
