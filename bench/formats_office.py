"""One side of bench/formats.py's Office part, in a process of its own: convert files, write
their texts. The parent times this whole process, start to exit; the loop's own seconds
(perf_counter around the conversions, after the imports) are written too.

    python bench/formats_office.py {ours,bare,markitdown} OUT.json FILE...

  ours        docproc's extract_file, text mode, OCR off (imports the repository it lies in)
  bare        python-docx / python-pptx walking paragraphs, tables, headers/footers and notes
  markitdown  MarkItDown().convert (one converter for all files, as its Python API is used);
              imports nothing of ours, so it runs in a venv of its own
A file a side cannot read gives "" and its error's class name.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

SIDES = ("ours", "bare", "markitdown")


def bare_docx(path: Path) -> str:
    import docx

    doc = docx.Document(str(path))
    parts = [p.text for p in doc.paragraphs]
    parts += [cell.text for table in doc.tables for row in table.rows for cell in row.cells]
    for section in doc.sections:
        parts += [p.text for p in section.header.paragraphs + section.footer.paragraphs]
    return "\n".join(parts)


def bare_pptx(path: Path) -> str:
    import pptx

    parts = []
    for slide in pptx.Presentation(str(path)).slides:
        for shape in slide.shapes:
            if shape.has_text_frame:
                parts.append(shape.text_frame.text)
            if getattr(shape, "has_table", False) and shape.has_table:
                parts += [cell.text for row in shape.table.rows for cell in row.cells]
        if slide.has_notes_slide:
            parts.append(slide.notes_slide.notes_text_frame.text)
    return "\n".join(parts)


def converter(side: str) -> tuple[Callable[[Path], str], tuple[type[BaseException], ...], str]:
    """The side's path -> text, the errors that mean "this file cannot be read", its version."""
    if side == "ours":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from docproc.document import extract_file
        from docproc.options import ExtractOptions
        from pipeline.errors import InputError

        text_mode = ExtractOptions(ocr="never")
        return (lambda p: extract_file(p, text_mode).text), (InputError,), "this repository"
    if side == "bare":
        import importlib.metadata

        return ((lambda p: (bare_docx if p.suffix == ".docx" else bare_pptx)(p)), (Exception,),
                f"python-docx {importlib.metadata.version('python-docx')}, python-pptx "
                f"{importlib.metadata.version('python-pptx')}")
    import importlib.metadata

    from markitdown import MarkItDown

    md = MarkItDown()
    return ((lambda p: md.convert(str(p)).text_content), (Exception,),
            f"markitdown {importlib.metadata.version('markitdown')}")


def main() -> int:
    side, out, files = sys.argv[1], Path(sys.argv[2]), [Path(a) for a in sys.argv[3:]]
    if side not in SIDES:
        sys.exit(f"side must be one of {SIDES}, got {side!r}")
    convert, unreadable, version = converter(side)
    texts, errors = [], {}
    t0 = time.perf_counter()
    for path in files:
        try:
            texts.append(convert(path))
        except unreadable as e:  # the bare walk and markitdown: any error is that file's
            texts.append("")
            errors[path.name] = type(e).__name__
    seconds = time.perf_counter() - t0
    out.write_text(json.dumps({"side": side, "version": version, "loop_seconds": seconds,
                               "texts": texts, "errors": errors}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
