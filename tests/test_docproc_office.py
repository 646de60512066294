"""Office, OpenDocument and RTF files (made by the libraries that write them): sniffed by their
bytes, their headings, lists, tables, headers, footnotes and notes extracted once each, as
text or as Markdown."""

from __future__ import annotations

from pathlib import Path

import pytest
from formatkit import (
    MACRO_MARK,
    PROSE,
    SLIDE_NOTES,
    SLIDE_TITLES,
    docx_bytes,
    encrypted_office,
    macro_enabled,
    odp_bytes,
    ods_bytes,
    odt_bytes,
    pptx_bytes,
    rtf_bytes,
    xlsx_bytes,
)

from docproc.container import extract_source
from docproc.options import ExtractOptions
from pipeline.errors import CorruptInput, EncryptedInput, UnsupportedInput
from pipeline.records import Document
from pipeline.sniff import sniff_file

MD = ExtractOptions(format="markdown")
GFM_TABLE = ("| Part | Size | Price |\n| --- | --- | --- |\n| bolt | M6 | 0.10 |\n"
             "| nut | M6 | 0.05 |\n| washer | 6 mm | 0.02 |")
TEXT_TABLE = "Part | Size | Price\nbolt | M6 | 0.10\nnut | M6 | 0.05\nwasher | 6 mm | 0.02"


def extract(path: Path, data: bytes, opts: ExtractOptions = MD) -> Document:
    path.write_bytes(data)
    got = extract_source(path, opts)
    assert got.doc is not None and not got.members and not got.failures
    return got.doc


def test_docx_headings_lists_tables_headers_once_and_footnotes(tmp_path: Path) -> None:
    doc = extract(tmp_path / "survey.docx", docx_bytes(sections=2))
    text = doc.text
    assert doc.mime.endswith("wordprocessingml.document") and doc.title == "Harbour survey"
    assert "# Harbour survey\n\n# Section 1" in text and "\n# Section 2\n" in text
    assert "- first point of section 1\n  - nested point of section 1\n1. step one" in text
    assert text.count(GFM_TABLE) == 2
    # the same header on both sections, once; the footer once, the footnote at the end
    assert text.count("Port Authority - internal") == 1
    assert text.count("Printed copies are not controlled") == 1
    assert "[1] Measured at low tide." in text
    assert text.index("Port Authority") < text.index("Section 1") < text.index("[1] Measured")
    plain = extract(tmp_path / "survey-text.docx", docx_bytes(sections=1), ExtractOptions())
    assert TEXT_TABLE in plain.text and "#" not in plain.text and PROSE in plain.text


def test_pptx_slides_in_order_with_titles_tables_and_notes(tmp_path: Path) -> None:
    doc = extract(tmp_path / "deck.pptx", pptx_bytes(3))
    assert doc.pages == 3 and [p.number for p in doc.page_info] == [1, 2, 3]
    text = doc.text
    order = [text.index(f"## {title}") for title in SLIDE_TITLES[:3]]
    assert order == sorted(order)
    assert "the old docks\n\n- built in 1850" in text and GFM_TABLE in text
    for n in (1, 2, 3):  # each slide's notes after its own title, before the next one's
        notes = text.index(f"Notes: {SLIDE_NOTES[n - 1]}")
        assert order[n - 1] < notes < (order[n] if n < 3 else len(text))


def test_a_slide_line_break_keeps_the_words_apart(tmp_path: Path) -> None:
    import io

    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[6])
    box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1))
    box.text_frame.text = "Solid Line\vdash dot"  # python-pptx writes "\v" as <a:br/>
    buf = io.BytesIO()
    deck.save(buf)
    doc = extract(tmp_path / "lines.pptx", buf.getvalue(), ExtractOptions())
    assert "Solid Line\ndash dot" in doc.text


def test_a_table_inside_a_docx_cell_keeps_its_text(tmp_path: Path) -> None:
    import io

    import docx

    made = docx.Document()
    outer = made.add_table(rows=1, cols=2)
    outer.cell(0, 0).text = "Text before"
    inner = outer.cell(0, 0).add_table(rows=2, cols=2)  # python-docx's cell.text skips it
    for r, row in enumerate((("Pier", "North"), ("Depth", "12 m"))):
        for c, value in enumerate(row):
            inner.cell(r, c).text = value
    outer.cell(0, 0).add_paragraph("Text after")
    outer.cell(0, 1).text = "Right cell"
    buf = io.BytesIO()
    made.save(buf)
    doc = extract(tmp_path / "nested.docx", buf.getvalue(), ExtractOptions())
    assert doc.text == "Text before Pier North Depth 12 m Text after | Right cell"
    md = extract(tmp_path / "nested-md.docx", buf.getvalue()).text
    assert md == "| Text before Pier North Depth 12 m Text after | Right cell |\n| --- | --- |"


def _chart_deck(title: str | None) -> bytes:
    import io

    import pptx
    from pptx.chart.data import CategoryChartData
    from pptx.enum.chart import XL_CHART_TYPE
    from pptx.util import Inches

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])  # title only
    slide.shapes.title.text = "Tonnage by quay"
    data = CategoryChartData()
    data.categories = ["North quay", "South quay"]
    data.add_series("Imports", (12.0, 4.5))
    data.add_series("Exports", (3.25, None))
    frame = slide.shapes.add_chart(XL_CHART_TYPE.AREA, Inches(1), Inches(2), Inches(6),
                                   Inches(4), data)
    if title:
        frame.chart.has_title = True
        frame.chart.chart_title.text_frame.text = title
    buf = io.BytesIO()
    deck.save(buf)
    return buf.getvalue()


def test_a_chart_gives_its_title_series_categories_and_values(tmp_path: Path) -> None:
    doc = extract(tmp_path / "chart.pptx", _chart_deck("Tonnes per quay"), ExtractOptions())
    assert doc.text == ("Tonnage by quay\n\nTonnes per quay\n\nImports | Exports\n"
                        "North quay | 12 | 3.25\nSouth quay | 4.5")
    md = extract(tmp_path / "chart-md.pptx", _chart_deck(None)).text
    assert md == ("## Tonnage by quay\n\n| | Imports | Exports |\n| --- | --- | --- |\n"
                  "| North quay | 12 | 3.25 |\n| South quay | 4.5 | |")


def test_a_chart_python_pptx_cannot_read_leaves_the_slide_text(tmp_path: Path) -> None:
    import io
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(_chart_deck("Tonnes per quay")))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:  # a 3-D area chart: python-pptx has no series type
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("ppt/charts/chart"):
                data = data.replace(b"c:areaChart>", b"c:area3DChart>")
            out.writestr(info, data)
    doc = extract(tmp_path / "3d.pptx", buf.getvalue(), ExtractOptions())
    assert doc.text == "Tonnage by quay"


def test_xlsx_each_sheet_a_table_and_the_row_cap_counted(tmp_path: Path) -> None:
    doc = extract(tmp_path / "parts.xlsx", xlsx_bytes(sheets=("Parts", "Spares")))
    assert doc.text == f"## Parts\n\n{GFM_TABLE}\n\n## Spares\n\n{GFM_TABLE}"
    rows = [("n", "square")] + [(i, i * i) for i in range(1, 501)]
    capped = extract(tmp_path / "big.xlsx", xlsx_bytes(rows), ExtractOptions(max_sheet_rows=100))
    assert "99 | 9801" in capped.text and "100 | 10000" not in capped.text
    assert capped.stats["cut_rows"] == 401  # 501 rows, 100 read


def test_opendocument_text_spreadsheet_and_presentation(tmp_path: Path) -> None:
    odt = extract(tmp_path / "survey.odt", odt_bytes())
    assert odt.text.startswith("# Harbour survey\n\n" + PROSE)
    assert "- first point\n- second point" in odt.text and GFM_TABLE in odt.text
    ods = extract(tmp_path / "parts.ods", ods_bytes())
    assert ods.text == f"## Parts\n\n{GFM_TABLE}"
    odp = extract(tmp_path / "deck.odp", odp_bytes(2), ExtractOptions())
    assert odp.pages == 2 and "Presentation page 2 about the docks" in odp.text


def test_rtf_text_without_its_control_groups(tmp_path: Path) -> None:
    doc = extract(tmp_path / "note.rtf", rtf_bytes())
    assert doc.mime == "application/rtf"
    assert PROSE in doc.text and "Café bold end." in doc.text and "Second paragraph" in doc.text
    assert "Helvetica" not in doc.text and "Hidden gen" not in doc.text and "\\" not in doc.text


@pytest.mark.parametrize("kind", ["docx", "xlsx", "pptx"])
def test_macro_enabled_files_give_their_text_never_their_macros(tmp_path: Path,
                                                                kind: str) -> None:
    made = {"docx": docx_bytes, "xlsx": xlsx_bytes, "pptx": pptx_bytes}[kind]()
    path = tmp_path / f"macros.{kind[:-1]}m"
    doc = extract(path, macro_enabled(made, kind))
    assert sniff_file(path).ext == f"{kind[:-1]}m" and "macroEnabled" in doc.mime
    assert "bolt" in doc.text and "AutoOpen" not in doc.text and MACRO_MARK not in doc.text


def test_types_come_from_the_bytes_not_the_name(tmp_path: Path) -> None:
    doc = extract(tmp_path / "report.txt", docx_bytes(sections=1))
    assert doc.mime.endswith("wordprocessingml.document") and "Section 1" in doc.text
    sheet = extract(tmp_path / "table.csv", xlsx_bytes())
    assert sheet.mime.endswith("spreadsheetml.sheet") and "washer" in sheet.text
    assert extract(tmp_path / "letter.doc", rtf_bytes()).mime == "application/rtf"


def test_encrypted_truncated_and_legacy_office_files_fail_with_their_reason(
        tmp_path: Path) -> None:
    locked = tmp_path / "locked.docx"
    locked.write_bytes(encrypted_office(docx_bytes(sections=1)))
    with pytest.raises(EncryptedInput, match="password"):
        extract_source(locked, MD)
    cut = tmp_path / "cut.pptx"
    data = pptx_bytes(2)
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptInput, match="damaged or truncated"):
        extract_source(cut, MD)
    legacy = tmp_path / "old.doc"  # an OLE2 file without an encrypted package: a .doc
    legacy.write_bytes(encrypted_office(docx_bytes(sections=1)).replace(
        "EncryptedPackage".encode("utf-16-le"), "SomethingElseXXX".encode("utf-16-le")))
    with pytest.raises(UnsupportedInput, match="legacy binary Office"):
        extract_source(legacy, MD)
