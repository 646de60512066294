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
    return _decode_mixed(data, source) or _decode_legacy(data, source)


def _decode_legacy(data: bytes, source: str) -> tuple[str, str]:
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


def _decode_mixed(data: bytes, source: str) -> tuple[str, str] | None:
    """Text pasted together from UTF-8 and a legacy charset (logs, concatenated files):
    each line in the charset it is valid in. None unless some line is non-ASCII UTF-8."""
    lines = data.splitlines(keepends=True)
    decoded: list[str | None] = []
    saw_utf8 = False
    for line in lines:
        try:
            decoded.append(line.decode("utf-8"))
            saw_utf8 = saw_utf8 or not line.isascii()
        except UnicodeDecodeError:
            decoded.append(None)
    if not saw_utf8:
        return None  # one legacy charset throughout: detection sees all of it
    legacy = b"".join(line for line, text in zip(lines, decoded, strict=True) if text is None)
    encoding = _legacy_like(legacy, {c for t in decoded if t for c in t if not c.isascii()})
    if encoding is None:
        return None  # the other lines are text in no charset: binary, and a line of it was
        # valid UTF-8 by chance (a 2-byte sequence between two newlines)
    out = [text if text is not None else line.decode(encoding, errors="replace")
           for line, text in zip(lines, decoded, strict=True)]
    return "".join(out), f"utf-8+{encoding}"


def _legacy_like(data: bytes, letters: set[str]) -> str | None:
    """The charset of `data` whose non-ASCII letters best match `letters` (those of the
    file's UTF-8 lines: one file, one language), or None when `data` is text in no charset.
    Detection alone is unreliable on a few lines ("déjà" scores better as Baltic cp1257 than
    as cp1252)."""
    from charset_normalizer import from_bytes

    detected = [m.encoding for m in from_bytes(data, threshold=MAX_CHAOS)]
    if not detected:
        return None
    candidates = [*detected, TIE_PREFERENCE[0]]

    def shared(encoding: str) -> int:
        return sum(c in letters for c in data.decode(encoding, errors="replace")
                   if not c.isascii())

    return max(candidates, key=shared)  # the first best: the detector's order breaks ties


def extract_text(path: Path, source: str) -> Extracted:
    text, encoding = decode_text(path.read_bytes(), source)
    title = next((line.lstrip("#").strip() for line in text.splitlines() if line.strip()), "")
    return Extracted(extractor=f"{charset_normalizer_version()} ({encoding})", text=text,
                     title=title if len(title) <= TITLE_MAX_CHARS else "")
