"""Markdown mode's table gate: a page's content is scanned for painted paths before the paths
are listed, and the scan must never miss a page that draws one."""

from __future__ import annotations

import pymupdf

from docproc.pdf_markdown import PAINTS, _path_boxes


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
