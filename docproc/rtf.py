"""RTF through striprtf: the text of the body (groups such as the font table, pictures and
hidden destinations are skipped by the library), decoded by the file's own code page."""

from __future__ import annotations

from pathlib import Path

from docproc.result import Extracted
from pipeline.errors import CorruptInput

RTF_ENCODING = "cp1252"  # what RTF's \ansi means; \'hh escapes are decoded by striprtf


def striprtf_version() -> str:
    from importlib.metadata import version

    return f"striprtf {version('striprtf')}"


def extract_rtf(path: Path, source: str) -> Extracted:
    from striprtf.striprtf import rtf_to_text

    raw = path.read_bytes()
    try:
        # RTF is 7-bit by definition; bytes above that are read as the ANSI code page
        text = rtf_to_text(raw.decode(RTF_ENCODING, errors="replace"), encoding=RTF_ENCODING,
                           errors="replace")
    except (ValueError, IndexError, KeyError, RecursionError) as e:
        raise CorruptInput(source, f"damaged RTF: {type(e).__name__}: {e}") from None
    return Extracted(extractor=striprtf_version(), text=text)
