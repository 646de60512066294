"""OpenDocument text, spreadsheets and presentations (odfpy): headings by their outline level,
paragraphs, lists, tables; each sheet a table, each presentation page a page. An encrypted
package (its manifest lists encryption data) is refused (`encrypted`).
"""

from __future__ import annotations

import xml.sax
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from docproc.blocks import Block, Heading, Item, Para, Table, render, table_rows
from docproc.ocr_policy import Reason
from docproc.options import ExtractOptions
from docproc.result import Extracted, PageResult
from pipeline.errors import CorruptInput, EncryptedInput, InputError

TEXT_NS = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
TABLE_NS = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
DRAW_NS = "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
PRESENTATION_NS = "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"
MANIFEST = "META-INF/manifest.xml"
MANIFEST_MAX_BYTES = 1 << 20
MAX_REPEAT = 64  # a repeated cell or row with content is written at most this often


def _is(el: Any, ns: str, name: str) -> bool:
    return getattr(el, "qname", None) == (ns, name)


def _text(el: Any) -> str:
    from odf import teletype

    return teletype.extractText(el)


def _repeat(el: Any, attr: str) -> int:
    try:
        return max(1, min(int(el.getAttrNS(TABLE_NS, attr) or 1), MAX_REPEAT))
    except (ValueError, TypeError):
        return 1


def _table(el: Any, row_cap: int, cell_budget: list[int]) -> tuple[Table, int]:
    """A table:table as rows; (table, rows left out by the caps). Repeats of empty rows and
    cells (a sheet's filler to its last column and row) are never expanded."""
    rows: list[list[str]] = []
    cut = 0
    for row in el.getElementsByType(_table_row()):
        cells: list[str] = []
        for cell in row.childNodes:
            if not (_is(cell, TABLE_NS, "table-cell") or _is(cell, TABLE_NS, "covered-table-cell")):
                continue
            text = _text(cell)
            cells += [text] * (_repeat(cell, "number-columns-repeated") if text.strip() else 1)
        if not any(c.strip() for c in cells):
            continue
        for _ in range(_repeat(row, "number-rows-repeated")):
            if len(rows) >= row_cap or cell_budget[0] <= 0:
                cut += 1
                continue
            rows.append(cells)
            cell_budget[0] -= len(cells)
    return Table(table_rows(rows)), cut


def _table_row() -> Any:
    from odf.table import TableRow

    return TableRow


class _Walk:
    """Blocks of a text, spreadsheet or drawing element, in document order."""

    def __init__(self, opts: ExtractOptions) -> None:
        self.opts = opts
        self.cut = 0
        self.cells = [opts.max_sheet_cells]

    def blocks(self, el: Any, depth: int = 0) -> Iterator[Block]:
        for child in el.childNodes:
            if _is(child, TEXT_NS, "h"):
                level = int(child.getAttrNS(TEXT_NS, "outline-level") or 1)
                yield Heading(_text(child), level)
            elif _is(child, TEXT_NS, "p"):
                if (text := _text(child)).strip():
                    yield Para(text)
            elif _is(child, TEXT_NS, "list"):
                yield from self.items(child, depth)
            elif _is(child, TABLE_NS, "table"):
                name = child.getAttrNS(TABLE_NS, "name") or ""
                table, cut = _table(child, self.opts.max_sheet_rows, self.cells)
                self.cut += cut
                if table.rows:
                    if name and self.opts.format == "markdown" and depth == 0:
                        yield Heading(name, 2)
                    yield table
            elif getattr(child, "childNodes", None):
                yield from self.blocks(child, depth)  # sections, frames, text boxes

    def items(self, lst: Any, depth: int) -> Iterator[Block]:
        for item in lst.childNodes:
            if not _is(item, TEXT_NS, "list-item"):
                continue
            for child in item.childNodes:
                if _is(child, TEXT_NS, "list"):
                    yield from self.items(child, depth + 1)
                elif (text := _text(child)).strip():
                    yield Item(text, depth)


def check_not_encrypted(path: Path, source: str) -> None:
    """EncryptedInput when the package's manifest says its parts are encrypted."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(MANIFEST)
            manifest = zf.read(info) if info.file_size <= MANIFEST_MAX_BYTES else b""
    except KeyError:
        return
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CorruptInput(source, f"damaged or truncated OpenDocument package: {e}") from None
    if b"encryption-data" in manifest:
        raise EncryptedInput(source, "encrypted OpenDocument file: a password is needed to "
                                     "open it")


def odfpy_version() -> str:
    from importlib.metadata import version

    return f"odfpy {version('odfpy')}"


def extract_odf(path: Path, source: str, opts: ExtractOptions) -> Extracted:
    from odf.opendocument import load

    check_not_encrypted(path, source)
    markdown = opts.format == "markdown"
    walk = _Walk(opts)
    try:
        doc = load(str(path))
        presentation = getattr(doc, "presentation", None) or getattr(doc, "drawing", None)
        if presentation is not None:
            body = presentation
            pages = [PageResult(n, render(list(walk.blocks(page)), markdown), False,
                                str(Reason.HAS_TEXT))
                     for n, page in enumerate(body.getElementsByType(_draw_page()), 1)]
            return Extracted(extractor=odfpy_version(), pages=pages, page_count=len(pages))
        body = getattr(doc, "spreadsheet", None) or getattr(doc, "text", None)
        if body is None:
            raise CorruptInput(source, "an OpenDocument file without a body")
        text = render(list(walk.blocks(body)), markdown)
    except InputError:
        raise
    except (KeyError, ValueError, AttributeError, TypeError, IndexError, zipfile.BadZipFile,
            EOFError, OSError, SyntaxError, xml.sax.SAXException) as e:
        raise CorruptInput(source, f"damaged or truncated OpenDocument file: "
                                   f"{type(e).__name__}: {e}") from None
    return Extracted(extractor=odfpy_version(), text=text,
                     cut={"rows": walk.cut} if walk.cut else {})


def _draw_page() -> Any:
    from odf.draw import Page

    return Page
