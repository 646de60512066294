"""Reading order of a PDF page's blocks (recursive XY-cut) and their joining into text: shared
by text mode (docproc/pdf.py) and Markdown mode (docproc/pdf_markdown.py)."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

COLUMN_GAP_PT = 10.0  # a vertical gap this wide, top to bottom of a region, separates columns
PARAGRAPH_GAP = 0.6  # blocks closer than this many line heights continue one paragraph



def _split(blocks: list[tuple], lo: int, hi: int, min_gap: float) -> list[list[tuple]]:
    """Groups of blocks separated by a gap of at least `min_gap` on one axis."""
    ordered = sorted(blocks, key=itemgetter(lo))
    group = [ordered[0]]
    groups: list[list[tuple]] = [group]
    reach = ordered[0][hi]
    for b in ordered[1:]:
        if b[lo] - reach >= min_gap:
            group = [b]
            groups.append(group)
        else:
            group.append(b)
        if b[hi] > reach:
            reach = b[hi]
    return groups


def _in_order(groups: list[list[tuple]]) -> list[tuple]:
    """The groups' blocks, each group in reading order (one block: as it is, without a call:
    most bands of a page are one block)."""
    out: list[tuple] = []
    for group in groups:
        if len(group) == 1:
            out.append(group[0])
        else:
            out += reading_order(group)
    return out


def reading_order(blocks: list[tuple]) -> list[tuple]:
    """Blocks (x0, y0, x1, y1, ...) in reading order by recursive XY-cut.

    Columns first (a gutter from the top to the bottom of the region), then bands
    separated by a horizontal gap; what cannot be cut is read top-down, left to right.
    Unlike `sort=True`, the two columns of a page are not interleaved.
    """
    if len(blocks) <= 1:
        return list(blocks)
    columns = _split(blocks, 0, 2, COLUMN_GAP_PT)
    if len(columns) > 1:
        return _in_order(columns)
    bands = _split(blocks, 1, 3, 0.0)
    if len(bands) > 1:
        return _in_order(bands)
    return sorted(blocks, key=lambda b: (round(b[1]), b[0]))


def join_blocks(blocks: Sequence[tuple]) -> str:
    """Blocks into page text: a blank line between paragraphs, a line break within one."""
    parts: list[str] = []
    prev_bottom = line_height = 0.0
    for b in blocks:
        text = b[4].rstrip("\n")
        if not text or text.isspace():
            continue
        if parts:
            gap = b[1] - prev_bottom
            parts.append("\n" if 0 <= gap < PARAGRAPH_GAP * line_height else "\n\n")
        parts.append(text)
        prev_bottom = b[3]
        line_height = (b[3] - b[1]) / (text.count("\n") + 1)
    return "".join(parts)
