"""Markdown mode's table gate: a page's content is scanned for painted paths before the paths
are listed, and the scan must never miss a page that draws one."""

from __future__ import annotations

import pymupdf

from docproc.pdf_markdown import MIN_RULES, PAINTS, _find_tables, _path_boxes, _ruled_region


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
    (a, b, c, d, paints, _), = _path_boxes(page)
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


def test_a_page_painting_fewer_paths_than_a_table_needs_is_not_listed_unless_it_draws_a_form(
) -> None:
    page = _ruled_page(_box(72, 100, 432, 130)[:3])  # 3 strokes: fewer than MIN_RULES
    assert len(_path_boxes(page)) == 3
    assert _path_boxes(page, MIN_RULES) == []
    doc = pymupdf.open()
    form = doc.new_page()
    form.show_pdf_page(form.rect, page.parent, page.number)  # the rules inside an XObject
    assert b"Do" in form.read_contents() and len(_path_boxes(form, MIN_RULES)) == 3


def test_the_region_is_the_grid_not_the_header_rule_and_a_one_column_grid_is_not_one() -> None:
    xs, ys = (72, 192, 312, 432), (100, 120, 140, 160)
    grid = [((72, y), (432, y)) for y in ys]
    grid += [((x, ys[0]), (x, ys[-1])) for x in xs]
    page = _ruled_page([((72, 40), (540, 40))] + grid)  # a header rule far above
    x0, y0, x1, y1 = _ruled_region(page)
    assert 60 < x0 < 72 and 90 < y0 < 100 and 432 < x1 < 440 and 160 < y1 < 170
    (table,) = _find_tables(page, (x0, y0, x1, y1))
    assert len(table.rows) == 3 and len(table.rows[0].cells) == 3
    # rules across and only the frame down: one column, which the finder drops
    one_column = [((72, y), (432, y)) for y in ys] + [((x, ys[0]), (x, ys[-1])) for x in (72, 432)]
    page = _ruled_page(one_column)
    assert _ruled_region(page) is None
    assert _find_tables(page, (0, 0, 612, 792)) == []


def test_paint_operators_are_matched_as_whole_operators_after_a_delimiter() -> None:
    found = [m.group() for m in PAINTS.finditer(
        b"S\n0 0 m 1 1 l S (f) Tj [S] TJ /Fm0 Do x B* y bo ]f* aS D Dx b\n")]
    assert found == [b"S", b"S", b"Do", b"B*", b"f*", b"b"]


def test_a_grid_drawn_as_paths_of_cells_is_searched_and_a_framed_curve_is_not() -> None:
    page = _ruled_page([])
    for y in (100, 120, 140, 160):  # a row's cells as the rectangles of one path each
        shape = page.new_shape()
        for x in (72, 192, 312):
            shape.draw_rect(pymupdf.Rect(x, y, x + 120, y + 20))
        shape.finish(color=(0, 0, 0), width=0.5)
        shape.commit()
    region = _ruled_region(page)
    assert region is not None
    (table,) = _find_tables(page, region)
    assert len(table.rows) == 4 and len(table.rows[0].cells) == 3
    plot = _ruled_page([])
    plot.draw_rect(pymupdf.Rect(72, 100, 432, 300), color=(0, 0, 0), width=0.5)  # the frame
    plot.draw_polyline([(72 + 9 * i, 300 - (i * 37) % 190) for i in range(40)],
                       color=(0, 0, 0), width=0.5)  # a curve of slanted segments
    assert len(_path_boxes(plot, MIN_RULES)) == 0  # 2 paints: not even listed
    for y in (320, 340):
        plot.draw_line((72, y), (432, y), color=(0, 0, 0), width=0.5)
    assert len(_path_boxes(plot, MIN_RULES)) == 4 and _ruled_region(plot) is None
