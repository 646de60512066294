"""A PDF page as Markdown (extract.format = "markdown"): the text layer in the same reading
order as text mode, with headings (lines set well above the page's body size) as `#`,
bulleted lines as list items, and tables as GitHub-flavoured tables.

Fast by design: `page.find_tables()` costs tens of milliseconds a page, so it runs only on a
page whose vector graphics could draw a table's rules (MIN_RULES line or rectangle paths),
and only over the area they cover; a page without them is laid out from text mode's own
blocks, each line's font size read from the text page text mode made. The paths come from
`get_cdrawings`, not from a text page made with TEXT_COLLECT_VECTORS: that would be one run
of the page fewer, but MuPDF then splits text lines at drawn rules (underscores: "asn1
decode" came out as "asn1" and "decode").
The OCR decision is made before, on the same text, and is unchanged: OCRed pages stay plain
text.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from docproc.blocks import markdown_table, table_rows
from docproc.reading import join_blocks, reading_order

MIN_RULES = 4  # stroked/filled paths a page needs before its tables are looked for
MIN_RULE_PT = 10.0  # a path this long (points) on one side could be a table's rule or cell
RULE_PAD_PT = 2.0  # around the ruled region: a rule's own width, so no cell edge is cut off
THIN_PT = 3.0  # a path at most this high (wide) is a line across (down), not an area
GRID_LINES = 3  # lines across, and lines down, that rule a table of 2 rows and 2 columns
TOUCH_PT = 5.0  # lines this close touch (the finder snaps and joins within 3 points)
MAX_GRID_PAIRS = 40_000  # line pairs beyond which the grid test is not worth its time
# a line whose font is this much bigger than the page's body text is a heading of the level
HEADING_RATIOS = ((1.8, 1), (1.4, 2), (1.15, 3))
HEADING_MAX_CHARS = 200  # a longer "heading" is a paragraph in a big font
BULLETS = frozenset("•◦▪▫●○■□‣⁃–-*·")
TEXT_BLOCK = 0  # MuPDF's block type for text
# a content-stream operator that paints a path (stroke, fill, both) or draws an XObject (a form
# can hold paths): where none occurs the page draws no rule. A match inside a string or an
# inline image only costs the full scan
PAINTS = re.compile(rb"(?:^|(?<=[\s\])>}]))(?:[SsFBb]\*?|f\*?|Do)(?=[\s\[(/<%]|$)")


def _ruled_region(page: Any) -> tuple[float, float, float, float] | None:
    """The area the page's rules cover, where it draws enough paths to rule a table; None
    where it does not. Dots and specks do not count: pdfTeX draws dozens of them on pages
    without a table. Nor do thin lines that cannot form a grid of 2 x 2 cells, which is what
    PyMuPDF's line-based finder needs to see a table (`_may_rule_a_grid`: a framed code
    listing, rules under headings); a path with an area (a rectangle, a polyline) can be any
    number of cell edges, and always counts."""
    rules, x0, y0, x1, y1 = 0, float("inf"), float("inf"), float("-inf"), float("-inf")
    across: list[tuple] = []
    down: list[tuple] = []
    areas = 0
    for a, b, c, d, paints in _path_boxes(page):
        if max(c - a, d - b) >= MIN_RULE_PT:
            rules += paints
            x0, y0, x1, y1 = min(x0, a), min(y0, b), max(x1, c), max(y1, d)
            if d - b <= THIN_PT:
                across.append((a, b, c, d))
            elif c - a <= THIN_PT:
                down.append((a, b, c, d))
            else:
                areas += 1
    if rules < MIN_RULES or not (areas or _may_rule_a_grid(across, down)):
        return None
    return x0 - RULE_PAD_PT, y0 - RULE_PAD_PT, x1 + RULE_PAD_PT, y1 + RULE_PAD_PT


def _may_rule_a_grid(across: list[tuple], down: list[tuple]) -> bool:
    """Whether some GRID_LINES lines across and GRID_LINES down touch one another, directly or
    through each other: the lines of a table of 2 rows and 2 columns do (a header cell over
    both columns, or rules drawn a cell at a time, too: the finder joins what touches), two
    framed boxes do not."""
    if len(across) < GRID_LINES or len(down) < GRID_LINES:
        return False
    lines = across + down
    if len(lines) ** 2 > 2 * MAX_GRID_PAIRS:
        return True  # too many to pair up cheaply: let the finder look
    parent = list(range(len(lines)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (a, b, c, d) in enumerate(lines):
        for j in range(i + 1, len(lines)):
            e, f, g, h = lines[j]
            if e <= c + TOUCH_PT and g >= a - TOUCH_PT and f <= d + TOUCH_PT and h >= b - TOUCH_PT:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(lines)):
        groups.setdefault(root(i), [0, 0])[i >= len(across)] += 1
    return any(n_across >= GRID_LINES and n_down >= GRID_LINES
               for n_across, n_down in groups.values())


def _path_boxes(page: Any) -> list[tuple[float, float, float, float, int]]:
    """Each drawn path's box, as get_bboxlog's path entries give it (a stroke's box grown by
    half its width; a fill-and-stroke path counts as two paints), from get_cdrawings: about
    half get_bboxlog's time on text-heavy pages, which it also logs every span of. None at
    all where the content paints no path and draws no XObject (half of a manual's pages; the
    regex is a quarter of get_cdrawings' time)."""
    if not PAINTS.search(page.read_contents()):
        return []
    boxes = []
    for path in page.get_cdrawings():
        a, b, c, d = path["rect"]
        half = (path.get("width") or 0.0) / 2 if "s" in path["type"] else 0.0
        boxes.append((a - half, b - half, c + half, d + half, len(path["type"])))
    return boxes


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


Line = tuple[str, float]  # a line's text, its font size


def _line_sizes(textpage: Any) -> dict[int, list[float]]:
    """Text block number (as extractBLOCKS numbers blocks) -> each line's font size: the
    bigger of its first and last character's. Read from MuPDF's own text page, not from
    extractDICT: that builds a dict for every span, and pdfTeX's synthesized spaces start a
    new span at each word gap (13 spans a line in a manual: the dict was 2-3x the text
    page itself). A line's ends give its size but for one set in two sizes in the middle."""
    sizes = {}
    for number, block in enumerate(textpage.this):
        if block.m_internal.type != TEXT_BLOCK:
            continue
        lines = []
        first = next(iter(block), None)
        line = first.m_internal if first is not None else None  # the raw list: fewer wrappers
        while line is not None:
            lines.append(max(line.first_char.size, line.last_char.size))
            line = line.next
        sizes[number] = lines
    return sizes


def _block_lines(block: tuple, sizes: dict[int, list[float]]) -> list[Line]:
    """The non-blank lines of an extractBLOCKS text block, each with its font size."""
    texts = block[4].split("\n")
    if texts and not texts[-1]:
        texts.pop()  # every line ends in a line break
    line_sizes = sizes.get(block[5], [])
    if len(line_sizes) != len(texts):  # a line left out of the block's text: one size for all
        line_sizes = [min(line_sizes, default=0.0)] * len(texts)
    return [(t, s) for t, s in zip(texts, line_sizes, strict=True) if t.strip()]


def _body_size(blocks: list[list[Line]]) -> float:
    """The font size most of the page's characters are set in (by line, 0.1 pt steps)."""
    sizes: Counter[float] = Counter()
    for lines in blocks:
        for text, size in lines:
            sizes[size] += len(text)
    rounded: Counter[float] = Counter()
    for size, chars in sizes.items():  # round the few distinct sizes, not every line
        rounded[round(size, 1)] += chars
    return rounded.most_common(1)[0][0] if rounded else 0.0


def _block_markdown(lines: list[Line], body: float) -> str:
    """One text block's lines, a heading or list items marked up."""
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


def page_markdown(page: Any, flags: int, textpage: Any, text_blocks: list[tuple]) -> str:
    """The page's text layer as Markdown (headings, list items, tables): `text_blocks` are
    text mode's, from extractBLOCKS of `textpage` (made with the text-mode `flags`), so both
    modes hold the same words in the same order."""
    region = _ruled_region(page)
    tables = _tables(page, flags, region) if region else []
    sizes = _line_sizes(textpage)
    blocks = [(b[:4], _block_lines(b, sizes)) for b in text_blocks]
    body = _body_size([lines for _, lines in blocks])
    items: list[tuple] = []
    for bbox, lines in blocks:
        if any(_inside(bbox, area) for area, _ in tables):
            continue  # its words are in the table
        text = _block_markdown(lines, body)
        if text:
            items.append((*bbox, text))
    if not tables:  # text mode's blocks, in text mode's order already
        return join_blocks(items)
    items += [(*area, md) for area, md in tables]
    return join_blocks(reading_order(items))
