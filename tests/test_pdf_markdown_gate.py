"""Markdown mode's table gate: a page's content is scanned for painted paths before the paths
are listed, and the scan must never miss a page that draws one."""

from __future__ import annotations

import pymupdf

from docproc.pdf_markdown import PAINTS, _find_tables, _path_boxes, _ruled_region


def _page(draw: bool) -> pymupdf.Page:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Some text (f) and [S] with operator-like words: re l S f B")
    if draw:
        page.draw_rect(pymupdf.Rect(72, 100, 300, 120), color=(0, 0, 0), width=0.5)
    return page


def test_a_text_only_page_is_not_listed_for_paths() -> None:
    page = _page(draw=False)
    assert not PAINTS.search(page.read_contents())
    assert _path_boxes(page) == [] == page.get_cdrawings()


def test_a_page_that_strokes_a_rule_is_listed_with_the_stroke_width() -> None:
    page = _page(draw=True)
    assert PAINTS.search(page.read_contents())
    (a, b, c, d, paints), = _path_boxes(page)
    assert paints == 1 and (a, c) == (71.75, 300.25)


def _ruled_page(lines: list[tuple[tuple[float, float], tuple[float, float]]]) -> pymupdf.Page:
    doc = pymupdf.open()
    page = doc.new_page()
    for r in range(3):
        for c in range(3):
            page.insert_text((80 + c * 120, 118 + r * 20), f"cell{r}{c}", fontsize=10)
    for a, b in lines:
        page.draw_line(a, b, color=(0, 0, 0), width=0.5)
    return page


def _box(x0: float, y0: float, x1: float, y1: float) -> list:
    return [((x0, y0), (x1, y0)), ((x0, y1), (x1, y1)), ((x0, y0), (x0, y1)), ((x1, y0), (x1, y1))]


def test_framed_boxes_are_not_searched_for_tables_and_a_grid_drawn_piecewise_is() -> None:
    boxes = _ruled_page(_box(72, 100, 432, 130) + _box(72, 140, 432, 170))
    assert _ruled_region(boxes) is None  # 4 lines across, 4 down, but no 2 x 2 grid
    # the rules drawn a row at a time, as TeX draws them: the finder joins what touches
    xs, ys = (72, 192, 312, 432), (100, 120, 140, 160)
    grid = [((72, y), (432, y)) for y in (100, 120, 160)]
    grid += [((x, y), (x, y + 20)) for x in xs for y in ys[:-1]]
    page = _ruled_page(grid)
    region = _ruled_region(page)
    assert region is not None
    (table,) = _find_tables(page, region)
    assert len(table.rows) == 2 and len(table.rows[0].cells) == 3
