"""Content type from the bytes themselves (magic numbers), never from the name alone.

Shared by ingest, the crawler and extraction so every stage agrees on what a file is.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SNIFF_BYTES = 8192  # how much of the head is read to decide
MIMETYPE_MAX_BYTES = 256  # an EPUB's "mimetype" member holds "application/epub+zip"

# mime -> extension used for the raw store file name
EXTENSIONS = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/tiff": "tif",
    "image/bmp": "bmp",
    "image/webp": "webp",
    "application/epub+zip": "epub",
    "application/x-mobipocket-ebook": "mobi",  # e-books PyMuPDF opens, like EPUB
    "application/x-fictionbook+xml": "fb2",
    "application/vnd.ms-xpsdocument": "xps",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
SUPPORTED = frozenset(EXTENSIONS)
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd", ".rst"})
# A name ending ".txt" is still sniffed: these say nothing on their own.

_HTML_HEAD = re.compile(
    rb"^\s*(<\?xml[^>]*\?>\s*)?(<!--.*?-->\s*)*"  # XHTML may open with an XML declaration
    rb"(<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]|<meta\s|<title[\s>])",
    re.IGNORECASE | re.DOTALL,
)
_FB2_ROOT = re.compile(rb"^\s*(<\?xml[^>]*\?>\s*)?(<!--.*?-->\s*)*<FictionBook[\s>]", re.DOTALL)
_TEXT_CONTROL = bytes(sorted(set(range(0, 32)) - {9, 10, 12, 13, 27}))


@dataclass(frozen=True, slots=True)
class Sniffed:
    mime: str  # "application/octet-stream" when unknown
    ext: str  # raw store extension, "bin" when unknown

    @property
    def supported(self) -> bool:
        return self.mime in SUPPORTED


def _magic_mime(head: bytes) -> str | None:
    if head.startswith(b"%PDF-") or b"%PDF-" in head[:1024]:
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head.startswith(b"BM") and len(head) >= 14:
        return "image/bmp"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"PK\x03\x04") and head[30:58] == b"mimetypeapplication/epub+zip":
        return "application/epub+zip"
    if head[60:68] == b"BOOKMOBI":  # PalmDB type and creator
        return "application/x-mobipocket-ebook"
    return None


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    if head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return True
    if b"\x00" in head:
        return False
    controls = len(head) - len(head.translate(None, _TEXT_CONTROL))  # in C: crawls sniff a lot
    return controls / len(head) < 0.01


def sniff_bytes(head: bytes, name: str = "") -> Sniffed:
    """Decide the type from the first SNIFF_BYTES bytes; `name` only tells markdown from text."""
    mime = _magic_mime(head)
    stripped = head.lstrip(b"\xef\xbb\xbf")
    if mime is None and b"\x00" not in head and _HTML_HEAD.match(stripped):
        mime = "text/html"  # it opens as HTML: stray control characters do not undo that
    elif mime is None and _looks_like_text(head):
        if _HTML_HEAD.match(stripped):
            mime = "text/html"
        elif _FB2_ROOT.match(stripped):
            mime = "application/x-fictionbook+xml"
        elif Path(name).suffix.lower() in MARKDOWN_SUFFIXES:
            mime = "text/markdown"
        else:
            mime = "text/plain"
    if mime is None:
        return Sniffed("application/octet-stream", "bin")
    return Sniffed(mime, EXTENSIONS[mime])


def sniff_file(path: Path) -> Sniffed:
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    found = sniff_bytes(head, path.name)
    if found.mime == "application/octet-stream" and head.startswith(b"PK\x03\x04"):
        found = _sniff_zip(path) or found
    return found


def sniff_data(data: bytes, name: str = "") -> Sniffed:
    """Like `sniff_file`, for content already in memory (e.g. a downloaded response)."""
    found = sniff_bytes(data[:SNIFF_BYTES], name)
    if found.mime == "application/octet-stream" and data.startswith(b"PK\x03\x04"):
        found = _sniff_zip(io.BytesIO(data)) or found
    return found


def _sniff_zip(path: Path | IO[bytes]) -> Sniffed | None:
    # EPUBs written by careless tools do not put "mimetype" first; read the member itself.
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            # a "mimetype" member is a few bytes; a big one is not read (zip bombs)
            if ("mimetype" in names and zf.getinfo("mimetype").file_size <= MIMETYPE_MAX_BYTES
                    and zf.read("mimetype").strip() == b"application/epub+zip"):
                return Sniffed("application/epub+zip", "epub")
            if any(n.lower().endswith(".fdseq") for n in names):  # XPS / OpenXPS package
                return Sniffed("application/vnd.ms-xpsdocument", "xps")
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, NotImplementedError):
        return None
    return None
