"""Image files (PNG, JPEG, TIFF incl. multi-page, BMP, GIF, WebP): guarded opening and OCR."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from docproc.ocr import OcrResult, ocr_image
from pipeline.errors import CorruptInput, TooLargeInput

log = logging.getLogger(__name__)

UPSCALE_BELOW_PX = 1200  # images whose longer side is shorter are upscaled for Tesseract
UPSCALE_FACTOR = 2
MIN_DPI = 50  # resolutions stored below this are wrong more often than not
SINGLE_FRAME_MIMES = frozenset({"image/gif", "image/webp"})  # frames are animation, not pages


def _pil() -> Any:
    from PIL import Image

    return Image


def open_image(path: Path, source: str, max_pixels: int) -> Any:
    """Open an image lazily, refusing decompression bombs before any pixel is decoded."""
    Image = _pil()
    # Pillow itself warns above MAX_IMAGE_PIXELS and raises above twice that; we refuse above
    # max_pixels ourselves, with a reason, so Pillow's own guard only needs to sit higher.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as e:
        raise TooLargeInput(source, f"image decompression bomb refused: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptInput(source, f"unreadable image: {e}") from None
    _check_pixels(img.size, source, max_pixels)
    return img


def _check_pixels(size: tuple[int, int], source: str, max_pixels: int, frame: int = 0) -> None:
    w, h = size
    if w * h > max_pixels:
        where = f"frame {frame + 1} " if frame else ""
        raise TooLargeInput(source, f"image {where}of {w}x{h} = {w * h} pixels is over "
                                    f"extract.max_image_pixels={max_pixels} (decompression bomb?)")


def frame_count(img: Any, mime: str) -> int:
    if mime in SINGLE_FRAME_MIMES:
        return 1
    return max(1, getattr(img, "n_frames", 1))


def iter_frames(img: Any, mime: str, source: str, max_pixels: int) -> Iterator[Any]:
    """Each page of the image (TIFF pages; GIF/WebP: the first frame only), decoded."""
    for n in range(frame_count(img, mime)):
        try:
            img.seek(n)
            _check_pixels(img.size, source, max_pixels, n)
            img.load()
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise CorruptInput(source, f"unreadable image (frame {n + 1}): {e}") from None
        yield img


def prepare(img: Any, preprocess: bool = True) -> tuple[Any, float]:
    """A grayscale image for Tesseract and the scale applied to it.

    Upright per EXIF, transparency flattened onto white; with `preprocess`, contrast
    stretched and small images upscaled (Tesseract wants capitals 20+ pixels tall).
    """
    from PIL import ImageOps

    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = _pil().new("RGBA", rgba.size, (255, 255, 255, 255))
        img = _pil().alpha_composite(white, rgba)
    img = img.convert("L")
    scale = 1.0
    if preprocess:
        img = ImageOps.autocontrast(img, cutoff=1)
        if max(img.size) < UPSCALE_BELOW_PX:
            scale = float(UPSCALE_FACTOR)
            img = img.resize((img.width * UPSCALE_FACTOR, img.height * UPSCALE_FACTOR),
                             _pil().Resampling.LANCZOS)
    return img, scale


def image_dpi(img: Any) -> int | None:
    dpi = img.info.get("dpi")
    try:
        value = round(float(dpi[0])) if dpi else 0
    except (TypeError, ValueError, IndexError):
        return None
    return value if value >= MIN_DPI else None


def ocr_frame(frame: Any, *, lang: str, psm: int, dpi: int | None, preprocess: bool,
              source: str, deadline: float | None) -> OcrResult:
    """OCR one decoded frame; `dpi` overrides what the file says (None: the file's, or a guess)."""
    stored_dpi = dpi or image_dpi(frame)
    gray, scale = prepare(frame, preprocess)
    tess_dpi = round(stored_dpi * scale) if stored_dpi else None
    return ocr_image(gray, lang=lang, psm=psm, dpi=tess_dpi, source=source, deadline=deadline)
