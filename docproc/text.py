"""Plain text and markdown: the charset detected, decoded to Unicode."""

from __future__ import annotations

import codecs
from pathlib import Path

from docproc.result import Extracted
from pipeline.errors import CorruptInput

BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"))
MAX_CHAOS = 0.3  # charset-normalizer's mess ratio above which bytes are not text
TIE_PREFERENCE = ("cp1252", "latin_1", "iso8859_15")
TITLE_MAX_CHARS = 120  # a longer first line is a paragraph, not a title


def charset_normalizer_version() -> str:
    import charset_normalizer

    return f"charset-normalizer {charset_normalizer.__version__}"


def decode_text(data: bytes, source: str) -> tuple[str, str]:
    """(text, encoding): a BOM or valid UTF-8 first, else charset detection."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace"), encoding
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data, threshold=MAX_CHAOS))
    if not matches:
        raise CorruptInput(source, "not decodable as text in any known charset (binary data?)")
    best = matches[0]
    # Short texts fit several 8-bit charsets equally well ("café" in cp1250 and cp1252);
    # among equals, the web's most common legacy charset wins.
    tied = [m for m in matches if m.chaos <= best.chaos and m.coherence >= best.coherence]
    best = next((m for m in tied if m.encoding in TIE_PREFERENCE), best)
    return str(best), best.encoding


def extract_text(path: Path, source: str) -> Extracted:
    text, encoding = decode_text(path.read_bytes(), source)
    title = next((line.lstrip("#").strip() for line in text.splitlines() if line.strip()), "")
    return Extracted(extractor=f"{charset_normalizer_version()} ({encoding})", text=text,
                     title=title if len(title) <= TITLE_MAX_CHARS else "")
