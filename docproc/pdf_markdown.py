"""A PDF page as Markdown (extract.format = "markdown"): the text layer in the same reading
order as text mode, with headings (lines set well above the page's body size) as `#`,
bulleted lines as list items, and tables as GitHub-flavoured tables.

Fast by design: `page.find_tables()` costs tens of milliseconds a page, so it runs only on a
page whose vector graphics could draw a table's rules (MIN_RULES paths, some of them touching
so as to rule 2 x 2 cells), and only over the area those cover; a page without them is laid
out from text mode's own blocks, each line's font size read from the text page text mode
made. The content stream is counted for paint operators first: most pages of a manual paint
too few paths to rule a table and are never listed. The paths come from `get_cdrawings`,
not from a text page made with TEXT_COLLECT_VECTORS: that would be one run of the page
fewer, but MuPDF then splits text lines at drawn rules (underscores: "asn1 decode" came out
as "asn1" and "decode").
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
SNAP_PT = 3.0  # the finder's snap tolerance: lines this close are one line to it
# a line whose font is this much bigger than the page's body text is a heading of the level
HEADING_RATIOS = ((1.8, 1), (1.4, 2), (1.15, 3))
HEADING_MAX_CHARS = 200  # a longer "heading" is a paragraph in a big font
BULLETS = frozenset("•◦▪▫●○■□‣⁃–-*·")
TEXT_BLOCK = 0  # MuPDF's block type for text
# a line that `_block_markdown` makes a list item (leading white space as str.lstrip strips it)
BULLET_LINE = re.compile(rf"^\s*[{re.escape(''.join(sorted(BULLETS)))}] ", re.MULTILINE)
# a content-stream operator that paints a path (stroke, fill, both: B and b count two, as
# get_cdrawings lists them) or draws an XObject (a form can hold any number of paths): where
# fewer than MIN_RULES occur the page cannot rule a table. A match inside a string or an
# inline image only costs the full scan. The operator's letter first, the delimiter before it
# looked behind at: the regex engine then skips to those letters, 4x faster on manuals
PAINTS = re.compile(rb"[SsFBbfD](?<![^\s\])>}].)(?:(?<=D)o|(?<!D)\*?)(?=[\s\[(/<%]|$)")


Rule = tuple[float, float, float, float, int, list]  # box, paints, the path's items


def _ruled_region(page: Any) -> tuple[float, float, float, float] | None:
    """The area of the page's rules that could rule a table, where it draws enough paths to
    rule one; None where it does not. Dots and specks do not count: pdfTeX draws dozens of
    them on pages without a table. Rules that touch, directly or through each other, form a
    group, and a group counts where it could rule a grid of 2 x 2 cells, which is what
    PyMuPDF's line-based finder needs to see a table (`_may_rule_a_grid`); not a framed code
    listing, a rule under a heading, the page's header rule, nor a table with no rules down
    inside it (one column: the finder drops it). The area is that of the groups that count,
    not of all rules: the finder reads every character in it, and a header rule made it the
    whole page."""
    rules = [rule for rule in _path_boxes(page, MIN_RULES)
             if max(rule[2] - rule[0], rule[3] - rule[1]) >= MIN_RULE_PT]
    if sum(rule[4] for rule in rules) < MIN_RULES:
        return None
    boxes = [box for box, group in _touching_groups(rules) if _may_rule_a_grid(box, group)]
    if not boxes:
        return None
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    return x0 - RULE_PAD_PT, y0 - RULE_PAD_PT, x1 + RULE_PAD_PT, y1 + RULE_PAD_PT


def _touching_groups(rules: list[Rule]) -> list[tuple[tuple[float, ...], list[Rule]]]:
    """(box, rules) of each group of rules that touch, directly or through each other (within
    TOUCH_PT: the finder snaps and joins within 3 points, so rules drawn a cell at a time, as
    TeX draws them, are one grid to it). A sweep down the page: each rule is paired only with
    those that start above its bottom."""
    rules = sorted(rules, key=lambda r: r[1])
    parent = list(range(len(rules)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (a, _, c, d, *_) in enumerate(rules):
        for j in range(i + 1, len(rules)):
            e, f, g = rules[j][:3]
            if f > d + TOUCH_PT:
                break  # this and every later rule starts below this one
            if e <= c + TOUCH_PT and g >= a - TOUCH_PT:
                parent[root(i)] = root(j)
    groups: dict[int, list[Rule]] = {}
    for i, rule in enumerate(rules):
        groups.setdefault(root(i), []).append(rule)
    return [((min(r[0] for r in group), min(r[1] for r in group),
              max(r[2] for r in group), max(r[3] for r in group)), group)
            for group in groups.values()]


def _may_rule_a_grid(box: tuple[float, ...], group: list[Rule]) -> bool:
    """Whether a group of touching rules could rule 2 rows and 2 columns: lines down at
    GRID_LINES places across it, and lines across at GRID_LINES places down it, places within
    SNAP_PT being one (the finder snaps them together). The group's own box counts as lines
    on all four sides: the finder frames a cluster of touching paths that holds text."""
    xs, ys = [box[0], box[2]], [box[1], box[3]]
    for a, b, c, d, _, items in group:
        if d - b <= THIN_PT:
            ys.append((b + d) / 2)
        elif c - a <= THIN_PT:
            xs.append((a + c) / 2)
        else:  # a path with an area: the edges its items draw, as the finder takes them
            _item_edges(items, xs, ys)
    return _places(xs) >= GRID_LINES and _places(ys) >= GRID_LINES


def _item_edges(items: list, xs: list[float], ys: list[float]) -> None:
    """Add the x of each line down and the y of each line across that a path's items draw:
    straight lines within SNAP_PT of upright or level, rectangles' and quads' sides (curves
    the finder leaves out)."""
    for item in items:
        if item[0] == "l":
            (x0, y0), (x1, y1) = item[1], item[2]
            if abs(x1 - x0) <= SNAP_PT:
                xs.append(x0)
            elif abs(y1 - y0) <= SNAP_PT:
                ys.append(y0)
        elif item[0] == "re":
            x0, y0, x1, y1 = item[1]
            xs += (x0, x1)
            ys += (y0, y1)
        elif item[0] == "qu":
            xs += (point[0] for point in item[1])
            ys += (point[1] for point in item[1])


def _places(values: list[float]) -> int:
    """How many places the values make, values within SNAP_PT of the one before being one."""
    values = sorted(values)
    return sum(1 for prev, cur in zip([float("-inf"), *values], values, strict=False)
               if cur - prev > SNAP_PT)


def _path_boxes(page: Any, min_paints: int = 1) -> list[Rule]:
    """Each drawn path's box, as get_bboxlog's path entries give it (a stroke's box grown by
    half its width; a fill-and-stroke path counts as two paints), and its items, from
    get_cdrawings: about half get_bboxlog's time on text-heavy pages, which it also logs
    every span of. None at all where the content paints fewer than `min_paints` paths and
    draws no XObject (most of a manual's pages: the regex is a quarter of get_cdrawings'
    time, and it stops at the `min_paints`th)."""
    if _paints(page.read_contents(), min_paints) < min_paints:
        return []
    boxes = []
    for path in page.get_cdrawings():
        a, b, c, d = path["rect"]
        half = (path.get("width") or 0.0) / 2 if "s" in path["type"] else 0.0
        boxes.append((a - half, b - half, c + half, d + half, len(path["type"]),
                      path["items"]))
    return boxes


def _paints(content: bytes, enough: int) -> int:
    """The paths a content stream paints, counted up to `enough` (an XObject: `enough`)."""
    paints = 0
    for match in PAINTS.finditer(content):
        op = match.group()
        paints += enough if op == b"Do" else 2 if op[:1] in b"Bb" else 1
        if paints >= enough:
            break
    return paints


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
    if not BULLET_LINE.search(text):
        return text  # most blocks: no line to mark up, none to look at one by one
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
