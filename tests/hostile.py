"""Hostile inputs the reliability tests make: files that lie, loop, explode or never end.

Each `Case` makes one file (or symlink, or FIFO) and says how the pipeline must end with it:
a correct document ("ok", with text it must and must not hold), a static web asset that
ingest skips ("skipped": neither a document nor a failure), or a failure of one kind,
recorded by the stage that meets it first (ingest or extract). Bombs are built without
expanding them: repeated DEFLATE blocks and hand-written ZIP and TIFF structures, so making
the corpus takes well under a second and no memory.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

import pymupdf
from test_docproc_samples import page_texts, text_pdf_bytes

from crawler.localsite import RawConnection

MB = 1024 * 1024
# Limits the hostile runs use (tight, so bombs hit them fast)
MAX_PAGES = 1000
MAX_IMAGE_PIXELS = 4_000_000
MAX_MEMORY_MB = 256
TIMEOUT_S = 5.0
TIMEOUT_PER_PAGE_S = 0.05  # a page's share: the bombs of one page end at about TIMEOUT_S
MAX_MEMBERS = 100


# --- building blocks ----------------------------------------------------------------------


def deflate_repeat(unit: bytes, times: int, wrap: bool = True) -> bytes:
    """`unit` * `times` DEFLATE-compressed without ever holding it: one full-flush block
    (history reset, byte-aligned) repeated, then an empty final block. `wrap` adds the zlib
    header and checksum (PDF FlateDecode); raw DEFLATE is what ZIP members hold."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(unit) + c.flush(zlib.Z_FULL_FLUSH)
    body = block * times + b"\x03\x00"  # BFINAL=1, fixed Huffman, end of block
    if not wrap:
        return body
    adler = 1
    for _ in range(times):
        adler = zlib.adler32(unit, adler)
    return b"\x78\xda" + body + adler.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class Member:
    """A ZIP member: `data` stored or deflated, or `unit` * `times` deflated (a bomb)."""

    name: str
    data: bytes = b""
    deflate: bool = True
    unit: bytes = b""
    times: int = 0


def zip_archive(members: list[Member]) -> bytes:
    """A ZIP file written by hand, so a member can unpack to far more than we ever hold."""
    out = bytearray()
    central = bytearray()
    for m in members:
        if m.times:
            crc = 0
            for _ in range(m.times):
                crc = zlib.crc32(m.unit, crc)
            payload, size, method = deflate_repeat(m.unit, m.times, wrap=False), \
                len(m.unit) * m.times, 8
        else:
            crc, size = zlib.crc32(m.data), len(m.data)
            if m.deflate:
                c = zlib.compressobj(9, zlib.DEFLATED, -15)
                payload, method = c.compress(m.data) + c.flush(), 8
            else:
                payload, method = m.data, 0
        name = m.name.encode()
        fields = struct.pack("<HHHHHIIIHH", 20, 0, method, 0, 0x21, crc, len(payload), size,
                             len(name), 0)
        central += (b"PK\x01\x02" + struct.pack("<H", 20) + fields
                    + struct.pack("<HHHII", 0, 0, 0, 0, len(out)) + name)
        out += b"PK\x03\x04" + fields + name + payload
    end = struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(central), len(out), 0)
    return bytes(out + central + b"PK\x05\x06" + end)


def epub_members(chapter: Member) -> list[Member]:
    """A minimal EPUB around one chapter member (mimetype first and stored, as EPUB asks)."""
    return [
        Member("mimetype", b"application/epub+zip", deflate=False),
        Member("META-INF/container.xml",
               b'<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:'
               b'opendocument:xmlns:container"><rootfiles><rootfile full-path="content.opf" '
               b'media-type="application/oebps-package+xml"/></rootfiles></container>'),
        Member("content.opf",
               b'<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0"'
               b' unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
               b'<dc:identifier id="id">x</dc:identifier><dc:title>Bomb</dc:title></metadata>'
               b'<manifest><item id="c" href="c.xhtml" media-type="application/xhtml+xml"/>'
               b'</manifest><spine><itemref idref="c"/></spine></package>'),
        chapter,
    ]


FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
HELLO = "Hello from a hostile but readable page"
TEXT_OPS = f"BT /F1 12 Tf 72 700 Td ({HELLO}) Tj ET".encode()


def pdf_stream(data: bytes, extra: bytes = b"", compress: bool = True) -> bytes:
    if compress:
        data, extra = zlib.compress(data), extra + b" /Filter /FlateDecode"
    return b"<< /Length %d%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def raw_pdf(objects: list[bytes], xref_shift: int = 0, prev_loop: bool = False) -> bytes:
    """A PDF written object by object (object 1 is the catalog); `xref_shift` moves every
    offset the cross-reference table gives, as tools that rewrite line ends do; `prev_loop`
    makes the trailer name its own table as the previous one."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % (o + xref_shift) for o in offsets)
    prev = b" /Prev %d" % xref if prev_loop else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, prev, xref)
    return bytes(out)


def one_page_pdf(*, page_extra: bytes = b"", contents: bytes = TEXT_OPS,
                 catalog_extra: bytes = b"", media_box: bytes = b"[0 0 612 792]",
                 kids: bytes = b"[3 0 R]", count: int = 1,
                 resources: bytes = b"/Font << /F1 5 0 R >>", more: tuple[bytes, ...] = (),
                 xref_shift: int = 0, prev_loop: bool = False) -> bytes:
    """Catalog 1, page tree 2, page 3, content stream 4, font 5, then `more` objects."""
    return raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R%s >>" % catalog_extra,
        b"<< /Type /Pages /Kids %s /Count %d >>" % (kids, count),
        b"<< /Type /Page /Parent 2 0 R /MediaBox %s /Contents 4 0 R /Resources << %s >>%s >>"
        % (media_box, resources, page_extra),
        contents if contents.startswith(b"<<") else pdf_stream(contents),
        FONT, *more], xref_shift=xref_shift, prev_loop=prev_loop)


def content_bomb_pdf() -> bytes:
    """One page whose content stream inflates to 1 GB of path operators (2.6 MB on disk)."""
    ops = deflate_repeat(b"0 0 m 1 1 l S\n" * 4681, 16384)
    return one_page_pdf(contents=b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(ops)
                        + ops + b"\nendstream")


def image_bomb_pdf() -> bytes:
    """One page showing a 40000 x 40000 gray image (1.6 gigapixels) of a few KB."""
    pixels = zlib.compress(bytes(40000) * 200)
    image = (b"<< /Type /XObject /Subtype /Image /Width 40000 /Height 40000 /ColorSpace "
             b"/DeviceGray /BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n"
             % len(pixels) + pixels + b"\nendstream")
    return one_page_pdf(contents=b"q 612 0 0 792 0 0 cm /I Do Q",
                        resources=b"/XObject << /I 6 0 R >>", more=(image,))


def pymupdf_pdf(build: Callable[[pymupdf.Document], None], **save: object) -> bytes:
    doc = pymupdf.open()
    build(doc)
    data = doc.tobytes(**save)
    doc.close()
    return data


def text_page(doc: pymupdf.Document, text: str = HELLO) -> None:
    doc.new_page().insert_text((72, 72), text)


def tiff_frames(frames: int) -> bytes:
    """A TIFF of `frames` 1x1 gray pages written as a chain of IFDs (Pillow takes seconds)."""
    header = b"II*\x00" + struct.pack("<I", 8)
    ifd_size = 2 + 8 * 12 + 4
    pixel = 8 + frames * ifd_size
    out = bytearray(header)
    for i in range(frames):
        tags = [(256, 3, 1), (257, 3, 1), (258, 3, 8), (259, 3, 1), (262, 3, 1),
                (273, 4, pixel), (278, 3, 1), (279, 4, 1)]
        out += struct.pack("<H", len(tags))
        for tag, kind, value in tags:
            out += struct.pack("<HHII", tag, kind, 1, value)
        out += struct.pack("<I", 8 + (i + 1) * ifd_size if i + 1 < frames else 0)
    return bytes(out + b"\x80")


def png_bomb(side: int) -> bytes:
    """A PNG header claiming side x side pixels over a few KB of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I",
                                                                        zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(bytes(side + 1) * 64)) + chunk(b"IEND", b""))


def pil_bytes(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", size, 255).save(buf, format=fmt)
    return buf.getvalue()


def gif_bomb() -> bytes:
    data = bytearray(pil_bytes("GIF", (10, 10)))
    data[6:10] = struct.pack("<HH", 65535, 65535)  # the logical screen: 4.3 billion pixels
    return bytes(data)


LAUGHS = b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"lol") * 10)
                  for i in range(1, 10))
LAUGHED = "lol" * 11  # longer than any entity's own text: only an expansion holds it
PROSE = ("The committee met on Tuesday to review the harbour plans, and after a long debate "
         "the members agreed to publish the survey of the old docks before the winter.")


def html_page(body: str, title: str = "Hostile page") -> bytes:
    return (f"<!doctype html><html><head><title>{title}</title></head><body><article>"
            f"{body}</article></body></html>").encode()


# --- the corpus ---------------------------------------------------------------------------

Maker = Callable[[Path], None]


def data(content: bytes | Callable[[], bytes]) -> Maker:
    def make(path: Path) -> None:
        path.write_bytes(content() if callable(content) else content)

    return make


def symlink(target: str) -> Maker:
    def make(path: Path) -> None:
        path.symlink_to(target)

    return make


def fifo(path: Path) -> None:
    os.mkfifo(path)


def sparse(size: int) -> Maker:
    def make(path: Path) -> None:
        with open(path, "wb") as fh:
            fh.truncate(size)

    return make


@dataclass(frozen=True, slots=True)
class Case:
    name: str  # the file's name in the corpus folder (its suffix may lie)
    make: Maker
    outcome: str  # "ok" (a correct document), "skipped" (an asset) or the failure kind expected
    says: str  # ok: text the document holds; skipped: its skip reason; failure: words of its reason
    _: KW_ONLY
    stage: str = "extract"  # where the failure is recorded: ingest or extract
    absent: tuple[str, ...] = ()  # ok: what the document text must not hold
    what: str = ""  # the hostile kind, for the README table
    # ok, for an archive or mail: the failure kinds of the members refused in it (each a row
    # whose source names the member); its document is its one good member
    member_failures: tuple[str, ...] = ()


ZERO_WIDTH = "\u200b\u200e\u200f\u202e\u2066\u2069\ufeff\u2060"
ZW_PARAGRAPH = "".join(f"{w}{ZERO_WIDTH[i % len(ZERO_WIDTH)]} " for i, w in
                       enumerate(PROSE.split())) + "\x07\x01\x1b[31m\x7f"
PDF_JS = b"app.alert('owned'); while (true) {}"


def corpus() -> list[Case]:
    truncated = text_pdf_bytes(page_texts(3, seed=3))
    return [
        # ingest refuses these before any extractor sees them
        Case("empty.pdf", data(b""), "empty", "0 bytes", stage="ingest", what="zero-length PDF"),
        Case("empty.png", data(b""), "empty", "0 bytes", stage="ingest", what="0-byte image"),
        Case("nul.txt", data(bytes(64 * 1024)), "unsupported", "unsupported", stage="ingest",
             what="NUL-filled text"),
        Case("program.txt", data(b"\x7fELF\x02\x01\x01\x00" + os.urandom(4096)), "unsupported",
             "unsupported", stage="ingest", what="executable named .txt"),
        Case("pipe.txt", fifo, "unsupported", "FIFO", stage="ingest", what="FIFO"),
        Case("zeros.txt", symlink("/dev/zero"), "unsupported", "character device", stage="ingest",
             what="symlink to /dev/zero"),
        Case("loop.txt", symlink("loop.txt"), "unreadable", "symlink loop", stage="ingest",
             what="symlink to itself"),
        Case("dangling.pdf", symlink("nowhere/gone.pdf"), "unreadable", "not found",
             stage="ingest", what="dangling symlink"),
        Case("huge.txt", sparse(3 * 1024 * MB), "too_large", "ingest.max_bytes", stage="ingest",
             what="3 GB (sparse) file"),
        Case("mimetype-bomb.epub", data(lambda: zip_archive([
            Member("META-INF/container.xml", b"<container/>"),
            Member("mimetype", unit=b"application/epub+zip" * 3276, times=8192)])),
             "ok", "<container/>", member_failures=("compression_ratio",),
             what="ZIP whose mimetype member is a bomb (read as a ZIP, the bomb refused)"),
        # PDFs
        Case("truncated.pdf", data(truncated[: len(truncated) * 6 // 10]), "corrupt",
             "damaged or truncated", what="truncated PDF"),
        Case("encrypted.pdf", data(lambda: pymupdf_pdf(
            text_page, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="o")),
             "encrypted", "password", what="encrypted PDF"),
        Case("pages-3000.pdf", data(lambda: pymupdf_pdf(
            lambda d: [d.new_page() for _ in range(3000)])), "too_large",
             "extract.max_pages", what="huge page count"),
        Case("lying-count.pdf", data(one_page_pdf(count=2_000_000_000)), "corrupt",
             "number of pages", what="page tree claiming 2e9 pages"),
        Case("broken-xref.pdf", data(one_page_pdf(xref_shift=7)), "ok", HELLO,
             what="broken xref offsets (repaired)"),
        Case("pages-cycle.pdf", data(one_page_pdf(kids=b"[2 0 R 3 0 R]", count=2)), "corrupt",
             "cycle in page tree", what="page tree containing itself"),
        Case("self-reference.pdf", data(one_page_pdf(page_extra=b" /Annots 6 0 R",
                                                     more=(b"6 0 R",))), "ok", HELLO,
             what="object referencing itself"),
        Case("self-length.pdf", data(one_page_pdf(
            contents=b"<< /Length 4 0 R >>\nstream\n" + TEXT_OPS + b"\nendstream")), "ok", HELLO,
             what="stream whose /Length is itself"),
        Case("form-recursion.pdf", data(one_page_pdf(
            contents=TEXT_OPS + b" /X Do",
            resources=b"/Font << /F1 5 0 R >> /XObject << /X 6 0 R >>",
            more=(pdf_stream(b"/X Do", b" /Type /XObject /Subtype /Form /BBox [0 0 9 9] "
                                       b"/Resources << /XObject << /X 6 0 R >> >>"),))), "ok",
             HELLO, what="form XObject drawing itself"),
        Case("xref-prev-loop.pdf", data(one_page_pdf(prev_loop=True)), "ok", HELLO,
             what="xref table whose /Prev is itself"),
        Case("javascript.pdf", data(one_page_pdf(
            catalog_extra=b" /OpenAction << /S /JavaScript /JS (%s) >>" % PDF_JS,
            page_extra=b" /AA << /O << /S /Launch /F (/bin/sh) >> >>")), "ok", HELLO,
             absent=("app.alert", "/bin/sh"), what="PDF with JavaScript and Launch actions"),
        Case("attachment.pdf", data(lambda: pymupdf_pdf(
            lambda d: (text_page(d), d.embfile_add("payload.txt", b"EMBEDDED PAYLOAD")))),
             "ok", HELLO, absent=("EMBEDDED PAYLOAD",), what="PDF with an embedded file"),
        Case("huge-page.pdf", data(one_page_pdf(media_box=b"[0 0 14400 14400] /UserUnit 75000")),
             "ok", HELLO, what="PDF page of 14400 pt x 75000 user units"),
        Case("huge-blank-page.pdf", data(one_page_pdf(media_box=b"[0 0 14400 14400]",
                                                      contents=b"0 0 m 9 9 l S")),
             "empty", "no text", what="blank giant page (OCR render capped)"),
        Case("content-bomb.pdf", data(content_bomb_pdf), "timeout", "extract.timeout_s",
             what="content stream inflating to 1 GB"),
        Case("image-bomb.pdf", data(image_bomb_pdf), "empty", "no text",
             what="40000x40000 image inside a PDF"),
        # images
        Case("bomb.png", data(png_bomb(60000)), "too_large", "decompression bomb",
             what="PNG of 60000x60000 pixels"),
        Case("bomb.gif", data(gif_bomb), "too_large", "decompression bomb",
             what="GIF claiming 65535x65535"),
        Case("frames.tif", data(tiff_frames(3000)), "too_large", "extract.max_pages",
             what="TIFF with 3000 frames"),
        Case("truncated.jpg", data(lambda: pil_bytes("JPEG", (400, 300))[:400]), "corrupt",
             "unreadable image", what="truncated JPEG"),
        # text in odd encodings
        Case("latin1.txt", data(("Les élèves étudient à l'école; ça coûte très cher. " * 8)
                                .encode("latin-1")), "ok", "élèves étudient à l'école",
             what="non-UTF-8 (Latin-1) text"),
        Case("mixed-encoding.txt", data("UTF-8 line: naïve café résumé\n".encode() * 6
                                        + "cp1252 line: déjà vu, naïve façade\n".encode("cp1252")
                                        * 6), "ok", "cp1252 line: déjà vu, naïve façade",
             absent=("Ã",), what="UTF-8 and cp1252 lines in one file"),
        Case("utf16.txt", data(("UTF-16 text with a byte order mark. " * 10).encode("utf-16")),
             "ok", "UTF-16 text with a byte order mark", what="UTF-16 with BOM"),
        Case("megaline.txt", data(b"word " * (2 * MB)), "ok", "word word",
             what="10 MB on one line (text)"),
        Case("invisible.txt", data(("\u200b\u2060\ufeff \t\u200e\n" * 500).encode()), "empty",
             "no text", what="only zero-width and blank characters"),
        # HTML
        Case("nested.html", data(html_page("<div>" * 30_000 + f"<p>{PROSE}</p>"
                                           + "</div>" * 30_000)), "ok", PROSE[:60],
             what="30000 nested tags"),
        Case("megaline.html", data(html_page("<p>" + "word " * 200_000 + "</p>")), "ok",
             "word word", what="1 MB line of HTML"),
        Case("zero-width.html", data(html_page(f"<p>{ZW_PARAGRAPH}</p>" * 3)), "ok",
             "committee met on Tuesday", absent=(*ZERO_WIDTH, "\x07", "\x1b", "\x7f"),
             what="HTML with zero-width, bidi and control characters"),
        Case("laughs.xhtml", data(b'<?xml version="1.0"?>\n<!DOCTYPE html [' + LAUGHS
                                  + b']><html xmlns="http://www.w3.org/1999/xhtml"><head><title>'
                                  b'Laughs</title></head><body><p>' + PROSE.encode()
                                  + b" &lol9;</p></body></html>"), "ok", PROSE[:60],
             absent=(LAUGHED,), what="XHTML billion laughs"),
        Case("laughs.svg", data(b'<?xml version="1.0"?><!DOCTYPE svg [' + LAUGHS + b']><svg '
                                b'xmlns="http://www.w3.org/2000/svg"><text>&lol9;</text></svg>'),
             "skipped", "static_asset", stage="ingest",
             what="SVG billion laughs (a static asset by its name: skipped unparsed)"),
        Case("scripts-only.html", data(html_page("<script>" + "var x = 1;" * 5000
                                                 + "</script><style>p{}</style>")), "empty",
             "no main text", what="HTML with only script and style"),
        # containers and files lying about their type
        Case("bomb.epub", data(lambda: zip_archive(epub_members(
            Member("c.xhtml", unit=b" " * 65536, times=8192)))), "too_large", "zip bomb",
             what="EPUB whose chapter unpacks to 512 MB"),
        Case("truncated.epub", data(lambda: zip_archive(epub_members(
            Member("c.xhtml", html_page(f"<p>{PROSE}</p>"))))[:300]), "corrupt",
             "damaged", what="truncated EPUB"),
        Case("report.pdf", data(html_page(f"<p>{PROSE}</p>")), "corrupt", "HTML",
             what="HTML named .pdf"),
        *office_cases(), *archive_cases(), *mail_cases(),
        Case("photo.png", data(one_page_pdf()), "ok", HELLO, what="PDF named .png"),
        Case("page.txt", data(html_page(f"<p>{PROSE}</p>", title="Named txt")), "ok",
             PROSE[:60], what="HTML named .txt"),
    ]


def _bomb_part(kind: str) -> bytes:
    """An OOXML/ODF package whose main part unpacks to 512 MB of spaces (a few hundred KB)."""
    from formatkit import docx_bytes, odt_bytes, xlsx_bytes

    made, part = {"docx": (docx_bytes, "word/document.xml"),
                  "xlsx": (xlsx_bytes, "xl/worksheets/sheet1.xml"),
                  "odt": (odt_bytes, "content.xml")}[kind]
    import zipfile

    with zipfile.ZipFile(io.BytesIO(made())) as zf:
        members = [Member(i.filename, zf.read(i)) for i in zf.infolist()
                   if i.filename != part]
    return zip_archive([*members, Member(part, unit=b" " * 65536, times=8192)])


def _cut(make: Callable[[], bytes], share: float = 0.5) -> Callable[[], bytes]:
    return lambda: make()[: int(len(make()) * share)]


def office_cases() -> list[Case]:
    from formatkit import (
        MACRO_MARK,
        docx_bytes,
        encrypted_office,
        macro_enabled,
        odt_bytes,
        pptx_bytes,
        rtf_bytes,
        xlsx_bytes,
    )

    return [
        Case("bomb.docx", data(lambda: _bomb_part("docx")), "too_large", "zip bomb",
             what="DOCX whose document part unpacks to 512 MB"),
        Case("bomb.xlsx", data(lambda: _bomb_part("xlsx")), "too_large", "zip bomb",
             what="XLSX whose sheet unpacks to 512 MB"),
        Case("bomb.odt", data(lambda: _bomb_part("odt")), "too_large", "zip bomb",
             what="ODT whose content unpacks to 512 MB"),
        Case("truncated.docx", data(_cut(docx_bytes)), "corrupt", "damaged",
             what="truncated DOCX"),
        Case("truncated.pptx", data(_cut(pptx_bytes)), "corrupt", "damaged",
             what="truncated PPTX"),
        Case("truncated.odt", data(_cut(odt_bytes, 0.7)), "corrupt", "damaged",
             what="truncated ODT"),
        Case("truncated.rtf", data(_cut(rtf_bytes, 0.6)), "ok", "harbour survey lists",
             what="truncated RTF (the text before the cut)"),
        Case("deep.rtf", data(b"{\\rtf1 " + b"{" * 200_000 + PROSE.encode() + b"}" * 200_000
                              + b"}"), "ok", PROSE[:60], what="RTF nested 200000 groups deep"),
        Case("locked.docx", data(lambda: encrypted_office(docx_bytes())), "encrypted",
             "password", what="password-protected DOCX"),
        Case("locked.xlsx", data(lambda: encrypted_office(xlsx_bytes())), "encrypted",
             "password", what="password-protected XLSX"),
        Case("locked.odt", data(lambda: _encrypted_odt(odt_bytes())), "encrypted", "password",
             what="password-protected ODT"),
        Case("macros.docm", data(lambda: macro_enabled(docx_bytes(), "docx")), "ok",
             "harbour survey", absent=("AutoOpen", MACRO_MARK),
             what="macro-enabled DOCM (text read, macros never run)"),
        Case("macros.xlsm", data(lambda: macro_enabled(xlsx_bytes(), "xlsx")), "ok", "washer",
             absent=("AutoOpen",), what="macro-enabled XLSM"),
        Case("slides.txt", data(pptx_bytes), "ok", "Quay inventory",
             what="PPTX named .txt"),
        Case("sheet.zip", data(xlsx_bytes), "ok", "washer", what="XLSX named .zip"),
        Case("letter.docx", data(rtf_bytes), "ok", "harbour survey lists",
             what="RTF named .docx"),
        Case("legacy.doc", data(lambda: encrypted_office(docx_bytes()).replace(
            "EncryptedPackage".encode("utf-16-le"), "OtherStreamName!".encode("utf-16-le"))),
             "unsupported", "legacy binary Office", stage="ingest",
             what="legacy binary .doc (OLE2)"),
    ]


def _encrypted_odt(made: bytes) -> bytes:
    """An ODT whose manifest lists encryption data for its content, as LibreOffice writes."""
    from formatkit import rewrite_zip

    manifest = (b'<?xml version="1.0"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:'
                b'opendocument:xmlns:manifest:1.0"><manifest:file-entry manifest:full-path='
                b'"content.xml" manifest:media-type="text/xml"><manifest:encryption-data '
                b'manifest:checksum-type="SHA1/1K"/></manifest:file-entry></manifest:manifest>')
    return rewrite_zip(made, {"META-INF/manifest.xml": manifest, "content.xml": os.urandom(900)},
                       {})


NOTE = b"Minutes of the harbour board: the survey is approved and will be printed.\n"


def note(case: str) -> bytes:
    """NOTE filed under a case's name: each case's member its own document (one bytes, one id)."""
    return NOTE + f"Filed with {case}.\n".encode()


def _tar_gz_bomb() -> bytes:
    """A .tar.gz whose one member declares and holds 1 GB of zeros (1 MB on disk)."""
    import gzip
    import tarfile

    info = tarfile.TarInfo("zeros.txt")
    info.size = 1 << 30
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    body += deflate_repeat(bytes(1 << 20), 1024, wrap=False)[:-2] + b"\x03\x00"
    return gzip.compress(b"")[:10] + body + struct.pack("<II", 0, 0)


def archive_cases() -> list[Case]:
    import tarfile

    from formatkit import tar_bytes, tar_entry, zip_bytes

    deep = zip_bytes({"minutes.txt": note("deep.zip")})
    for level in range(4):
        deep = zip_bytes({f"level{level}.zip": deep})
    specials = [tar_entry("link.txt", tarfile.SYMTYPE, "/etc/passwd"),
                tar_entry("tty", tarfile.CHRTYPE), tar_entry("pipe", tarfile.FIFOTYPE)]
    return [
        Case("bomb.zip", data(lambda: zip_archive([Member("c.txt", unit=b" " * 65536,
                                                          times=8192)])), "compression_ratio",
             "zip bomb", what="ZIP whose member unpacks to 512 MB"),
        Case("bomb.tar.gz", data(_tar_gz_bomb), "compression_ratio", "compression bomb",
             what="tar.gz whose member unpacks to 1 GB"),
        Case("many.zip", data(lambda: zip_bytes({f"n{i}.txt": NOTE for i in range(MAX_MEMBERS
                                                                                  + 1)})),
             "too_many_members", "extract.max_members", what="ZIP with too many members"),
        Case("escape.zip", data(lambda: zip_archive([Member("minutes.txt", note("escape.zip")),
                                                     Member("../../etc/cron.d/x", NOTE),
                                                     Member("/abs/path.txt", NOTE)])), "ok",
             "survey is approved", member_failures=("unsafe_path", "unsafe_path"),
             what="ZIP with `..` and absolute member names"),
        Case("specials.tar", data(lambda: tar_bytes({"minutes.txt": note("specials.tar")}, "w",
                                                    specials)), "ok", "survey is approved",
             member_failures=("device", "device", "link"),
             what="tar with a symlink, a device and a FIFO"),
        Case("deep.zip", data(lambda: zip_bytes({"top.txt": note("deep.zip"), "d.zip": deep})),
             "ok", "survey is approved", member_failures=("too_deep",),
             what="ZIP nested 6 deep"),
        Case("secret.zip", data(lambda: zip_archive([Member("secret.txt", NOTE)]).replace(
            b"\x14\x00\x00\x00\x08\x00", b"\x14\x00\x01\x00\x08\x00")), "encrypted",
             "encrypted ZIP member", what="ZIP with an encrypted member"),
        Case("truncated.zip", data(_cut(lambda: zip_bytes({"a.txt": NOTE * 50,
                                                           "b.txt": NOTE * 40}))), "corrupt",
             "damaged", what="truncated ZIP"),
        Case("truncated.tar.gz", data(_cut(lambda: tar_bytes({"a.txt": os.urandom(4000)}))),
             "corrupt", "damaged", what="truncated tar.gz"),
        Case("bundle.pdf", data(lambda: zip_bytes({"minutes.txt": NOTE})), "corrupt",
             "not a PDF", what="ZIP named .pdf"),
        Case("archive.txt", data(lambda: tar_bytes({"minutes.txt": note("archive.txt")},
                                                   "w:xz")), "ok", "survey is approved",
             what="tar.xz named .txt"),
    ]


def mail_cases() -> list[Case]:
    from formatkit import mail

    smime = mail()
    smime.replace_header("Content-Type", "application/pkcs7-mime; smime-type=enveloped-data")
    bomb = mail("Bomb attached", attachments=[(
        "bomb.zip", zip_archive([Member("c.txt", unit=b" " * 65536, times=8192)]))])
    many = mail("Many attachments", attachments=[(f"n{i}.txt", NOTE)
                                                 for i in range(MAX_MEMBERS + 1)])
    return [
        Case("secret.eml", data(bytes(smime)), "encrypted", "S/MIME",
             what="S/MIME-encrypted mail"),
        Case("truncated.eml", data(bytes(mail())[:-60]), "ok", "harbour survey",
             what="truncated mail"),
        Case("bomb.eml", data(bytes(bomb)), "ok", "harbour survey",
             member_failures=("compression_ratio",), what="mail with a zip bomb attached"),
        Case("many.eml", data(bytes(many)), "too_many_members", "extract.max_members",
             what="mail with too many attachments"),
        Case("mail.txt", data(bytes(mail())), "ok", "harbour survey",
             absent=("Message-ID", "ann@example.org"), what="mail named .txt"),
    ]


GOOD = {  # ordinary files among the hostile ones: each must come out as a document
    "good.pdf": (lambda: text_pdf_bytes(page_texts(2, seed=11)), page_texts(1, seed=11)[0][:40]),
    "good.html": (lambda: html_page(f"<h1>Harbour</h1><p>{PROSE}</p><p>{PROSE}</p>"),
                  PROSE[:60]),
    "good.txt": (lambda: f"{PROSE}\n\n{PROSE}\n".encode(), PROSE[:60]),
}


def build_corpus(folder: Path) -> dict[str, Case]:
    """Make every hostile case and the good files in `folder`; returns cases by name."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = {}
    for case in corpus():
        case.make(folder / case.name)
        cases[case.name] = case
    for name, (make, _) in GOOD.items():
        (folder / name).write_bytes(make())
    return cases


# --- hostile servers (raw answers for crawler.localsite.Page.raw) -------------------------


def dribble(total: int, every_s: float) -> Callable[[RawConnection], None]:
    """An honest Content-Length, then one byte every `every_s`: a slow-loris body."""
    def answer(conn: RawConnection) -> None:
        conn.head(200, {"Content-Type": "text/html", "Content-Length": str(total)})
        for _ in range(total):
            conn.write(b" ")
            conn.sleep(every_s)

    return answer


def silent(conn: RawConnection) -> None:
    """Accepts the request and never answers."""
    while True:
        conn.sleep(1.0)


def endless(conn: RawConnection) -> None:
    """A body without Content-Length that never ends."""
    conn.head(200, {"Content-Type": "text/plain", "Connection": "close"})
    line = b"an endless line of text\n" * 1000
    while True:
        conn.write(line)


def declared_length(length: int, body: bytes,
                    content_type: str = "text/html") -> Callable[[RawConnection], None]:
    """A Content-Length of `length` over `body`, shorter or longer, then the connection
    closes."""
    def answer(conn: RawConnection) -> None:
        conn.head(200, {"Content-Type": content_type, "Content-Length": str(length),
                        "Connection": "close"})
        conn.write(body)

    return answer


def not_http(conn: RawConnection) -> None:
    conn.write(b"\x00\xffTHIS IS NOT HTTP\r\n\r\n" * 20)


def chunked_body(body: bytes, content_type: str = "text/plain") -> Callable[[RawConnection], None]:
    """`body` with no Content-Length (it ends when the connection closes)."""
    def answer(conn: RawConnection) -> None:
        conn.head(200, {"Content-Type": content_type, "Connection": "close"})
        for start in range(0, len(body), 65536):
            conn.write(body[start:start + 65536])

    return answer


def gzip_bomb(expanded: int) -> bytes:
    """A gzip member of `expanded` zero bytes (about 1/1000 of it on the wire)."""
    import gzip

    return gzip.compress(bytes(expanded), 9)


# --- a tripwire on every local address ------------------------------------------------------


def own_addresses() -> list[str]:
    """This machine's addresses besides 127.0.0.1 and ::1 that are not public (Linux: from
    /proc), e.g. a container's 172.17.0.2 or fd00::2; link-local ones need a zone, left out."""
    import ipaddress

    found: set[str] = set()
    with contextlib.suppress(OSError):
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        # "|-- 192.0.2.2" followed by "/32 host LOCAL": an address of this host
        found |= {prev.split()[-1] for prev, line in zip(lines, lines[1:], strict=False)
                  if line.strip() == "/32 host LOCAL"}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            hexa = line.split()[0]
            found.add(str(ipaddress.IPv6Address(bytes.fromhex(hexa))))
    addrs = [ipaddress.ip_address(a) for a in found]
    return sorted(str(a) for a in addrs if not (a.is_loopback or a.is_link_local or a.is_global))


class Tripwire:
    """Listeners on one port of every local address (the IPv4 and IPv6 wildcards): whatever
    address of this machine a connection to that port was made to, it is heard and recorded
    (the address as the connection's own end saw it), then closed."""

    def __init__(self) -> None:
        self.heard: list[str] = []
        self.ipv6 = False  # an IPv6 listener too (False only where the machine has no IPv6)
        self._sockets: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._sockets[0].getsockname()[1]

    def start(self) -> Tripwire:
        for _ in range(20):  # the IPv6 side of a free IPv4 port may be taken: try another
            v4 = socket.create_server(("0.0.0.0", 0))
            try:
                v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            except OSError:  # no IPv6 in this kernel
                self._sockets = [v4]
                break
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                v6.bind(("::", v4.getsockname()[1]))
            except OSError as e:
                v6.close()
                if e.errno == errno.EADDRINUSE:
                    v4.close()
                    continue
                self._sockets = [v4]  # no IPv6 address to bind: nothing reaches ::1 either
                break
            v6.listen()
            self._sockets, self.ipv6 = [v4, v6], True
            break
        else:
            raise RuntimeError("no port free on both IPv4 and IPv6")
        self._thread = threading.Thread(target=self._listen, name="tripwire", daemon=True)
        self._thread.start()
        return self

    def _listen(self) -> None:
        import selectors

        with selectors.DefaultSelector() as sel:
            for s in self._sockets:
                sel.register(s, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in sel.select(timeout=0.05):
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    self.heard.append(conn.getsockname()[0])
                    conn.close()

    def reaches(self, address: str) -> bool:
        """Connect to `address` at the port as the crawler would; whether it was heard."""
        before = len(self.heard)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            try:
                s.connect((address, self.port))
            except OSError:
                return False
        deadline = time.monotonic() + 2.0
        while len(self.heard) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        if len(self.heard) == before:
            return False
        del self.heard[before:]  # our own connection, not the crawler's
        return True

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for s in self._sockets:
            s.close()
