"""Which extractor a file needs, decided from its bytes (pipeline.sniff), never its name alone."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import CorruptInput, EmptyInput, UnreadableInput, UnsupportedInput
from pipeline.sniff import sniff_file


class Kind(StrEnum):
    PDF = "pdf"
    EBOOK = "ebook"  # other formats PyMuPDF opens: EPUB, XPS, FB2, MOBI, CBZ
    IMAGE = "image"
    HTML = "html"
    TEXT = "text"


PDF_MIME = "application/pdf"
# mime -> (kind, PyMuPDF filetype)
KINDS: dict[str, tuple[Kind, str | None]] = {
    PDF_MIME: (Kind.PDF, "pdf"),
    "application/epub+zip": (Kind.EBOOK, "epub"),
    "application/x-mobipocket-ebook": (Kind.EBOOK, "mobi"),
    "application/x-fictionbook+xml": (Kind.EBOOK, "fb2"),
    "application/vnd.ms-xpsdocument": (Kind.EBOOK, "xps"),
    "application/oxps": (Kind.EBOOK, "xps"),
    "application/vnd.comicbook+zip": (Kind.EBOOK, "cbz"),
    "image/png": (Kind.IMAGE, None),
    "image/jpeg": (Kind.IMAGE, None),
    "image/gif": (Kind.IMAGE, None),
    "image/tiff": (Kind.IMAGE, None),
    "image/bmp": (Kind.IMAGE, None),
    "image/webp": (Kind.IMAGE, None),
    "text/html": (Kind.HTML, None),
    "application/xhtml+xml": (Kind.HTML, None),
    "text/plain": (Kind.TEXT, None),
    "text/markdown": (Kind.TEXT, None),
}
OCR_KINDS = frozenset({Kind.PDF, Kind.EBOOK, Kind.IMAGE})  # kinds that may need Tesseract


@dataclass(frozen=True, slots=True)
class Detected:
    kind: Kind
    mime: str
    filetype: str | None  # PyMuPDF's name for the format


def kind_of_mime(mime: str) -> Kind | None:
    found = KINDS.get(mime)
    return found[0] if found else None


def claims_pdf(source: str, claimed_mime: str = "") -> bool:
    """Whether the name (path or URL path) or the declared type says PDF."""
    name = urlsplit(source).path if "://" in source else source
    return claimed_mime == PDF_MIME or name.lower().endswith(".pdf")


def detect(path: Path, source: str = "", claimed_mime: str = "") -> Detected:
    """The extractor for the file at `path`; `source` and `claimed_mime` are what it claims."""
    source = source or str(path)
    try:
        size = path.stat().st_size
        sniffed = sniff_file(path) if size else None
    except OSError as e:
        raise UnreadableInput(source, f"cannot read: {e.strerror or e}") from None
    if sniffed is None:
        raise EmptyInput(source, "empty file (0 bytes)")
    if claims_pdf(source, claimed_mime) and sniffed.mime != PDF_MIME:
        what = "HTML (an error or login page saved as PDF?)" if sniffed.mime == "text/html" \
            else f"{sniffed.mime}, not a PDF"
        raise CorruptInput(source, f"named or declared PDF but its content is {what}")
    mime = sniffed.mime
    if mime not in KINDS and claimed_mime in KINDS and KINDS[claimed_mime][0] is Kind.TEXT:
        mime = claimed_mime  # declared text with unusual bytes: charset detection decides
    if mime not in KINDS:
        raise UnsupportedInput(source, "unsupported content type (not PDF, image, HTML, text "
                                       f"or e-book by its bytes; sniffed {sniffed.mime})")
    kind, filetype = KINDS[mime]
    return Detected(kind=kind, mime=mime, filetype=filetype)
