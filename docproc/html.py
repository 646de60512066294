"""HTML: the main content (trafilatura) as text with its paragraph breaks, and the title."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from docproc.result import Extracted
from pipeline.errors import EmptyInput

CELL_SEPARATOR = " | "
LXML_MAX_DEPTH = 255  # libxml2's HTML parser drops content nested deeper than this
VOID_TAGS = frozenset("area base br col embed hr img input link meta source track wbr".split())
HIDDEN_TAGS = frozenset("head script style noscript template title".split())
BLOCK_TAGS = frozenset("p div li ul ol h1 h2 h3 h4 h5 h6 tr table section article "
                       "blockquote pre header footer main nav aside".split())
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


class _FlatText(HTMLParser):
    """Visible text and the deepest nesting of a page, read as a stream of tags (no tree, so
    no depth limit): the fallback for pages nested deeper than lxml parses."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.depth = self.max_depth = self._hidden = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in VOID_TAGS:
            if tag == "br":
                self.parts.append("\n")
            return
        self.depth += 1
        self.max_depth = max(self.max_depth, self.depth)
        self._hidden += tag in HIDDEN_TAGS
        if tag in BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_TAGS:
            return
        self.depth = max(0, self.depth - 1)
        if tag in HIDDEN_TAGS:
            self._hidden = max(0, self._hidden - 1)
        if tag in BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def flat_text(data: bytes, source: str) -> tuple[str, int]:
    """(visible text, deepest tag nesting) of an HTML page."""
    from docproc.text import decode_text
    from pipeline.errors import InputError

    try:
        text = decode_text(data, source)[0]
    except InputError:  # bytes no charset explains: what is readable of them
        text = data.decode("utf-8", errors="replace")
    parser = _FlatText()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts), parser.max_depth


def extract_html(path: Path, source: str) -> Extracted:
    import trafilatura

    data = path.read_bytes()
    url = source if source.startswith(("http://", "https://")) else None
    doc = trafilatura.bare_extraction(data, url=url, with_metadata=True, include_comments=False,
                                      include_tables=True, deduplicate=False)
    text = body_text(doc.body) if doc is not None and doc.body is not None else ""
    if not text.strip():
        text, depth = flat_text(data, source)
        if depth <= LXML_MAX_DEPTH or not text.strip():
            raise EmptyInput(source, "no main text found in the HTML page")
        # lxml dropped everything nested deeper than it parses; the stream parser did not
        return Extracted(extractor=f"html.parser (tags nested {depth} deep)", text=text,
                         title=_head_title(data), lang=html_lang(data))
    title = (doc.title or "").strip() or _head_title(data)
    return Extracted(extractor=trafilatura_version(), text=text, title=title,
                     lang=(doc.language or html_lang(data)))
