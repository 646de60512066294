"""The legacy extraction tools' front ends, on the extract stage's own functions.

    cllm_pdf_extract [-o FILE] [-r/--ocr] [-m/--metadata] [-p/--page N] [-t/--type] [--jsonl]
                     [--workers N] PDF...
    cllm_ocr [-o FILE] [-l/--lang LANG] [-d/--dpi N] [-p/--psm N] [-n/--no-preprocess]
             [-L/--list-langs] [-c/--check] IMAGE...
    cllm_pdf_ocr [-o FILE] [-l/--lang LANG] [-f/--force-ocr] [-m/--metadata] [-v] PDF...

They keep the original flags and fix what was broken: `--lang` is used, the OCR confidence is
Tesseract's own, OCR can be forced. Each takes several inputs (with several, `-o` names a
folder holding one .txt per input), `--jsonl` prints Document records, `--workers N` runs
them in parallel, and the exit status is 1 when any input failed (named on stderr) after
all the others were written; 3 when Tesseract is missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.shell.runner import EXIT_FAILED, EXIT_OK, run_tool
from pipeline.config import ExtractConfig, OcrMode

if TYPE_CHECKING:  # the stage's modules load when a tool runs, not when it parses
    from docproc.options import ExtractOptions
    from docproc.pool import Outcome
    from pipeline.records import Document

DEFAULT = ExtractConfig()
# The original tools ran without a memory cap, and so do these: a file is given by the
# person running the tool, not found by a crawl (the extract stage caps its workers at
# extract.max_memory_mb).
TOOL_MAX_MEMORY_MB = 0
MIN_DPI, MAX_DPI = 50, 1200  # as extract.dpi
MAX_PSM = 13  # as extract.psm
META_KEYS = ("title", "author", "subject", "keywords", "creator", "producer", "creationDate",
             "modDate", "format", "encryption", "pages")


def _options(args: argparse.Namespace, **flags: Any) -> ExtractOptions:
    """The tool's options: the extract section's defaults, its flags, no memory cap."""
    from docproc.options import ExtractOptions

    # a negative --workers meant one per core, as 0 does
    return ExtractOptions(workers=max(0, args.workers), max_memory_mb=TOOL_MAX_MEMORY_MB,
                          **flags)


# --- output ---------------------------------------------------------------------------


def _unique_name(folder: Path, stem: str, suffix: str, used: set[str]) -> Path:
    name, n = f"{stem}{suffix}", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}{suffix}"
    used.add(name)
    return folder / name


class Output:
    """Where text goes: stdout, one file, or one file per input in a folder.

    A folder's files are each written atomically (a temp file renamed into place: a killed
    run leaves no half file) and made durable together when the run ends: every file and
    then the folder are fsynced in close(), so that the tool's exit means its files are on
    disk. An fsync after each file cost more than its write, on the extraction's thread or
    beside it; an OS crash in the middle of a run can leave some files empty, which running
    the tool again rewrites (it writes every output each time).
    """

    def __init__(self, target: str | None, n_inputs: int, jsonl: bool) -> None:
        self.target = Path(target) if target else None
        self.jsonl = jsonl
        self.folder = self.target if self.target and n_inputs > 1 and not jsonl else None
        self.n_inputs = n_inputs
        self._used: set[str] = set()
        self._chunks: list[str] = []
        self._unsynced: list[Path] = []  # files renamed into the folder, not yet fsynced
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, path: str, text: str) -> Path | None:
        """Write one input's text; returns the file it went to (None: stdout)."""
        from pipeline.atomic import atomic_write_bytes

        if self.folder is not None:
            out = _unique_name(self.folder, Path(path).stem, ".txt", self._used)
            text = text if text.endswith("\n") else text + "\n"
            atomic_write_bytes(out, text.encode("utf-8"), durable=False)
            self._unsynced.append(out)
            return out
        if self.target is not None:
            self._chunks.append(text if text.endswith("\n") else text + "\n")
            return self.target
        if self.n_inputs > 1 and not self.jsonl:
            sys.stdout.write(f"==> {path} <==\n")
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return None

    def close(self) -> None:
        from pipeline.atomic import atomic_write_text, fsync_path

        if self._unsynced:
            for written in self._unsynced:
                fsync_path(written)
            fsync_path(self.folder)
            self._unsynced = []
        if self.target is not None and self.folder is None and self._chunks:
            atomic_write_text(self.target, "".join(self._chunks))


def _metadata_text(path: str, opts: ExtractOptions) -> str:
    """The document's metadata as "key: value" lines ("" for formats without any)."""
    from docproc.files import document_metadata

    meta = document_metadata(Path(path), opts)
    if meta is None:
        return ""
    return "".join(f"{k}: {meta[k]}\n" for k in META_KEYS if meta.get(k)) + "\n"


def _report_pages(path: str, doc: Document) -> None:
    for p in doc.page_info:
        conf = f", confidence {p.confidence:.1f}" if p.confidence is not None else ""
        what = "OCR" if p.ocr else "text"
        print(f"{path}: page {p.number}: {what} ({p.reason}), {p.chars} chars{conf}",
              file=sys.stderr)


def _confidence_line(path: str, doc: Document, out: Path | None) -> str:
    conf = doc.stats.get("ocr_confidence")
    if not doc.ocr_pages:
        shown = "n/a (text layer, no OCR)"
    else:
        shown = f"{conf:.1f}%" if conf is not None else "n/a (no words found)"
    dest = f" -> {out}" if out else ""
    return f"{path}: confidence {shown}, {int(doc.stats.get('words', 0))} words{dest}"


def emit(outcomes: Iterator[Outcome], args: argparse.Namespace, opts: ExtractOptions,
         prog: str, *, confidence: bool = False) -> int:
    """Write each input's text (or record); failures named on stderr; the exit status.

    `confidence`: with -o, print each input's OCR confidence and where its text went.
    """
    out = Output(args.output, len(args.inputs), args.jsonl)
    failed = 0
    try:
        for o in outcomes:
            path = o.task.path
            docs = o.documents  # an archive's or a mail's: each of them
            if o.error or not docs:
                failed += 1
                print(f"{prog}: {path}: {o.error}: {o.message}", file=sys.stderr)
                continue
            for bad in o.member_failures:
                print(f"{prog}: {bad.source}: {bad.error}: {bad.message}", file=sys.stderr)
            if getattr(args, "verbose", False):
                _report_pages(path, docs[0])
            text = "\n".join(d.to_json() for d in docs) if args.jsonl else \
                "\n\n".join(d.text for d in docs)
            if getattr(args, "metadata", False) and not args.jsonl:
                text = _metadata_text(path, opts) + text
            written = out.write(path, text)
            if confidence and args.output:
                print(_confidence_line(path, docs[0], written))
    finally:
        out.close()
    if failed:
        print(f"{prog}: {failed} of {len(args.inputs)} inputs failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _extract(args: argparse.Namespace, opts: ExtractOptions, prog: str, *,
             confidence: bool = False) -> int:
    """Check Tesseract when OCR may run, then extract every input and write it."""
    from docproc.files import extract_files

    if opts.ocr is not OcrMode.NEVER:
        from docproc.ocr import check_tesseract

        check_tesseract(opts.lang)  # exit 3 with the install command, before any work
    return emit(extract_files(args.inputs, opts), args, opts, prog, confidence=confidence)


# --- argument parsing -------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, inputs: str) -> None:
    p.add_argument("inputs", nargs="*", metavar=inputs)
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the text here (several inputs: a folder, one .txt per input; "
                        "with --jsonl: one JSONL file)")
    p.add_argument("--jsonl", action="store_true", help="print Document records (JSON lines)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="processes for several inputs (default: one per core)")


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
           need_inputs: Callable[[argparse.Namespace], bool] = lambda args: True,
           ) -> argparse.Namespace:
    """The arguments, checked: a bad one exits 2 with the usage, as argparse does."""
    args = parser.parse_args(argv)
    dpi = getattr(args, "dpi", None)
    if dpi is not None and not MIN_DPI <= dpi <= MAX_DPI:
        parser.error(f"--dpi must be in {MIN_DPI}..{MAX_DPI}, got {dpi}")
    if not need_inputs(args):
        return args
    if not args.inputs:
        parser.error("no input files")
    if not getattr(args, "lang", "eng").strip():
        parser.error("--lang must name a Tesseract language, e.g. eng")
    return args


# --- cllm_pdf_extract -------------------------------------------------------------------


def _pdf_extract_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cllm_pdf_extract",
                                description="Extract the text of PDFs (OCR with -r).")
    _common(p, "PDF")
    p.add_argument("-r", "--ocr", action="store_true",
                   help="OCR the pages that need it (no text layer, scans, garbled fonts)")
    p.add_argument("-m", "--metadata", action="store_true", help="print metadata before the text")
    p.add_argument("-p", "--page", type=int, metavar="N", help="only page N (1-based)")
    p.add_argument("-t", "--type", action="store_true",
                   help="print whether each PDF is text, image (scanned) or mixed")
    p.add_argument("-l", "--lang", default=DEFAULT.lang, help="Tesseract language(s) for -r")
    p.add_argument("-d", "--dpi", type=int, default=DEFAULT.dpi, help="OCR render resolution")
    return p


def _print_types(args: argparse.Namespace, opts: ExtractOptions) -> int:
    from docproc.files import document_type
    from pipeline.errors import InputError

    failed = 0
    for path in args.inputs:
        try:
            kind = document_type(Path(path), opts)
        except InputError as e:
            failed += 1
            print(f"cllm_pdf_extract: {path}: {e.kind}: {e.reason}", file=sys.stderr)
            continue
        print(f"{path}: {kind}" if len(args.inputs) > 1 else kind)
    return EXIT_FAILED if failed else EXIT_OK


def _pdf_extract(args: argparse.Namespace) -> int:
    opts = _options(args, ocr=OcrMode.AUTO if args.ocr else OcrMode.NEVER, lang=args.lang,
                    dpi=args.dpi, pages=(args.page,) if args.page else ())
    if args.type:
        return _print_types(args, opts)
    return _extract(args, opts, "cllm_pdf_extract")


def pdf_extract_main(argv: Sequence[str] | None = None) -> int:
    args = _parse(_pdf_extract_parser(), argv)
    return run_tool("cllm_pdf_extract", lambda: _pdf_extract(args), quiet=1)


# --- cllm_ocr -----------------------------------------------------------------------------


def _ocr_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cllm_ocr",
                                description="OCR images (and every page of PDFs) with Tesseract.")
    _common(p, "IMAGE")
    p.add_argument("-l", "--lang", default=DEFAULT.lang,
                   help="Tesseract language(s), e.g. eng+deu")
    p.add_argument("-d", "--dpi", type=int, default=None,
                   help="images: their resolution (default: as stored, else estimated); "
                        f"PDFs: render resolution (default {DEFAULT.dpi})")
    p.add_argument("-p", "--psm", type=int, default=DEFAULT.psm,
                   help="Tesseract page segmentation mode")
    p.add_argument("-n", "--no-preprocess", action="store_true",
                   help="no contrast stretch or upscaling of small images")
    p.add_argument("-L", "--list-langs", action="store_true", help="list installed languages")
    p.add_argument("-c", "--check", action="store_true",
                   help="check that Tesseract and the languages are installed")
    return p


def _ocr(args: argparse.Namespace) -> int:
    from docproc.ocr import check_tesseract, list_languages, tesseract_cmd, tesseract_version

    if args.list_langs:
        print("\n".join(list_languages()))
        return EXIT_OK
    if args.check:
        check_tesseract(args.lang)
        print(f"tesseract {tesseract_version()} ({tesseract_cmd()}): languages {args.lang} "
              "available")
        return EXIT_OK
    opts = _options(args, ocr=OcrMode.FORCE, lang=args.lang, psm=args.psm,
                    dpi=args.dpi or DEFAULT.dpi, image_dpi=args.dpi,
                    preprocess=not args.no_preprocess)
    return _extract(args, opts, "cllm_ocr", confidence=True)


def ocr_main(argv: Sequence[str] | None = None) -> int:
    parser = _ocr_parser()
    args = _parse(parser, argv, need_inputs=lambda a: not (a.list_langs or a.check))
    if not (args.list_langs or args.check) and not 0 <= args.psm <= MAX_PSM:
        parser.error(f"--psm must be in 0..{MAX_PSM}, got {args.psm}")
    return run_tool("cllm_ocr", lambda: _ocr(args), quiet=1)


# --- cllm_pdf_ocr -------------------------------------------------------------------------


def _pdf_ocr_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cllm_pdf_ocr",
        description="Text of PDFs, OCRing each page that needs it (-f: every page).")
    _common(p, "PDF")
    p.add_argument("-l", "--lang", default=DEFAULT.lang,
                   help="Tesseract language(s), e.g. eng+deu")
    p.add_argument("-f", "--force-ocr", action="store_true", help="OCR every page")
    p.add_argument("-m", "--metadata", action="store_true", help="print metadata before the text")
    p.add_argument("-d", "--dpi", type=int, default=DEFAULT.dpi, help="OCR render resolution")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="report each page's OCR decision and confidence on stderr")
    return p


def _pdf_ocr(args: argparse.Namespace) -> int:
    opts = _options(args, ocr=OcrMode.FORCE if args.force_ocr else OcrMode.AUTO,
                    lang=args.lang, dpi=args.dpi)
    return _extract(args, opts, "cllm_pdf_ocr", confidence=True)


def pdf_ocr_main(argv: Sequence[str] | None = None) -> int:
    args = _parse(_pdf_ocr_parser(), argv)
    return run_tool("cllm_pdf_ocr", lambda: _pdf_ocr(args), quiet=0 if args.verbose else 1)
