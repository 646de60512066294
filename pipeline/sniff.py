"""Content type from the bytes themselves (magic numbers), never from the name alone.

Shared by ingest, the crawler and extraction so every stage agrees on what a file is.
"""

from __future__ import annotations

import fnmatch
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
DOCUMENT_MIMES = SUPPORTED - {"text/plain", "text/markdown"}  # formats the bytes prove

# Static web assets: what a site ships to render its pages, not documents. Scripts, style
# sheets, source maps and data files are text by content, so their name is what tells them
# from a document; a name glob (matched on the lower-cased file name) -> what the file is.
STATIC_ASSETS: dict[str, str] = {
    **dict.fromkeys(("*.js", "*.mjs", "*.cjs"), "script"),  # searchindex.js included
    **dict.fromkeys(("*.css", "*.scss", "*.sass", "*.less"), "style sheet"),
    "*.map": "source map",
    **dict.fromkeys(("*.json", "*.jsonld", "*.webmanifest"), "data file"),
    **dict.fromkeys(("*.xml", "*.xsl", "*.xslt", "*.rss", "*.atom"), "data file"),
    "*.svg": "vector image",
    "*.ico": "icon",
    **dict.fromkeys(("*.woff", "*.woff2", "*.ttf", "*.otf", "*.eot"), "font"),
    "objects.inv": "Sphinx inventory",
    ".buildinfo": "Sphinx build info",
}
# the suffixes above, for what only has a URL to go by (the crawler refuses links to them)
ASSET_SUFFIXES = frozenset(pat[2:] for pat in STATIC_ASSETS if pat.startswith("*."))
ICON_MAX_PX = 32  # an image this small on both sides is an icon: no line of text fits in it
FONT_MIMES = frozenset({"font/woff", "font/woff2", "font/otf", "font/ttf", "font/collection",
                        "application/vnd.ms-fontobject"})
_EOT_VERSIONS = (b"\x00\x00\x01\x00", b"\x01\x00\x02\x00", b"\x02\x00\x02\x00")
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
    return _font_mime(head)


def _font_mime(head: bytes) -> str | None:
    """Font files by their magic numbers: binary, so no other type is sniffed for them."""
    if head.startswith(b"wOFF"):
        return "font/woff"
    if head.startswith(b"wOF2"):
        return "font/woff2"
    if head.startswith(b"OTTO"):
        return "font/otf"
    if head.startswith(b"ttcf"):
        return "font/collection"
    # TrueType: a 4-byte version, then the number of tables (a handful to a few dozen)
    if head.startswith((b"\x00\x01\x00\x00", b"true")) and 0 < int.from_bytes(head[4:6]) < 100:
        return "font/ttf"
    if head[34:36] == b"LP" and head[8:12] in _EOT_VERSIONS:  # EOT: magic 0x504C, version
        return "application/vnd.ms-fontobject"
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
    return Sniffed(mime, EXTENSIONS.get(mime, "bin"))


def _image_size(mime: str, head: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, GIF or BMP; None for other kinds."""
    if mime == "image/png" and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20]), int.from_bytes(head[20:24])
    if mime == "image/gif" and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if mime == "image/bmp" and len(head) >= 26:
        return (abs(int.from_bytes(head[18:22], "little", signed=True)),
                abs(int.from_bytes(head[22:26], "little", signed=True)))  # < 0: top-down
    return None


def static_asset(name: str, sniffed: Sniffed, head: bytes = b"") -> str | None:
    """What static web asset a file is (see STATIC_ASSETS), or None for a document.

    The name decides for text: `jquery.js` is text by content, an asset by name. The content
    overrules the name when it proves a document format (an .xml file that is XHTML or
    FictionBook, a PDF named .json), and proves a font or an icon whatever the name.
    """
    if sniffed.mime in FONT_MIMES:
        return "font"
    size = _image_size(sniffed.mime, head)
    if size is not None and 0 < min(size) and max(size) <= ICON_MAX_PX:  # 0: broken header
        return "icon"
    if sniffed.mime in DOCUMENT_MIMES:
        return None
    lowered = name.lower()
    return next((what for pattern, what in STATIC_ASSETS.items()
                 if fnmatch.fnmatchcase(lowered, pattern)), None)


def sniff_head(path: Path) -> tuple[Sniffed, bytes]:
    """The type of the file at `path` and the head it was decided from."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    found = sniff_bytes(head, path.name)
    if found.mime == "application/octet-stream" and head.startswith(b"PK\x03\x04"):
        found = _sniff_zip(path) or found
    return found, head


def sniff_file(path: Path) -> Sniffed:
    return sniff_head(path)[0]


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
