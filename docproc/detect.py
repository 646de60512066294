"""Which extractor a file needs, decided from its bytes (pipeline.sniff), never its name alone."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pipeline import sniff
from pipeline.errors import CorruptInput, EmptyInput, UnreadableInput, UnsupportedInput
from pipeline.sniff import sniff_file


class Kind(StrEnum):
    PDF = "pdf"
    EBOOK = "ebook"  # other formats PyMuPDF opens: EPUB, XPS, FB2, MOBI, CBZ
    IMAGE = "image"
    HTML = "html"
    TEXT = "text"
    DOCX = "docx"  # Word (python-docx), macro-enabled .docm too
    PPTX = "pptx"  # PowerPoint (python-pptx)
    XLSX = "xlsx"  # Excel (openpyxl)
    ODF = "odf"  # OpenDocument text, spreadsheet, presentation (odfpy)
    RTF = "rtf"  # striprtf
    ENCRYPTED = "encrypted"  # a password-protected Office file: refused with its reason
    MAIL = "mail"  # one message (.eml): its body a document, its attachments members
    MAILBOX = "mailbox"  # mbox: each message a member
    ARCHIVE = "archive"  # ZIP, TAR (.gz, .bz2, .xz): each member a document


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
    sniff.DOCX: (Kind.DOCX, "docx"),
    "application/vnd.ms-word.document.macroEnabled.12": (Kind.DOCX, "docm"),
    sniff.PPTX: (Kind.PPTX, "pptx"),
    "application/vnd.ms-powerpoint.presentation.macroEnabled.12": (Kind.PPTX, "pptm"),
    sniff.XLSX: (Kind.XLSX, "xlsx"),
    "application/vnd.ms-excel.sheet.macroEnabled.12": (Kind.XLSX, "xlsm"),
    sniff.OFFICE_ENCRYPTED: (Kind.ENCRYPTED, None),
    "application/vnd.oasis.opendocument.text": (Kind.ODF, "odt"),
    "application/vnd.oasis.opendocument.spreadsheet": (Kind.ODF, "ods"),
    "application/vnd.oasis.opendocument.presentation": (Kind.ODF, "odp"),
    "application/rtf": (Kind.RTF, None),
    "message/rfc822": (Kind.MAIL, None),
    "application/mbox": (Kind.MAILBOX, None),
    "application/zip": (Kind.ARCHIVE, "zip"),
    "application/x-tar": (Kind.ARCHIVE, "tar"),
    "application/x-compressed-tar": (Kind.ARCHIVE, "tar.gz"),
    "application/x-bzip-compressed-tar": (Kind.ARCHIVE, "tar.bz2"),
    "application/x-xz-compressed-tar": (Kind.ARCHIVE, "tar.xz"),
}
OCR_KINDS = frozenset({Kind.PDF, Kind.EBOOK, Kind.IMAGE})  # kinds that may need Tesseract
# kinds that hold other documents; an archive's or a mailbox's members may need Tesseract
CONTAINER_KINDS = frozenset({Kind.MAIL, Kind.MAILBOX, Kind.ARCHIVE})


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
        what = sniff.UNSUPPORTED_NAMES.get(mime, f"sniffed {mime}")
        raise UnsupportedInput(source, "unsupported content type (no document format we read, "
                                       f"by its bytes: {what})")
    kind, filetype = KINDS[mime]
    return Detected(kind=kind, mime=mime, filetype=filetype)
