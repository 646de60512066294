"""HTML: the main content (trafilatura) as text with its paragraph breaks, and the title."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docproc.result import Extracted
from pipeline.errors import EmptyInput

CELL_SEPARATOR = " | "
_LANG_ATTR = re.compile(rb"<html[^>]*?\slang\s*=\s*[\"']?([A-Za-z]{2,3})", re.IGNORECASE)
_TITLE_TAG = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def trafilatura_version() -> str:
    import trafilatura

    return f"trafilatura {trafilatura.__version__}"


def _inline_text(el: Any) -> str:
    """Text of an element with <lb/> as line breaks."""
    parts: list[str] = []
    if el.text:
        parts.append(el.text)
    for child in el:
        if child.tag == "lb":
            parts.append("\n")
        else:
            parts.append(_inline_text(child))
        if child.tail:
            parts.append(child.tail)
    return "".join(parts)


def _list_text(el: Any) -> str:
    items = []
    for item in el.iterchildren("item"):
        items.append("- " + _inline_text(item).strip())
    return "\n".join(items)


def _table_text(el: Any) -> str:
    rows = []
    for row in el.iter("row"):
        cells = [" ".join(_inline_text(c).split()) for c in row.iterchildren("cell")]
        rows.append(CELL_SEPARATOR.join(cells))
    return "\n".join(rows)


def body_text(body: Any) -> str:
    """trafilatura's XML body as text: a blank line between blocks (paragraphs, lists, ...)."""
    blocks = []
    for el in body:
        if el.tag == "list":
            text = _list_text(el)
        elif el.tag == "table":
            text = _table_text(el)
        elif el.tag == "code":
            text = "".join(el.itertext())
        else:
            text = _inline_text(el)
        if text.strip():
            blocks.append(text.strip("\n"))
        if el.tail and el.tail.strip():
            blocks.append(el.tail.strip())
    return "\n\n".join(blocks)


def _head_title(data: bytes) -> str:
    import html

    m = _TITLE_TAG.search(data[:65536])
    if not m:
        return ""
    return " ".join(html.unescape(m.group(1).decode("utf-8", errors="replace")).split())


def html_lang(data: bytes) -> str:
    m = _LANG_ATTR.search(data[:65536])
    return m.group(1).decode().lower() if m else ""


def extract_html(path: Path, source: str) -> Extracted:
    import trafilatura

    data = path.read_bytes()
    url = source if source.startswith(("http://", "https://")) else None
    doc = trafilatura.bare_extraction(data, url=url, with_metadata=True, include_comments=False,
                                      include_tables=True, deduplicate=False)
    text = body_text(doc.body) if doc is not None and doc.body is not None else ""
    if not text.strip():
        raise EmptyInput(source, "no main text found in the HTML page")
    title = (doc.title or "").strip() or _head_title(data)
    return Extracted(extractor=trafilatura_version(), text=text, title=title,
                     lang=(doc.language or html_lang(data)))
