"""Office, OpenDocument, RTF, mail and archive files the tests make, with the libraries that
write them (python-docx, python-pptx, openpyxl, odfpy, email, mailbox, zipfile, tarfile),
each with known headings, list items, tables and notes to look for."""

from __future__ import annotations

import email.message
import io
import mailbox
import re
import tarfile
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

TABLE = (("Part", "Size", "Price"), ("bolt", "M6", "0.10"), ("nut", "M6", "0.05"),
         ("washer", "6 mm", "0.02"))
PROSE = ("The harbour survey lists every quay, crane and warehouse of the old docks, with the "
         "depth of water at each berth and the year each structure was built.")
MACRO_MARK = "Sub AutoOpen() Shell(\"calc.exe\") End Sub"


def docx_bytes(*, sections: int = 2, footnote: str = "Measured at low tide.") -> bytes:
    import docx

    doc = docx.Document()
    doc.core_properties.title = "Harbour survey"
    doc.add_heading("Harbour survey", 0)
    for n in range(1, sections + 1):
        if n > 1:
            doc.add_section()
        doc.add_heading(f"Section {n}", 1)
        doc.add_paragraph(PROSE)
        doc.add_paragraph(f"first point of section {n}", style="List Bullet")
        doc.add_paragraph(f"nested point of section {n}", style="List Bullet 2")
        doc.add_paragraph("step one", style="List Number")
        table = doc.add_table(rows=len(TABLE), cols=len(TABLE[0]))
        for r, row in enumerate(TABLE):
            for c, value in enumerate(row):
                table.cell(r, c).text = value
    doc.sections[0].header.paragraphs[0].text = "Port Authority - internal"
    doc.sections[0].footer.paragraphs[0].text = "Printed copies are not controlled"
    buf = io.BytesIO()
    doc.save(buf)
    return add_footnote(buf.getvalue(), footnote) if footnote else buf.getvalue()


FOOTNOTES_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<w:footnotes xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    '<w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote>'
    '<w:footnote w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/>'
    '</w:r></w:p></w:footnote><w:footnote w:id="1"><w:p><w:r><w:t>{text}</w:t></w:r></w:p>'
    '</w:footnote></w:footnotes>')
FOOTNOTES_REL = ("http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
                 "footnotes")
FOOTNOTES_CT = "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml"


def rewrite_zip(data: bytes, change: dict[str, bytes | None], add: dict[str, bytes]) -> bytes:
    """The package with members changed (None: removed) and added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w",
                                                                   zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename in change:
                if change[info.filename] is not None:
                    dst.writestr(info.filename, change[info.filename])
                continue
            dst.writestr(info, src.read(info))
        for name, body in add.items():
            dst.writestr(name, body)
    return out.getvalue()


def add_footnote(data: bytes, text: str) -> bytes:
    """A footnotes part added by hand (python-docx writes none), as Word stores it."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        rels = zf.read("word/_rels/document.xml.rels").decode()
        types = zf.read("[Content_Types].xml").decode()
    rels = rels.replace("</Relationships>", f'<Relationship Id="rIdFn1" Type="{FOOTNOTES_REL}" '
                                            'Target="footnotes.xml"/></Relationships>')
    types = types.replace("</Types>", '<Override PartName="/word/footnotes.xml" ContentType="'
                                      f'{FOOTNOTES_CT}"/></Types>')
    return rewrite_zip(data, {"word/_rels/document.xml.rels": rels.encode(),
                              "[Content_Types].xml": types.encode()},
                       {"word/footnotes.xml": FOOTNOTES_XML.format(text=text).encode()})


def macro_enabled(data: bytes, kind: str) -> bytes:
    """A .docm/.xlsm/.pptm: the main part's content type made macro-enabled, and a VBA
    project part whose bytes hold macro source (never to be run, nor to reach the text)."""
    plain, macro = {"docx": ("wordprocessingml.document.main+xml",
                             "application/vnd.ms-word.document.macroEnabled.main+xml"),
                    "xlsx": ("spreadsheetml.sheet.main+xml",
                             "application/vnd.ms-excel.sheet.macroEnabled.main+xml"),
                    "pptx": ("presentationml.presentation.main+xml",
                             "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml")
                    }[kind]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        types = zf.read("[Content_Types].xml").decode()
    types = re.sub(r'ContentType="application/vnd\.openxmlformats-officedocument\.'
                   + re.escape(plain) + '"', f'ContentType="{macro}"', types)
    folder = {"docx": "word", "xlsx": "xl", "pptx": "ppt"}[kind]
    return rewrite_zip(data, {"[Content_Types].xml": types.encode()},
                       {f"{folder}/vbaProject.bin": MACRO_MARK.encode() * 20})


SLIDE_TITLES = ("Harbour history", "Quay inventory", "Next steps", "Open questions")
SLIDE_POINTS = (("the old docks", "built in 1850"), ("cranes and quays", "twelve in use"),
                ("dredging plan", "starts in spring"), ("who pays", "the port or the city"))
SLIDE_NOTES = ("Start with the map.", "Mention the cranes.", "Ask for the budget.",
               "Collect the questions.")


def pptx_bytes(slides: int = 3) -> bytes:
    import pptx
    from pptx.util import Inches

    prs = pptx.Presentation()
    for n in range(1, slides + 1):
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = SLIDE_TITLES[n - 1]
        body = slide.placeholders[1].text_frame
        body.text = SLIDE_POINTS[n - 1][0]
        sub = body.add_paragraph()
        sub.text, sub.level = SLIDE_POINTS[n - 1][1], 1
        if n == 2:
            shape = slide.shapes.add_table(len(TABLE), len(TABLE[0]), Inches(1), Inches(5),
                                           Inches(6), Inches(1.5))
            for r, row in enumerate(TABLE):
                for c, value in enumerate(row):
                    shape.table.cell(r, c).text = value
        slide.notes_slide.notes_text_frame.text = SLIDE_NOTES[n - 1]
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()


def xlsx_bytes(rows: Sequence[Sequence[object]] = TABLE, sheets: Sequence[str] = ("Parts",)
               ) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    for i, name in enumerate(sheets):
        sheet = book.active if i == 0 else book.create_sheet()
        sheet.title = name
        for row in rows:
            sheet.append(list(row))
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def _odf_table(name: str, rows: Sequence[Sequence[str]]):
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    table = Table(name=name)
    for row in rows:
        tr = TableRow()
        for value in row:
            cell = TableCell()
            cell.addElement(P(text=value))
            tr.addElement(cell)
        table.addElement(tr)
    return table


def _odf_bytes(doc) -> bytes:
    buf = io.BytesIO()
    doc.write(buf)
    return buf.getvalue()


def odt_bytes() -> bytes:
    from odf.opendocument import OpenDocumentText
    from odf.text import H, List, ListItem, P

    doc = OpenDocumentText()
    doc.text.addElement(H(outlinelevel=1, text="Harbour survey"))
    doc.text.addElement(P(text=PROSE))
    items = List()
    for text in ("first point", "second point"):
        item = ListItem()
        item.addElement(P(text=text))
        items.addElement(item)
    doc.text.addElement(items)
    doc.text.addElement(_odf_table("Parts", TABLE))
    return _odf_bytes(doc)


def ods_bytes() -> bytes:
    from odf.opendocument import OpenDocumentSpreadsheet

    doc = OpenDocumentSpreadsheet()
    doc.spreadsheet.addElement(_odf_table("Parts", TABLE))
    return _odf_bytes(doc)


def odp_bytes(pages: int = 2) -> bytes:
    from odf import draw, style
    from odf.opendocument import OpenDocumentPresentation
    from odf.text import P

    doc = OpenDocumentPresentation()
    layout = style.PageLayout(name="layout")
    doc.automaticstyles.addElement(layout)
    master = style.MasterPage(name="master", pagelayoutname=layout)
    doc.masterstyles.addElement(master)
    for n in range(1, pages + 1):
        page = draw.Page(masterpagename=master)
        frame = draw.Frame(width="20cm", height="3cm", x="1cm", y="1cm")
        box = draw.TextBox()
        box.addElement(P(text=f"Presentation page {n} about the docks"))
        frame.addElement(box)
        page.addElement(frame)
        doc.presentation.addElement(page)
    return _odf_bytes(doc)


def rtf_bytes(text: str = PROSE) -> bytes:
    return ("{\\rtf1\\ansi{\\fonttbl\\f0\\fswiss Helvetica;}{\\*\\generator Hidden gen;}\\f0\\pard "
            + text + " Caf\\'e9 {\\b bold} end.\\par Second paragraph.\\par}").encode()


def mail(subject: str = "Quarterly survey", body: str = PROSE, html: str = "",
         attachments: Sequence[tuple[str, bytes]] = ()) -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["Subject"] = subject
    msg["From"] = "Ann Example <ann@example.org>"
    msg["To"] = "bob@example.org"
    msg["Date"] = "Tue, 01 Dec 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<{abs(hash(subject))}@example.org>"
    if html:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(body)
    for name, data in attachments:
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg


def mbox_bytes(messages: Sequence[email.message.EmailMessage], tmp: Path) -> bytes:
    path = tmp / "build.mbox"
    box = mailbox.mbox(path)
    for msg in messages:
        box.add(msg)
    box.flush()
    box.close()
    data = path.read_bytes()
    path.unlink()
    return data


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz",
              special: Sequence[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in special:
            tf.addfile(info)
    return buf.getvalue()


def tar_entry(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def encrypted_office(data: bytes, password: str = "secret") -> bytes:
    """The OOXML package encrypted as Office does with a password (msoffcrypto-tool)."""
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(data)).encrypt(password, out)
    return out.getvalue()


WORDS = ("quay crane berth depth tide pier dock hull keel mast rope anchor buoy chart "
         "survey harbour warehouse timber stone iron").split()


def table_pdf_bytes(pages: int = 1, *, seed: int = 0) -> tuple[bytes, list[list[list[str]]]]:
    """A PDF of `pages` manual pages, each a heading, a paragraph, two bullet items, a ruled
    table of known cells (drawn as a word processor prints one) and a closing paragraph, in
    words that differ from page to page (as a real manual's do: the clean-up takes lines that
    repeat at the pages' edges for running headers); (the PDF, each page's table as rows)."""
    import random

    import pymupdf

    rnd = random.Random(seed)

    def words(n: int) -> str:
        return " ".join(rnd.choice(WORDS) for _ in range(n))

    doc, tables = pymupdf.open(), []
    for n in range(pages):
        page = doc.new_page()
        page.insert_text((72, 80), f"Chapter {n + 1}: {words(2)}", fontsize=20)
        page.insert_textbox(pymupdf.Rect(72, 100, 540, 200), f"{words(40)}.", fontsize=10)
        for i, item in enumerate(("check the depth", "log the berth")):
            page.insert_text((80, 220 + 14 * i), f"• {item} {n + 1}", fontsize=10)
        rows = [list(TABLE[0])] + [[f"{part}-{n + 1}", f"M{rnd.randint(3, 12)}",
                                    f"{rnd.randint(1, 99) / 100:.2f}"] for part, *_ in TABLE[1:]]
        x0, y0, w, h = 72, 270, 140, 20
        for r, row in enumerate(rows):
            for c, cell in enumerate(row):
                rect = pymupdf.Rect(x0 + c * w, y0 + r * h, x0 + (c + 1) * w, y0 + (r + 1) * h)
                page.draw_rect(rect, color=(0, 0, 0), width=0.7)
                page.insert_text((rect.x0 + 4, rect.y1 - 6), cell, fontsize=10)
        page.insert_textbox(pymupdf.Rect(72, 370, 540, 470), f"{words(40)}.", fontsize=10)
        tables.append(rows)
    return doc.tobytes(), tables


# Markdown's own marks (heading #s, list dashes, a table's rule row), for comparing its words
MARKUP = re.compile(r"^(#+|-) |^\|( ?---+ ?\|)+$", re.MULTILINE)


def _words(text: str) -> Counter[str]:
    return Counter(re.findall(r"[\w.-]+", text.replace("|", " ")))


def word_bag_f1(got: str, want: str) -> float:
    """F1 of the two texts' word multisets: 1.0 when neither loses nor repeats a word."""
    a, b = _words(got), _words(want)
    common = sum((a & b).values())
    return 2 * common / (sum(a.values()) + sum(b.values())) if common else 0.0
