"""The legacy tools cllm_pdf_extract, cllm_ocr and cllm_pdf_ocr, over the stage's own functions.

They keep the original flags and fix what was broken: `--lang` is used, the OCR confidence is
Tesseract's own, OCR can be forced. Each takes several inputs (with several, `-o` names a
folder holding one .txt per input), `--jsonl` prints Document records, `--workers N` runs
them in parallel, and the exit status is 1 when any input failed (named on stderr) after
all the others were written; 3 when Tesseract is missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from docproc.ocr_policy import OcrMode
from docproc.options import ExtractOptions
from pipeline.errors import EnvironmentProblem, InputError
from pipeline.records import Document

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3
# The original tools ran without a memory cap, and so do these: a file is given by the person
# running the tool, not found by a crawl (the stage caps its workers at extract.max_memory_mb).
TOOL_MAX_MEMORY_MB = 0
TIMEOUT_S = 300.0  # per input, when run in worker processes
TASKS_PER_WORKER = 50
MIN_DPI, MAX_DPI = 50, 1200  # as extract.dpi
META_KEYS = ("title", "author", "subject", "keywords", "creator", "producer", "creationDate",
             "modDate", "format", "encryption", "pages")


@dataclass(slots=True)
class Result:
    path: str
    doc: Document | None = None
    error: str = ""  # "kind: reason" when the input failed


# --- running ------------------------------------------------------------------------------


def _in_process(paths: Sequence[str], opts: ExtractOptions) -> Iterator[Result]:
    """One input after the other, handled exactly as a worker process would."""
    from docproc.pool import Task, run_one

    for path in paths:
        status, a, b = run_one(Task(path=path, source=path), opts, TIMEOUT_S)
        if status == "env":
            raise EnvironmentProblem(a)
        yield Result(path, doc=a) if status == "ok" else Result(path, error=f"{a}: {b}")


def _in_workers(paths: Sequence[str], opts: ExtractOptions, workers: int) -> Iterator[Result]:
    """Results in input order, extracted on `workers` processes."""
    from docproc.pool import Task, WorkerPool

    pool = WorkerPool(opts, workers=workers, timeout_s=TIMEOUT_S,
                      tasks_per_worker=TASKS_PER_WORKER)
    ready: dict[str, Result] = {}
    order = iter(paths)
    upcoming = next(order, None)
    for outcome in pool.run([Task(path=p, source=p) for p in dict.fromkeys(paths)]):
        error = "" if outcome.doc else f"{outcome.error}: {outcome.message}"
        ready[outcome.task.path] = Result(outcome.task.path, doc=outcome.doc, error=error)
        while upcoming is not None and upcoming in ready:
            yield ready[upcoming]
            upcoming = next(order, None)


def run_inputs(paths: Sequence[str], opts: ExtractOptions, workers: int) -> Iterator[Result]:
    from docproc.extract import worker_count

    workers = min(worker_count(workers), len(paths))
    if workers <= 1:
        yield from _in_process(paths, opts)
    else:
        yield from _in_workers(paths, opts, workers)


# --- output ---------------------------------------------------------------------------


def _unique_name(folder: Path, stem: str, suffix: str, used: set[str]) -> Path:
    name, n = f"{stem}{suffix}", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}{suffix}"
    used.add(name)
    return folder / name


class Output:
    """Where text goes: stdout, one file, or one file per input in a folder."""

    def __init__(self, target: str | None, n_inputs: int, jsonl: bool) -> None:
        self.target = Path(target) if target else None
        self.jsonl = jsonl
        self.folder = self.target if self.target and n_inputs > 1 and not jsonl else None
        self.n_inputs = n_inputs
        self._used: set[str] = set()
        self._chunks: list[str] = []
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, path: str, text: str) -> Path | None:
        """Write one input's text; returns the file it went to (None: stdout)."""
        from pipeline.atomic import atomic_write_text

        if self.folder is not None:
            out = _unique_name(self.folder, Path(path).stem, ".txt", self._used)
            atomic_write_text(out, text if text.endswith("\n") else text + "\n")
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
        from pipeline.atomic import atomic_write_text

        if self.target is not None and self.folder is None and self._chunks:
            atomic_write_text(self.target, "".join(self._chunks))


def _metadata_text(path: str, opts: ExtractOptions) -> str:
    """The document's metadata as "key: value" lines ("" for formats without any)."""
    from docproc.detect import Kind, detect
    from docproc.pdf import metadata, open_document

    try:
        found = detect(Path(path))
        if found.kind not in (Kind.PDF, Kind.EBOOK):
            return ""
        doc = open_document(Path(path), path, opts.max_pages, found.filetype)
    except InputError:
        return ""
    try:
        meta = metadata(doc)
    finally:
        doc.close()
    return "".join(f"{k}: {meta[k]}\n" for k in META_KEYS if meta.get(k)) + "\n"


def _report_page(path: str, doc: Document) -> None:
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


def emit(results: Iterator[Result], args: argparse.Namespace, opts: ExtractOptions,
         prog: str) -> int:
    """Write each result; failures named on stderr; the exit status."""
    out = Output(args.output, len(args.inputs), args.jsonl)
    failed = 0
    try:
        for r in results:
            if r.doc is None:
                failed += 1
                print(f"{prog}: {r.path}: {r.error}", file=sys.stderr)
                continue
            if getattr(args, "verbose", False):
                _report_page(r.path, r.doc)
            text = r.doc.to_json() if args.jsonl else r.doc.text
            if getattr(args, "metadata", False) and not args.jsonl:
                text = _metadata_text(r.path, opts) + text
            written = out.write(r.path, text)
            if getattr(args, "print_confidence", False) and args.output:
                print(_confidence_line(r.path, r.doc, written))
    finally:
        out.close()
    if failed:
        print(f"{prog}: {failed} of {len(args.inputs)} inputs failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# --- argument parsing -------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, inputs: str) -> None:
    p.add_argument("inputs", nargs="*", metavar=inputs)
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the text here (several inputs: a folder, one .txt per input; "
                        "with --jsonl: one JSONL file)")
    p.add_argument("--jsonl", action="store_true", help="print Document records (JSON lines)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="processes for several inputs (default: one per core)")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname).1s %(message)s", stream=sys.stderr)


def _main(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None,
          run: Callable[[argparse.ArgumentParser, argparse.Namespace], int]) -> int:
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "verbose", False))
    dpi = getattr(args, "dpi", None)
    if dpi is not None and not MIN_DPI <= dpi <= MAX_DPI:
        parser.error(f"--dpi must be in {MIN_DPI}..{MAX_DPI}, got {dpi}")
    try:
        return run(parser, args)
    except EnvironmentProblem as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _need_inputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.inputs:
        parser.error("no input files")


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
    p.add_argument("-l", "--lang", default="eng", help="Tesseract language(s) for -r")
    p.add_argument("-d", "--dpi", type=int, default=300, help="OCR render resolution")
    return p


def document_type(path: Path, opts: ExtractOptions) -> str:
    """"text", "image" (scanned: every page needs OCR) or "mixed", without running OCR."""
    from docproc.detect import Kind, detect
    from docproc.pdf import classify

    found = detect(path)
    if found.kind is Kind.IMAGE:
        return "image"
    if found.kind in (Kind.PDF, Kind.EBOOK):
        return classify(path, str(path), opts.max_pages, found.filetype)
    return "text"


def _pdf_type(args: argparse.Namespace, opts: ExtractOptions) -> int:
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


def _check_ocr(opts: ExtractOptions) -> None:
    if opts.ocr is not OcrMode.NEVER:
        from docproc.ocr import check_tesseract

        check_tesseract(opts.lang)


def _pdf_extract(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    _need_inputs(parser, args)
    pages = (args.page,) if args.page else ()
    opts = ExtractOptions(ocr=OcrMode.AUTO if args.ocr else OcrMode.NEVER, lang=args.lang,
                          dpi=args.dpi, pages=pages, max_memory_mb=TOOL_MAX_MEMORY_MB)
    if args.type:
        return _pdf_type(args, opts)
    _check_ocr(opts)
    return emit(run_inputs(args.inputs, opts, args.workers), args, opts, "cllm_pdf_extract")


def pdf_extract_main(argv: Sequence[str] | None = None) -> int:
    parser = _pdf_extract_parser()
    return _main("cllm_pdf_extract", parser, argv, _pdf_extract)


# --- cllm_ocr -----------------------------------------------------------------------------


def _ocr_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cllm_ocr",
                                description="OCR images (and every page of PDFs) with Tesseract.")
    _common(p, "IMAGE")
    p.add_argument("-l", "--lang", default="eng", help="Tesseract language(s), e.g. eng+deu")
    p.add_argument("-d", "--dpi", type=int, default=None,
                   help="images: their resolution (default: as stored, else estimated); "
                        "PDFs: render resolution (default 300)")
    p.add_argument("-p", "--psm", type=int, default=3, help="Tesseract page segmentation mode")
    p.add_argument("-n", "--no-preprocess", action="store_true",
                   help="no contrast stretch or upscaling of small images")
    p.add_argument("-L", "--list-langs", action="store_true", help="list installed languages")
    p.add_argument("-c", "--check", action="store_true",
                   help="check that Tesseract and the languages are installed")
    return p


def _ocr(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from docproc.ocr import check_tesseract, list_languages, tesseract_cmd

    if args.list_langs:
        print("\n".join(list_languages()))
        return EXIT_OK
    if args.check:
        version = check_tesseract(args.lang)
        print(f"tesseract {version} ({tesseract_cmd()}): languages {args.lang} available")
        return EXIT_OK
    _need_inputs(parser, args)
    if not 0 <= args.psm <= 13:
        parser.error(f"--psm must be in 0..13, got {args.psm}")
    opts = ExtractOptions(ocr=OcrMode.FORCE, lang=args.lang, psm=args.psm,
                          dpi=args.dpi or 300, image_dpi=args.dpi,
                          preprocess=not args.no_preprocess, max_memory_mb=TOOL_MAX_MEMORY_MB)
    check_tesseract(opts.lang)
    args.print_confidence = True
    return emit(run_inputs(args.inputs, opts, args.workers), args, opts, "cllm_ocr")


def ocr_main(argv: Sequence[str] | None = None) -> int:
    parser = _ocr_parser()
    return _main("cllm_ocr", parser, argv, _ocr)


# --- cllm_pdf_ocr -------------------------------------------------------------------------


def _pdf_ocr_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cllm_pdf_ocr",
        description="Text of PDFs, OCRing each page that needs it (-f: every page).")
    _common(p, "PDF")
    p.add_argument("-l", "--lang", default="eng", help="Tesseract language(s), e.g. eng+deu")
    p.add_argument("-f", "--force-ocr", action="store_true", help="OCR every page")
    p.add_argument("-m", "--metadata", action="store_true", help="print metadata before the text")
    p.add_argument("-d", "--dpi", type=int, default=300, help="OCR render resolution")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="report each page's OCR decision and confidence on stderr")
    return p


def _pdf_ocr(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    _need_inputs(parser, args)
    opts = ExtractOptions(ocr=OcrMode.FORCE if args.force_ocr else OcrMode.AUTO,
                          lang=args.lang, dpi=args.dpi, max_memory_mb=TOOL_MAX_MEMORY_MB)
    _check_ocr(opts)
    args.print_confidence = True
    return emit(run_inputs(args.inputs, opts, args.workers), args, opts, "cllm_pdf_ocr")


def pdf_ocr_main(argv: Sequence[str] | None = None) -> int:
    parser = _pdf_ocr_parser()
    return _main("cllm_pdf_ocr", parser, argv, _pdf_ocr)
