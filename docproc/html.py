"""HTML: the main content (trafilatura) as text with its paragraph breaks, and the title.

Before trafilatura reads a page, its structure is used where trafilatura's heuristics go
wrong on documentation sites: permalink anchors are removed, a page that marks its main
content is read from that element alone, and lists of links inside the main content are
kept as text (trafilatura drops link-dense lists as navigation).
"""

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

# Permalink anchors (Sphinx and MkDocs "headerlink", Docusaurus "hash-link", GitHub "anchor",
# rustdoc): an <a href="#..."> whose only text is one of these marks, or none (an icon).
PERMALINK_MARKS = frozenset("¶§#🔗⚓")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\ufe0e\ufe0f"))
# Where a list of links is navigation, not content, even inside the main content.
NAV_TAGS = frozenset({"nav", "aside", "header", "footer", "menu"})
NAV_ROLES = frozenset({"navigation", "complementary", "banner", "contentinfo", "doc-toc"})
_NAV_TOKEN = re.compile(r"(?:^|[-_])(?:nav|navbar|navigation|menu|sidebar|breadcrumbs?|"
                        r"pagination|pager|toc|related)(?:$|[-_])")
_MAIN_XPATH = '//body//main | //body//*[@role="main"]'
# trafilatura's blocks that start a line of their own inside a list item
ITEM_BLOCKS = frozenset({"p", "head", "quote", "table", "list"})


def trafilatura_version() -> str:
    import trafilatura

    return f"trafilatura {trafilatura.__version__}"


def _child_text(child: Any) -> str:
    """An inline or block child of a paragraph, list item or cell as text (without its tail)."""
    if child.tag == "lb":
        return "\n"
    if child.tag == "list":
        return "\n" + _list_text(child) + "\n"
    if child.tag in ITEM_BLOCKS:  # a table in a list item is layout (pydoc): its lines stay
        return "\n" + _inline_text(child) + "\n"
    return _inline_text(child)


def _inline_text(el: Any) -> str:
    """Text of an element with <lb/> as line breaks; paragraphs and lists inside it (the
    paragraphs of a definition, the list in a table cell) start lines of their own."""
    parts: list[str] = [el.text or ""]
    for child in el:
        parts.append(_child_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _item_lines(item: Any, bullet: str) -> list[str]:
    """One list item: its first line after the bullet, then its other lines and sub-lists
    (indented), in the order they come."""
    lines: list[str] = []
    text: list[str] = [item.text or ""]

    def flush() -> None:
        for line in "".join(text).split("\n"):
            if line.strip():
                lines.append(line if lines else bullet + line.strip())
        text.clear()

    for child in item:
        if child.tag == "list":
            flush()
            lines.extend("  " + line for line in _list_lines(child))
        else:
            text.append(_child_text(child))
        text.append(child.tail or "")
    flush()
    return lines


def _list_lines(el: Any) -> list[str]:
    """A list as "- item" lines, each sub-list indented under its item; a definition list
    (rend="dl") as its terms and definitions, one after the other, without bullets."""
    bullet = "" if el.get("rend") == "dl" else "- "
    return [line for item in el.iterchildren("item") for line in _item_lines(item, bullet)]


def _list_text(el: Any) -> str:
    return "\n".join(_list_lines(el))


def _table_text(el: Any) -> str:
    rows = []
    for row in el.iter("row"):
        cells = [" ".join(_inline_text(c).split()) for c in row.iterchildren("cell")]
        rows.append(CELL_SEPARATOR.join(cells))
    return "\n".join(rows)


def _table_markdown(el: Any) -> str:
    from docproc.blocks import markdown_table, table_rows

    rows = [[_inline_text(c) for c in row.iterchildren("cell")] for row in el.iter("row")]
    return markdown_table(table_rows(rows))


def _heading_level(el: Any) -> int:
    rend = el.get("rend") or ""
    return int(rend[1]) if len(rend) == 2 and rend[0] == "h" and rend[1].isdigit() else 2


def body_text(body: Any, markdown: bool = False) -> str:
    """trafilatura's XML body as text: a blank line between blocks (paragraphs, lists, ...);
    `markdown`: headings as `#`, tables as GFM tables, code fenced (lists are "- " either
    way)."""
    blocks = []
    for el in body:
        if el.tag == "list":
            text = _list_text(el)
        elif el.tag == "table":
            text = _table_markdown(el) if markdown else _table_text(el)
        elif el.tag == "code":
            text = "".join(el.itertext())
            text = f"```\n{text.strip(chr(10))}\n```" if markdown and text.strip() else text
        elif el.tag == "head" and markdown:
            text = f"{'#' * _heading_level(el)} {' '.join(_inline_text(el).split())}"
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


def _is_permalink(a: Any) -> bool:
    if not (a.get("href") or "").strip().startswith("#"):
        return False
    text = "".join(a.itertext()).translate(_INVISIBLE)
    return all(c in PERMALINK_MARKS or c.isspace() for c in text)


def _is_navigation(el: Any) -> bool:
    if el.tag in NAV_TAGS or (el.get("role") or "").strip().lower() in NAV_ROLES:
        return True
    names = f"{el.get('class') or ''} {el.get('id') or ''}".lower().split()
    return any(_NAV_TOKEN.search(name) for name in names)


def _only_main(tree: Any) -> None:
    """Keep only the page's main content when it marks exactly one (<main>, role="main"):
    sidebars, breadcrumbs and next/previous links are outside it, and trafilatura's fallbacks
    would read them in when the main text is short (a chapter page that is a list)."""
    mains = tree.xpath(_MAIN_XPATH)
    outer = [m for m in mains if not any(a in mains for a in m.iterancestors())]
    if len(outer) != 1 or not "".join(outer[0].itertext()).strip():
        return
    node = outer[0]
    node.tail = None
    while node.tag != "body" and (parent := node.getparent()) is not None:
        for sibling in list(parent):
            if sibling is not node:
                parent.remove(sibling)  # with its tail: text outside the main content
        parent.text = None
        node = parent


def _keep_content_link_lists(tree: Any) -> None:
    """Unlink the links of lists inside the main content (a chapter's list of its sections,
    "the modules described in this chapter"), so that trafilatura's link-density test, which
    takes them for navigation, keeps them. Lists in navigation containers, and lists that only
    link to places on the same page (a local table of contents), stay links."""
    mains = set(tree.xpath(_MAIN_XPATH + " | //body//article"))
    if not mains:
        return
    for lst in list(tree.iter("ul", "ol")):
        inside = [lst]  # the list and its containers up to the main content, if it is in it
        for el in lst.iterancestors():
            if el in mains:
                break
            inside.append(el)
        else:
            continue  # not in the main content
        if any(_is_navigation(el) for el in inside):  # not <body class="...-nav"> (RTD)
            continue
        links = list(lst.iter("a"))
        if not links or all((a.get("href") or "").startswith("#") for a in links):
            continue
        for a in links:
            a.drop_tag()  # its text and children stay where they were


def prepare_tree(data: bytes) -> Any:
    """The page as trafilatura's lxml tree, with permalinks removed, the main content alone
    when the page marks it, and content link lists unlinked; None when lxml parses nothing."""
    from trafilatura.utils import load_html

    tree = load_html(data)
    if tree is None:
        return None
    for a in list(tree.iter("a")):
        if _is_permalink(a):
            a.drop_tree()  # the mark goes, the text after it (its tail) stays
    _only_main(tree)
    _keep_content_link_lists(tree)
    return tree


def extract_html(path: Path, source: str, markdown: bool = False) -> Extracted:
    return extract_html_bytes(path.read_bytes(), source, markdown)


def extract_html_bytes(data: bytes, source: str, markdown: bool = False) -> Extracted:
    """The main content of an HTML page (as Markdown with `markdown`) and its title."""
    import trafilatura

    url = source if source.startswith(("http://", "https://")) else None
    tree = prepare_tree(data)
    doc = trafilatura.bare_extraction(data if tree is None else tree, url=url,
                                      with_metadata=True, include_comments=False,
                                      include_tables=True, deduplicate=False)
    text = body_text(doc.body, markdown) if doc is not None and doc.body is not None else ""
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
