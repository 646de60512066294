"""Does this page need OCR? A decision with a reason, cheapest checks first.

The page is seen through a `PageProbe`, so the costly measurements (image coverage, fonts,
drawings) run only when the cheap ones cannot decide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pipeline.config import OcrMode

MIN_TEXT_CHARS = 200  # a page with fewer characters than this may be a scan with a stray label
IMAGE_PAGE_SHARE = 0.5  # ... when images cover at least this share of it
GARBLED_SHARE = 0.1  # share of unmapped glyphs (U+FFFD, private use, controls) that means garbled
GARBLED_MIN_CHARS = 5  # a couple of odd bullets on a short page are not garbled text
OCR_LAYER_FONT = "GlyphLessFont"  # the invisible font Tesseract and OCRmyPDF write
# what else an unmapped glyph comes out as: private use, control characters but tab and newline
# (a pattern, not a loop over the characters: that was a fifth of the stage on real manuals)
_ODD_CHARS = re.compile("[\ue000-\uf8ff\x00-\x08\x0b-\x1f]")


class Reason(StrEnum):
    OCR_OFF = "ocr_off"  # mode never
    FORCED = "forced"  # mode force
    NO_TEXT_LAYER = "no_text_layer"  # no text but images or drawings: a scan
    BLANK_PAGE = "blank_page"  # nothing on the page at all
    IMAGE_PAGE_LITTLE_TEXT = "image_page_little_text"  # mostly image, a few characters
    GARBLED_TEXT = "garbled_text"  # fonts without a Unicode mapping
    REDO_OCR_LAYER = "redo_ocr_layer"  # an earlier OCR layer, redo asked
    HAS_OCR_LAYER = "has_ocr_layer"  # a scan with an earlier OCR layer, kept (no redo)
    HAS_TEXT = "has_text"  # a good text layer
    IMAGE = "image"  # an image file: OCR is the only way to its text


@dataclass(frozen=True, slots=True)
class OcrDecision:
    ocr: bool
    reason: Reason


class PageProbe(Protocol):
    """Lazy measurements of one page; each is computed only if the decision asks for it."""

    def image_share(self) -> float:
        """Share of the page area covered by images, 0..1."""
        ...

    def has_marks(self) -> bool:
        """Whether anything at all is drawn (images, paths, text)."""
        ...

    def has_ocr_layer(self) -> bool:
        """Whether the page uses the invisible font of an earlier OCR."""
        ...


def text_counts(text: str) -> tuple[int, int]:
    """(visible characters, unmapped ones) of a page's text layer."""
    chars = len(text) - text.count(" ") - text.count("\n") - text.count("\t")
    bad = text.count("\ufffd")
    if bad or not text.isascii():
        bad += len(_ODD_CHARS.findall(text))
    return chars, bad


def decide(mode: OcrMode, text: str, probe: PageProbe, redo: bool = False) -> OcrDecision:
    """Whether to OCR a page whose text layer is `text`, and why."""
    if mode is OcrMode.NEVER:
        return OcrDecision(False, Reason.OCR_OFF)
    if mode is OcrMode.FORCE:
        return OcrDecision(True, Reason.FORCED)
    chars, bad = text_counts(text)
    if chars == 0:
        if probe.has_marks():
            return OcrDecision(True, Reason.NO_TEXT_LAYER)
        return OcrDecision(False, Reason.BLANK_PAGE)
    if bad >= GARBLED_MIN_CHARS and bad >= GARBLED_SHARE * chars:
        return OcrDecision(True, Reason.GARBLED_TEXT)
    if redo and probe.has_ocr_layer():
        return OcrDecision(True, Reason.REDO_OCR_LAYER)
    if chars < MIN_TEXT_CHARS and probe.image_share() >= IMAGE_PAGE_SHARE:
        if not redo and probe.has_ocr_layer():  # short, but an OCR engine already read it
            return OcrDecision(False, Reason.HAS_OCR_LAYER)
        return OcrDecision(True, Reason.IMAGE_PAGE_LITTLE_TEXT)
    return OcrDecision(False, Reason.HAS_TEXT)
