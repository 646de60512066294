"""What a response holds: the bytes decide (pipeline.sniff), checked against Content-Type.

Magic numbers win over the header for binary formats (a PDF served as octet-stream is a PDF);
for text the header refines what bytes alone cannot tell (an HTML fragment with no doctype,
markdown served as text/markdown). Unknown bytes are refused, never stored as "bin".
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from crawler.urls import Reason
from pipeline.sniff import EXTENSIONS, Sniffed, sniff_data

# Content-Type -> the kind (raw store extension) it announces
TYPE_KINDS = {
    "text/html": "html", "application/xhtml+xml": "html", "text/plain": "txt",
    "text/markdown": "md", "text/x-markdown": "md", "application/pdf": "pdf",
    "application/x-pdf": "pdf", "image/png": "png", "image/jpeg": "jpg", "image/jpg": "jpg",
    "image/gif": "gif", "image/tiff": "tif", "image/bmp": "bmp", "image/x-ms-bmp": "bmp",
    "image/webp": "webp", "application/epub+zip": "epub",
}
# headers that say nothing about the content: fetch and sniff
VAGUE_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream",
                         "application/binary", "application/unknown", "application/force-download",
                         "application/x-download", "unknown/unknown"})
TEXT_KINDS = frozenset({"html", "txt", "md"})
MIME_OF_KIND = {ext: mime for mime, ext in EXTENSIONS.items()}


def media_type(content_type: bytes | str | None) -> str:
    """'text/html; charset=utf-8' -> 'text/html'."""
    if not content_type:
        return ""
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    return content_type.split(";", 1)[0].strip().lower()


def header_charset(content_type: bytes | str | None) -> str | None:
    if not content_type:
        return None
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'").lower()
    return None


def announced_kind(content_type: bytes | str | None) -> str | None:
    """The kind a Content-Type announces: a kind, "" for a known unwanted type, None if vague."""
    mtype = media_type(content_type)
    if mtype in VAGUE_TYPES:
        return None
    return TYPE_KINDS.get(mtype, "")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a response body is (`sniffed`) and, when it is not kept, why (`reason`)."""

    sniffed: Sniffed | None
    reason: str = ""
    detail: str = ""


def classify(body: bytes, content_type: bytes | str | None, url: str,
             kinds: frozenset[str]) -> Verdict:
    """Decide the kind of a downloaded body; refuse kinds not in `kinds` and unknown bytes."""
    name = urlsplit(url).path
    found = sniff_data(body, name)
    announced = announced_kind(content_type)
    mtype = media_type(content_type)
    if found.ext in TEXT_KINDS and announced in TEXT_KINDS and announced != found.ext:
        # text the bytes cannot place: trust the server, except that a .md path stays markdown
        if not (found.ext == "md" and announced == "txt"):
            found = Sniffed(MIME_OF_KIND[announced], announced)
    if not found.supported:
        return Verdict(None, Reason.UNSUPPORTED, f"unknown content (Content-Type {mtype or '-'})")
    if found.ext not in kinds:  # the kind is kept in the verdict: HTML is still followed
        return Verdict(found, Reason.FILE_TYPE, f"{found.mime} is not in crawl.file_types")
    return Verdict(found)
