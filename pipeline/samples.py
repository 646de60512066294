"""The built-in sample corpus: a small linked web site made from material on this machine.

HTML pages are the standard library's documentation as `pydoc` renders it; a few modules are
also turned into text PDFs, and a few of those into image-only "scanned" PDFs that need OCR.
Nothing is downloaded, and the same Python version builds the same site.
"""

from __future__ import annotations

import html
import importlib
import logging
import pydoc
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.atomic import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

# Modules with substantial prose docs; pydoc links between them (e.g. json.html -> codecs.html).
SAMPLE_MODULES = (
    "abc", "argparse", "base64", "bisect", "calendar", "collections", "contextlib", "copy",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "fnmatch", "fractions",
    "functools", "getopt", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html",
    "inspect", "io", "ipaddress", "itertools", "json", "logging", "operator", "os", "pathlib",
    "pickle", "pprint", "queue", "random", "re", "sched", "secrets", "shlex", "shutil",
    "socket", "statistics", "string", "struct", "tarfile", "tempfile", "textwrap", "threading",
    "timeit", "tokenize", "typing", "unittest", "urllib.parse", "uuid", "warnings", "weakref",
    "zipfile",
)
PDF_MODULES = ("textwrap", "shlex", "fnmatch", "bisect", "heapq", "getopt")
SCANNED_MODULES = ("fnmatch", "getopt")  # subsets of PDF_MODULES, re-made as page images
PDF_MAX_PAGES = 4
SCANNED_MAX_PAGES = 1
SCAN_DPI = 150  # resolution of the page images inside a "scanned" PDF


@dataclass(slots=True)
class SampleSite:
    folder: Path
    pages: list[str] = field(default_factory=list)  # relative paths of every file
    scanned: list[str] = field(default_factory=list)  # the image-only PDFs


_MODULE_LINK = re.compile(r'<a href="([\w.]+)\.html(#[^"]*)?"[^>]*>(.*?)</a>', re.DOTALL)


def _module_html(name: str, on_site: frozenset[str]) -> str:
    """pydoc's page for a module, with links to modules that are not on the site unlinked."""
    module = importlib.import_module(name)
    body = pydoc.html.document(module, name)
    body = _MODULE_LINK.sub(lambda m: m.group(0) if m.group(1) in on_site else m.group(3), body)
    return pydoc.html.page(f"module {name}", body)


def _module_text(name: str) -> str:
    module = importlib.import_module(name)
    return pydoc.plain(pydoc.render_doc(module, "Python Library Documentation: %s"))


def _index_html(modules: list[str], pdfs: list[str]) -> str:
    items = "\n".join(f'<li><a href="{m}.html">{html.escape(m)}</a></li>' for m in modules)
    docs = "\n".join(f'<li><a href="{p}">{html.escape(p)}</a></li>' for p in pdfs)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>CLLM sample library"
        "</title></head><body><h1>Python standard library, as pydoc renders it</h1>"
        f"<h2>Modules</h2><ul>{items}</ul><h2>Documents</h2><ul>{docs}</ul></body></html>\n"
    )


def _text_pdf(text: str, max_pages: int) -> bytes:
    import pymupdf

    doc = pymupdf.open()
    rect = pymupdf.paper_rect("a4") + (50, 50, -50, -50)
    lines = text.splitlines()
    per_page = 60
    for start in range(0, min(len(lines), per_page * max_pages), per_page):
        page = doc.new_page(width=rect.x1 + 50, height=rect.y1 + 50)
        chunk = "\n".join(lines[start:start + per_page])
        page.insert_textbox(rect, chunk, fontsize=9, fontname="cour")
    return doc.tobytes(garbage=3, deflate=True)


def _scanned_pdf(pdf_bytes: bytes, max_pages: int, dpi: int) -> bytes:
    """The first pages of a text PDF as page images only: no text layer left."""
    import pymupdf

    src = pymupdf.open(stream=pdf_bytes, filetype="pdf")
    out = pymupdf.open()
    for page in list(src)[:max_pages]:
        pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
        new = out.new_page(width=page.rect.width, height=page.rect.height)
        new.insert_image(new.rect, stream=pix.tobytes("png"))
    return out.tobytes(garbage=3, deflate=True)


def build_sample_site(folder: Path, *, modules: tuple[str, ...] = SAMPLE_MODULES,
                      pdf_modules: tuple[str, ...] = PDF_MODULES,
                      scanned_modules: tuple[str, ...] = SCANNED_MODULES) -> SampleSite:
    """Write the sample site into `folder` (index.html at its top); skip files already there."""
    folder = Path(folder)
    site = SampleSite(folder=folder)
    pdfs = [f"pdf/{m}.pdf" for m in pdf_modules] + [f"pdf/{m}-scan.pdf" for m in scanned_modules]
    on_site = frozenset(modules)
    for name in modules:
        _write_once(folder / f"{name}.html", lambda n=name: _module_html(n, on_site).encode())
        site.pages.append(f"{name}.html")
    for name in pdf_modules:
        _write_once(folder / "pdf" / f"{name}.pdf",
                    lambda n=name: _text_pdf(_module_text(n), PDF_MAX_PAGES))
        site.pages.append(f"pdf/{name}.pdf")
    for name in scanned_modules:
        text_pdf = folder / "pdf" / f"{name}.pdf"
        _write_once(folder / "pdf" / f"{name}-scan.pdf",
                    lambda p=text_pdf: _scanned_pdf(p.read_bytes(), SCANNED_MAX_PAGES, SCAN_DPI))
        site.pages.append(f"pdf/{name}-scan.pdf")
        site.scanned.append(f"pdf/{name}-scan.pdf")
    atomic_write_text(folder / "index.html", _index_html(list(modules), pdfs))
    atomic_write_text(folder / "robots.txt", "User-agent: *\nDisallow: /private/\n")
    site.pages.append("index.html")
    log.info("sample site: %d files in %s", len(site.pages), folder)
    return site


def _write_once(path: Path, make: Callable[[], bytes]) -> None:
    if not path.is_file():
        atomic_write_bytes(path, make())
