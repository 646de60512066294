"""Word, PowerPoint and Excel (OOXML) through python-docx, python-pptx and openpyxl.

DOCX: paragraphs, headings (by their style), list items (numbered or bulleted paragraphs),
tables in body order; headers and footers once each (the same header on every section is
one text); footnotes and endnotes at the end. PPTX: each slide a page: its title, its text
and tables in reading order (top to bottom, left to right; groups opened), its speaker
notes. XLSX: each sheet a table, at most extract.max_sheet_rows rows and
extract.max_sheet_cells cells in all (what is left out is counted). Macro-enabled files
(.docm, .pptm, .xlsm) are read the same way: their macros are never run, nor loaded.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from docproc.blocks import Block, Heading, Item, Para, Table, render, table_rows
from docproc.ocr_policy import Reason
from docproc.options import ExtractOptions
from docproc.result import Extracted, PageResult
from pipeline.errors import CorruptInput, InputError

_HEADING_STYLE = re.compile(r"^(?:heading|überschrift|titre|título)\s*(\d)$", re.IGNORECASE)
W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
NOTE_PARTS = ("footnotes", "endnotes")
SEPARATOR_NOTE_IDS = frozenset({"-1", "0"})  # Word's separator and continuation notes
LIBRARY_ERRORS = (KeyError, ValueError, AttributeError, TypeError, IndexError,
                  zipfile.BadZipFile, EOFError, OSError)


def _damaged(source: str, what: str, e: BaseException) -> CorruptInput:
    return CorruptInput(source, f"damaged or truncated {what}: {type(e).__name__}: {e}")


# --- Word -------------------------------------------------------------------------------


def _open_docx(path: Path) -> Any:
    import docx
    from docx.opc.constants import CONTENT_TYPE as CT
    from docx.opc.package import OpcPackage
    from docx.opc.part import PartFactory
    from docx.parts.document import DocumentPart

    # python-docx's Document() refuses a .docm by its content type; its parts are the same
    macro = "application/vnd.ms-word.document.macroEnabled.main+xml"
    PartFactory.part_type_for.setdefault(macro, DocumentPart)
    package = OpcPackage.open(str(path))
    part = package.main_document_part
    if part.content_type not in (CT.WML_DOCUMENT_MAIN, macro):
        return docx.Document(str(path))  # raises, naming the content type
    return part.document


def _heading_level(paragraph: Any) -> int:
    """1-6 for a heading or title paragraph, 0 for body text."""
    try:
        name = paragraph.style.name or ""
    except (KeyError, AttributeError, ValueError):
        return 0
    if name.lower() == "title":
        return 1
    m = _HEADING_STYLE.match(name.strip())
    return int(m.group(1)) if m and int(m.group(1)) > 0 else 0


def _list_level(paragraph: Any) -> int | None:
    """The nesting of a list paragraph (numbered or bulleted), None for others."""
    ppr = paragraph._p.pPr
    numpr = ppr.numPr if ppr is not None else None
    if numpr is not None and numpr.numId is not None and numpr.numId.val != 0:
        return int(numpr.ilvl.val) if numpr.ilvl is not None else 0
    try:
        name = (paragraph.style.name or "").lower()
    except (KeyError, AttributeError, ValueError):
        return None
    if not name.startswith("list"):
        return None
    last = name.rsplit(" ", 1)[-1]  # "List Bullet 2": the second level
    return int(last) - 1 if last.isdigit() and int(last) > 0 else 0


def _paragraph_block(paragraph: Any, numbered_styles: set[str]) -> Block | None:
    text = paragraph.text
    if not text.strip():
        return None
    level = _heading_level(paragraph)
    if level:
        return Heading(text, level)
    nesting = _list_level(paragraph)
    if nesting is not None:
        style = getattr(paragraph.style, "name", "") or ""
        return Item(text, nesting, ordered=style in numbered_styles)
    return Para(text)


def _row_cells(row: Any) -> list[Any]:
    """A row's cells, a merged cell once (python-docx gives it once per grid column)."""
    cells, seen = [], set()
    for cell in row.cells:
        if id(cell._tc) not in seen:
            seen.add(id(cell._tc))
            cells.append(cell)
    return cells


def _cell_text(cell: Any) -> str:
    """A cell's paragraphs, and any table inside it a line per row (python-docx's cell.text
    leaves nested tables out)."""
    parts = []
    for item in cell.iter_inner_content():
        if hasattr(item, "rows"):
            parts += [" ".join(t for t in map(_cell_text, _row_cells(row)) if t.strip())
                      for row in item.rows]
        else:
            parts.append(item.text)
    return "\n".join(parts)


def _docx_table(table: Any) -> Table:
    return Table(table_rows([_cell_text(c) for c in _row_cells(row)] for row in table.rows))


def _story_blocks(story: Any) -> Iterator[Block]:
    """A body, header, footer or cell: its paragraphs and tables in order."""
    numbered = {"List Number", "List Number 2", "List Number 3"}
    for item in story.iter_inner_content():
        if hasattr(item, "rows"):
            table = _docx_table(item)
            if table.rows:
                yield table
        elif (block := _paragraph_block(item, numbered)) is not None:
            yield block


def _edge_blocks(doc: Any, which: str) -> list[Block]:
    """The headers (or footers) of all sections, each distinct text once."""
    seen: set[str] = set()
    out: list[Block] = []
    for section in doc.sections:
        for kind in (which, f"first_page_{which}", f"even_page_{which}"):
            part = getattr(section, kind, None)
            if part is None or part.is_linked_to_previous:
                continue
            for block in _story_blocks(part):
                key = " ".join(getattr(block, "text", str(block)).split())
                if key and key not in seen:
                    seen.add(key)
                    out.append(block)
    return out


def _note_blocks(doc: Any) -> list[Block]:
    """Footnotes and endnotes, in their parts' order, as paragraphs "[n] text"."""
    from lxml import etree

    out: list[Block] = []
    for rel in doc.part.rels.values():
        kind = rel.reltype.rsplit("/", 1)[-1]
        if kind not in NOTE_PARTS or rel.is_external:
            continue
        root = etree.fromstring(rel.target_part.blob)
        for note in root.iter(f"{{{W_NS}}}footnote", f"{{{W_NS}}}endnote"):
            if note.get(f"{{{W_NS}}}id") in SEPARATOR_NOTE_IDS:
                continue
            text = "".join(t.text or "" for t in note.iter(f"{{{W_NS}}}t"))
            if text.strip():
                out.append(Para(f"[{note.get(f'{{{W_NS}}}id')}] {text.strip()}"))
    return out


def extract_docx(path: Path, source: str, opts: ExtractOptions) -> Extracted:
    import docx

    try:
        doc = _open_docx(path)
        blocks = [*_edge_blocks(doc, "header"), *_story_blocks(doc), *_note_blocks(doc),
                  *_edge_blocks(doc, "footer")]
        title = doc.core_properties.title or next(
            (b.text for b in blocks if isinstance(b, Heading)), "")
    except InputError:
        raise
    except (*LIBRARY_ERRORS, docx.opc.exceptions.PackageNotFoundError) as e:
        raise _damaged(source, "Word document", e) from None
    return Extracted(extractor=f"python-docx {docx.__version__}", title=title,
                     text=render(blocks, opts.format == "markdown"))


# --- PowerPoint -------------------------------------------------------------------------


def _shape_blocks(shape: Any) -> Iterator[Block]:
    if shape.shape_type is not None and getattr(shape, "shapes", None) is not None:  # a group
        for inner in _reading_order(shape.shapes):
            yield from _shape_blocks(inner)
        return
    if getattr(shape, "has_chart", False) and shape.has_chart:
        yield from _chart_blocks(shape.chart)
        return
    if getattr(shape, "has_table", False) and shape.has_table:
        rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
        table = Table(table_rows(rows))
        if table.rows:
            yield table
        return
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        for paragraph in shape.text_frame.paragraphs:
            # its runs, fields (a slide number) and line breaks, which python-pptx gives as
            # "\v" (a control character the clean-up would drop, gluing the lines' words)
            text = paragraph.text.replace("\v", "\n")
            if not text.strip():
                continue
            yield Item(text, paragraph.level - 1) if paragraph.level else Para(text)


def _chart_number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if value.is_integer() else str(value)  # 12.0 as "12"


def _chart_blocks(chart: Any) -> Iterator[Block]:
    """A chart's title, then its data as a table: a row per category, a column per series
    (the values PowerPoint cached in the chart part; an XY chart has no categories)."""
    try:
        title = (chart.chart_title.text_frame.text  # text_frame would add one where none is
                 if chart.has_title and chart.chart_title.has_text_frame else "")
        series = [(s.name, list(s.values)) for s in chart.series]
        categories = [c.label for c in chart.plots[0].categories] if len(chart.plots) else []
    except (*LIBRARY_ERRORS, NotImplementedError):  # a plot or series type python-pptx does
        return  # not read (a 3-D area chart), or a damaged chart part: the slide's other text
    if title.strip():
        yield Para(title)
    rows = [["", *(name for name, _ in series)]]
    rows += [[str(label), *(_chart_number(v[i]) if i < len(v) else "" for _, v in series)]
             for i, label in enumerate(categories)]
    if table := table_rows(rows):
        yield Table(table)


def _reading_order(shapes: Any) -> list[Any]:
    """Top to bottom, then left to right (placeholders without a position first)."""
    return sorted(shapes, key=lambda s: ((s.top or 0) // 12, s.left or 0))


def _slide_text(slide: Any, number: int, markdown: bool) -> str:
    title_shape = slide.shapes.title
    title = title_shape.text_frame.text.strip() if title_shape is not None else ""
    blocks: list[Block] = [Heading(title or f"Slide {number}", 2)] if (title or markdown) else []
    for shape in _reading_order(slide.shapes):
        if title_shape is not None and shape.shape_id == title_shape.shape_id:
            continue
        blocks.extend(_shape_blocks(shape))
    if slide.has_notes_slide:
        notes = slide.notes_slide.notes_text_frame
        text = notes.text.strip() if notes is not None else ""
        if text:
            blocks.append(Para(f"Notes: {text}"))
    return render(blocks, markdown)


def extract_pptx(path: Path, source: str, opts: ExtractOptions) -> Extracted:
    import pptx

    try:
        prs = pptx.Presentation(str(path))
        slides = list(prs.slides)
        if len(slides) > opts.max_pages:
            from pipeline.errors import TooLargeInput

            raise TooLargeInput(source, f"{len(slides)} slides is over extract.max_pages="
                                        f"{opts.max_pages}")
        pages = [PageResult(n, _slide_text(slide, n, opts.format == "markdown"), False,
                            str(Reason.HAS_TEXT)) for n, slide in enumerate(slides, 1)]
        title = prs.core_properties.title or ""
    except InputError:
        raise
    except (*LIBRARY_ERRORS, pptx.exc.PackageNotFoundError) as e:
        raise _damaged(source, "PowerPoint presentation", e) from None
    return Extracted(extractor=f"python-pptx {pptx.__version__}", pages=pages,
                     page_count=len(pages), title=title)


# --- Excel ------------------------------------------------------------------------------


def _sheet_rows(sheet: Any, row_cap: int, cell_budget: list[int]) -> tuple[list[tuple], int]:
    """(rows read, rows left out) of one sheet, within the caps. Reading stops at a cap (a
    sheet of a million rows is not parsed to count them): the rows left out are those the
    sheet's dimension declares beyond it."""
    rows: list[tuple] = []
    for row in sheet.iter_rows(values_only=True):
        if len(rows) >= row_cap or cell_budget[0] <= 0:
            declared = sheet.max_row if isinstance(sheet.max_row, int) else 0
            return rows, max(1, declared - len(rows))
        rows.append(row)
        cell_budget[0] -= len(row)
    return rows, 0


def extract_xlsx(path: Path, source: str, opts: ExtractOptions) -> Extracted:
    import openpyxl

    markdown = opts.format == "markdown"
    blocks: list[Block] = []
    cut = 0
    budget = [opts.max_sheet_cells]
    try:
        # read_only streams the sheets; data_only takes the values Excel saved, never
        # evaluating a formula; keep_vba=False leaves any macros unread. Opened as a file
        # object: openpyxl would refuse a path by its name (the bytes have decided)
        fh = open(path, "rb")  # noqa: SIM115 - closed with the workbook below
        book = openpyxl.load_workbook(fh, read_only=True, data_only=True, keep_vba=False)
        try:
            for sheet in book.worksheets:
                rows, left_out = _sheet_rows(sheet, opts.max_sheet_rows, budget)
                cut += left_out
                table = table_rows(rows)
                if table:
                    blocks += [Heading(sheet.title, 2), Table(table)]
            title = book.properties.title or ""
        finally:
            book.close()
            fh.close()
    except InputError:
        raise
    except (*LIBRARY_ERRORS, openpyxl.utils.exceptions.InvalidFileException) as e:
        raise _damaged(source, "Excel workbook", e) from None
    return Extracted(extractor=f"openpyxl {openpyxl.__version__}", title=title,
                     text=render(blocks, markdown), cut={"rows": cut} if cut else {})
