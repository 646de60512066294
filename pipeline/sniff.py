"""Content type from the bytes themselves (magic numbers), never from the name alone.

Shared by ingest, the crawler and extraction so every stage agrees on what a file is.
"""

from __future__ import annotations

import fnmatch
import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SNIFF_BYTES = 8192  # how much of the head is read to decide
MIMETYPE_MAX_BYTES = 256  # an EPUB's "mimetype" member holds "application/epub+zip"

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
OFFICE_ENCRYPTED = "application/x-ms-office-encrypted"
OLE_STORAGE = "application/x-ole-storage"
CONTENT_TYPES_MAX_BYTES = 1 << 20  # an OOXML package's [Content_Types].xml: a few KB
# the main part's content type in [Content_Types].xml -> the package's mime
OOXML_MAIN_PARTS = {
    "wordprocessingml.document.main+xml": DOCX,
    "wordprocessingml.template.main+xml": DOCX,
    "ms-word.document.macroEnabled.main+xml": "application/vnd.ms-word.document.macroEnabled.12",
    "ms-word.template.macroEnabledTemplate.main+xml":
        "application/vnd.ms-word.document.macroEnabled.12",
    "presentationml.presentation.main+xml": PPTX,
    "presentationml.slideshow.main+xml": PPTX,
    "ms-powerpoint.presentation.macroEnabled.main+xml":
        "application/vnd.ms-powerpoint.presentation.macroEnabled.12",
    "ms-powerpoint.slideshow.macroEnabled.main+xml":
        "application/vnd.ms-powerpoint.presentation.macroEnabled.12",
    "spreadsheetml.sheet.main+xml": XLSX,
    "spreadsheetml.template.main+xml": XLSX,
    "ms-excel.sheet.macroEnabled.main+xml": "application/vnd.ms-excel.sheet.macroEnabled.12",
}
ODF_MIMES = {"application/vnd.oasis.opendocument." + k: "application/vnd.oasis.opendocument." + v
             for k, v in (("text", "text"), ("text-template", "text"),
                          ("spreadsheet", "spreadsheet"), ("spreadsheet-template", "spreadsheet"),
                          ("presentation", "presentation"),
                          ("presentation-template", "presentation"))}
# compressed streams that hold a tar: magic -> mime
COMPRESSED_TARS = {b"\x1f\x8b": "application/x-compressed-tar",
                   b"BZh": "application/x-bzip-compressed-tar",
                   b"\xfd7zXZ\x00": "application/x-xz-compressed-tar"}
TAR_MAGIC_AT = 257  # "ustar" in a POSIX tar header
# A mail message opens with header fields; these say it is one (two of them at least)
MAIL_FIELDS = frozenset({"from", "to", "subject", "date", "message-id", "mime-version",
                         "received", "return-path", "delivered-to", "reply-to", "cc",
                         "content-type", "x-mailer", "in-reply-to", "references"})
MAIL_SURE_FIELDS = frozenset({"from", "message-id", "received", "mime-version", "return-path"})
_HEADER_LINE = re.compile(rb"^([A-Za-z][A-Za-z0-9-]{0,75}):[ \t]?")

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
    # Office (and its macro-enabled variants: their text is read, their macros never run)
    DOCX: "docx",
    "application/vnd.ms-word.document.macroEnabled.12": "docm",
    PPTX: "pptx",
    "application/vnd.ms-powerpoint.presentation.macroEnabled.12": "pptm",
    XLSX: "xlsx",
    "application/vnd.ms-excel.sheet.macroEnabled.12": "xlsm",
    OFFICE_ENCRYPTED: "ooxml",  # a password-protected Office file: stored, refused by extract
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
    "application/rtf": "rtf",
    "message/rfc822": "eml",
    "application/mbox": "mbox",
    "application/zip": "zip",
    "application/x-tar": "tar",
    "application/x-compressed-tar": "tar.gz",  # freedesktop.org's names for compressed tars
    "application/x-bzip-compressed-tar": "tar.bz2",
    "application/x-xz-compressed-tar": "tar.xz",
}
SUPPORTED = frozenset(EXTENSIONS)
DOCUMENT_MIMES = SUPPORTED - {"text/plain", "text/markdown"}  # formats the bytes prove
# what a few unsupported types are, for the failure's message
UNSUPPORTED_NAMES = {OLE_STORAGE: "a legacy binary Office file (.doc, .xls, .ppt: save it as "
                                  ".docx, .xlsx, .pptx) or another OLE2 file"}

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
    if head.startswith(b"{\\rtf"):
        return "application/rtf"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return OLE_STORAGE  # told apart by its streams (see _sniff_ole)
    if head[TAR_MAGIC_AT:TAR_MAGIC_AT + 5] == b"ustar":
        return "application/x-tar"
    if head.startswith(b"PK\x05\x06"):  # the end record alone: an empty ZIP
        return "application/zip"
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
        elif (mail := _mail_mime(stripped)) is not None:
            mime = mail
        elif Path(name).suffix.lower() in MARKDOWN_SUFFIXES:
            mime = "text/markdown"
        else:
            mime = "text/plain"
    if mime is None:
        return Sniffed("application/octet-stream", "bin")
    return Sniffed(mime, EXTENSIONS.get(mime, "bin"))


def _header_names(lines: list[bytes]) -> set[str] | None:
    """The field names of a header block (lines up to the first blank one), or None when a
    line is neither a field nor a field's continuation."""
    names: set[str] = set()
    for line in lines:
        if not line.strip():
            break
        if line[:1] in (b" ", b"\t") and names:
            continue  # a folded field
        m = _HEADER_LINE.match(line)
        if m is None:
            return None
        names.add(m.group(1).decode("ascii").lower())
    return names


def _mail_mime(head: bytes) -> str | None:
    """message/rfc822 (a mail: header fields, a blank line, a body) or application/mbox (mails
    each after a "From " line), from the head of a text."""
    lines = head.replace(b"\r\n", b"\n").split(b"\n")[:-1]  # the last may be cut off
    mime = "message/rfc822"
    if lines and lines[0].startswith(b"From "):
        lines, mime = lines[1:], "application/mbox"
    names = _header_names(lines)
    if names and len(names & MAIL_FIELDS) >= 2 and names & MAIL_SURE_FIELDS:
        return mime
    return None


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
    return _sniff_container(sniff_bytes(head, path.name), head, path), head


def sniff_file(path: Path) -> Sniffed:
    return sniff_head(path)[0]


def sniff_data(data: bytes, name: str = "") -> Sniffed:
    """Like `sniff_file`, for content already in memory (e.g. a downloaded response)."""
    return _sniff_container(sniff_bytes(data[:SNIFF_BYTES], name), data[:SNIFF_BYTES],
                            io.BytesIO(data))


def _known(mime: str) -> Sniffed:
    return Sniffed(mime, EXTENSIONS.get(mime, "bin"))


def _sniff_container(found: Sniffed, head: bytes, source: Path | IO[bytes]) -> Sniffed:
    """What a ZIP, OLE2 or compressed file holds, read from the file itself (its head does not
    say): an Office, OpenDocument, EPUB or XPS package, a plain ZIP; an encrypted Office file;
    a compressed tar."""
    if found.mime == "application/octet-stream" and head.startswith(b"PK\x03\x04"):
        return _sniff_zip(source) or _known("application/zip")
    if found.mime == OLE_STORAGE:
        return _sniff_ole(source)
    if found.mime == "application/octet-stream":
        compressed = next((m for magic, m in COMPRESSED_TARS.items() if head.startswith(magic)),
                          None)
        if compressed and _holds_tar(source, compressed):
            return _known(compressed)
    return found


def _holds_tar(source: Path | IO[bytes], mime: str) -> bool:
    """Whether the compressed stream starts with a tar header (one block decompressed)."""
    import bz2
    import gzip
    import lzma

    opener = {"application/x-compressed-tar": gzip.open,
              "application/x-bzip-compressed-tar": bz2.open,
              "application/x-xz-compressed-tar": lzma.open}[mime]
    try:
        if not isinstance(source, Path):
            source.seek(0)
        with opener(source, "rb") as fh:
            block = fh.read(512)  # bz2 decompresses a whole block (at most 900 KB) for it
    except (OSError, EOFError, lzma.LZMAError, ValueError):
        return False
    return block[TAR_MAGIC_AT:TAR_MAGIC_AT + 5] == b"ustar"


def _sniff_ole(source: Path | IO[bytes]) -> Sniffed:
    """An OLE2 file: an encrypted Office (OOXML) package has an EncryptedPackage stream; other
    OLE2 files (.doc, .xls, .ppt, .msg) are not supported."""
    import olefile

    try:
        if not isinstance(source, Path):
            source.seek(0)
        with olefile.OleFileIO(source) as ole:
            if ole.exists("EncryptedPackage"):
                return _known(OFFICE_ENCRYPTED)
    except (OSError, ValueError, IndexError, TypeError):  # a damaged OLE2 file
        pass
    return Sniffed(OLE_STORAGE, "bin")


def _small_member(zf: zipfile.ZipFile, name: str, limit: int) -> bytes | None:
    """A member's bytes when it exists and declares at most `limit` bytes (no zip bombs)."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        return None
    return zf.read(info)[:limit] if info.file_size <= limit else None


def _sniff_zip(path: Path | IO[bytes]) -> Sniffed | None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            # EPUBs written by careless tools do not put "mimetype" first; read the member
            # itself (a few bytes; a big one is not read: zip bombs). ODF packages have one too.
            mimetype = (_small_member(zf, "mimetype", MIMETYPE_MAX_BYTES) or b"").strip()
            if mimetype == b"application/epub+zip":
                return _known("application/epub+zip")
            if mimetype.decode("ascii", "replace") in ODF_MIMES:
                return _known(ODF_MIMES[mimetype.decode("ascii")])
            if any(n.lower().endswith(".fdseq") for n in names):  # XPS / OpenXPS package
                return _known("application/vnd.ms-xpsdocument")
            types = _small_member(zf, "[Content_Types].xml", CONTENT_TYPES_MAX_BYTES)
            if types is not None:
                return _ooxml(types)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, NotImplementedError,
            EOFError, zlib.error):
        return None
    return None


def _ooxml(content_types: bytes) -> Sniffed | None:
    """An OOXML package's type, from the content type of its main part."""
    text = content_types.decode("utf-8", "replace")
    for main, mime in OOXML_MAIN_PARTS.items():
        if main in text:
            return _known(mime)
    return None
