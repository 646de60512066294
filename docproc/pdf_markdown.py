"""A PDF page as Markdown (extract.format = "markdown"): the text layer in the same reading
order as text mode, with headings (lines set well above the page's body size) as `#`,
bulleted lines as list items, and tables as GitHub-flavoured tables.

Fast by design: `page.find_tables()` costs tens of milliseconds a page, so it runs only on a
page whose vector graphics could draw a table's rules (MIN_RULES line or rectangle paths),
and only over the area they cover; a page without them is laid out from one `extractDICT`.
The OCR decision is made before, on the same text, and is unchanged: OCRed pages stay plain
text.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from docproc.blocks import markdown_table, table_rows
from docproc.reading import join_blocks, reading_order

MIN_RULES = 4  # stroked/filled paths a page needs before its tables are looked for
MIN_RULE_PT = 10.0  # a path this long (points) on one side could be a table's rule or cell
RULE_PAD_PT = 2.0  # around the ruled region: a rule's own width, so no cell edge is cut off
# a line whose font is this much bigger than the page's body text is a heading of the level
HEADING_RATIOS = ((1.8, 1), (1.4, 2), (1.15, 3))
HEADING_MAX_CHARS = 200  # a longer "heading" is a paragraph in a big font
BULLETS = frozenset("•◦▪▫●○■□‣⁃–-*·")
PATH_ENTRIES = ("fill-path", "stroke-path")
TEXT_BLOCK = 0  # extractDICT's block type for text


def _ruled_region(page: Any) -> tuple[float, float, float, float] | None:
    """The area the page's rules cover, where it draws enough paths to rule a table (bboxlog
    is cheap to get); None where it does not. Dots and specks do not count: pdfTeX draws
    dozens of them on pages without a table."""
    rules, x0, y0, x1, y1 = 0, float("inf"), float("inf"), float("-inf"), float("-inf")
    for kind, (a, b, c, d) in page.get_bboxlog():
        if kind in PATH_ENTRIES and max(c - a, d - b) >= MIN_RULE_PT:
            rules += 1
            x0, y0, x1, y1 = min(x0, a), min(y0, b), max(x1, c), max(y1, d)
    if rules < MIN_RULES:
        return None
    return x0 - RULE_PAD_PT, y0 - RULE_PAD_PT, x1 + RULE_PAD_PT, y1 + RULE_PAD_PT


def _find_tables(page: Any, region: tuple[float, float, float, float]) -> list[Any]:
    """The tables PyMuPDF's line-based finder sees in the ruled region. Clipped, because the
    finder is pure Python over every character it is given (5-10x faster so). Not gated by its
    layout model: with pymupdf-layout installed (it comes with pymupdf4llm 2) that gate runs a
    neural network on each page, about 1 s of CPU, 30x the finder itself."""
    try:
        return page.find_tables(clip=region, use_layout=False).tables
    except TypeError:  # PyMuPDF before 2.0: no layout gate to turn off
        return page.find_tables(clip=region).tables


def _tables(page: Any, flags: int, region: tuple[float, float, float, float]
            ) -> list[tuple[tuple[float, float, float, float], str]]:
    """(bbox, Markdown) of each table PyMuPDF finds in the page's ruled region."""
    found = []
    tables = _find_tables(page, region)
    words = page.get_text("words", flags=flags, clip=region) if tables else []
    for table in tables:
        rows = table_rows(_cell_texts(table, words))
        if len(rows) >= 2 and len(rows[0]) >= 2:
            found.append((tuple(table.bbox), markdown_table(rows)))
    return found


def _cell_texts(table: Any, words: list[tuple]) -> list[list[str]]:
    """Each cell's words in reading order. Not `table.extract()`: it groups characters into
    lines by their boxes, and a base-14 font's '.' and '-' sit low enough to be split off
    ("0.98" came out as "098\n.")."""
    rows = []
    for row in table.rows:
        cells = []
        for cell in row.cells:
            inside = [w for w in words if cell is not None and _inside(w[:4], cell)]
            inside.sort(key=lambda w: (w[5], w[6], w[7]))  # block, line, word numbers
            cells.append(" ".join(w[4] for w in inside))
        rows.append(cells)
    return rows


def _inside(box: tuple, area: tuple) -> bool:
    x0, y0, x1, y1 = box[:4]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return area[0] <= cx <= area[2] and area[1] <= cy <= area[3]


def _body_size(blocks: list[dict]) -> float:
    sizes: Counter[float] = Counter()
    for block in blocks:
        for line in block.get("lines", ()):
            for span in line["spans"]:
                sizes[round(span["size"], 1)] += len(span["text"])
    return sizes.most_common(1)[0][0] if sizes else 0.0


def _line_text(line: dict) -> str:
    return "".join(span["text"] for span in line["spans"])


def _block_markdown(block: dict, body: float) -> str:
    """One text block's lines, a heading or list items marked up."""
    lines = [(_line_text(line), max((s["size"] for s in line["spans"]), default=0.0))
             for line in block.get("lines", ())]
    lines = [(text, size) for text, size in lines if text.strip()]
    if not lines:
        return ""
    text = "\n".join(t for t, _ in lines)
    size = min(s for _, s in lines)
    if body and len(text) <= HEADING_MAX_CHARS:
        level = next((lvl for ratio, lvl in HEADING_RATIOS if size >= ratio * body), 0)
        if level:
            return f"{'#' * level} {' '.join(text.split())}"
    out = []
    for line, _ in lines:
        stripped = line.lstrip()
        if stripped[:1] in BULLETS and stripped[1:2] == " ":
            out.append(f"- {stripped[2:].strip()}")
        else:
            out.append(line)
    return "\n".join(out)


def page_markdown(page: Any, flags: int, textpage: Any = None) -> str:
    """The page's text layer (read with the text-mode `flags`, or from `textpage`, made with
    them) as Markdown: headings, list items, tables."""
    region = _ruled_region(page)
    tables = _tables(page, flags, region) if region else []
    layout = (textpage or page.get_textpage(flags=flags)).extractDICT()
    blocks = [b for b in layout["blocks"] if b.get("type") == TEXT_BLOCK]
    body = _body_size(blocks)
    items: list[tuple] = []
    for block in blocks:
        if any(_inside(block["bbox"], area) for area, _ in tables):
            continue  # its words are in the table
        text = _block_markdown(block, body)
        if text:
            items.append((*block["bbox"], text))
    items += [(*area, md) for area, md in tables]
    return join_blocks(reading_order(items))
