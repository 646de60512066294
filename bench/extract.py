"""Benchmark extraction: ours next to the bare libraries, measured side by side in one run.

    python bench/extract.py [FOLDER] [--text-pages 300] [--ocr-pages 4] [--dpi 300] [--runs 3]

FOLDER: PDFs to extract (default: generate --text-pages pages of text PDFs). OCR is measured
on generated scans (image-only PDFs). Prints, as medians over --runs:
  text: our extract_file (OCR decision on, auto mode) vs a bare PyMuPDF `page.get_text()` loop
  OCR:  our extract_file at --dpi vs bare `pytesseract.image_to_string` of the page rendered at
        the same dpi (both with OMP_THREAD_LIMIT=1, which our workers set; see docproc/ocr.py)
  workers: the whole extract stage (pool, parts on disk) with 1 worker vs 2
Targets: text >= 0.85x bare; OCR >= 0.9x bare; 2 workers >= 1.5x one.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ["OMP_THREAD_LIMIT"] = "1"

WORDS = ("the of and to in is that for it as was with be by on not this are or from at which "
         "have an they you were their has been would when will more if no out so what up about "
         "into than them can only other new some could time these two may then first any now "
         "such like over even most made after also many before must through back years where "
         "much way well down should because each just those people how little state good very "
         "make world still own see work long get here between both life being under never day "
         "same another know while last might great old year off come since against go right "
         "used take three system data model page table value file device server network").split()


def _paragraph(rnd: random.Random, words: int) -> str:
    text = " ".join(rnd.choice(WORDS) for _ in range(words))
    return text.capitalize() + "."


def generate_text_pdfs(folder: Path, pages: int, pages_per_pdf: int = 10) -> list[Path]:
    """Manual-like PDFs: a running header, four paragraphs, a page number; ~450 words a page."""
    import pymupdf

    rnd = random.Random(0)
    paths = []
    for start in range(0, pages, pages_per_pdf):
        doc = pymupdf.open()
        for n in range(start, min(pages, start + pages_per_pdf)):
            page = doc.new_page()
            page.insert_text((72, 50), "Benchmark Manual - Chapter 3", fontsize=9)
            body = "\n\n".join(_paragraph(rnd, 110) for _ in range(4))
            page.insert_textbox(pymupdf.Rect(72, 72, 540, 740), body, fontsize=10)
            page.insert_text((300, 780), str(n + 1), fontsize=9)
        path = folder / f"text-{start // pages_per_pdf:04d}.pdf"
        doc.save(path)
        paths.append(path)
    return paths


def generate_scans(folder: Path, pages: int, dpi: int) -> list[Path]:
    """One-page image-only PDFs (rendered at `dpi`, as a scanner would)."""
    import pymupdf

    rnd = random.Random(1)
    paths = []
    for n in range(pages):
        text = pymupdf.open()
        page = text.new_page()
        body = "\n\n".join(_paragraph(rnd, 60) for _ in range(4))
        page.insert_textbox(pymupdf.Rect(72, 72, 540, 740), body, fontsize=11)
        pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
        scan = pymupdf.open()
        scan.new_page().insert_image(scan[0].rect, stream=pix.tobytes("png"))
        path = folder / f"scan-{n:03d}.pdf"
        scan.save(path)
        paths.append(path)
    return paths


def count_pages(paths: list[Path]) -> int:
    import pymupdf

    return sum(pymupdf.open(p).page_count for p in paths)


def bare_text(paths: list[Path]) -> None:
    import pymupdf

    for path in paths:
        with pymupdf.open(path) as doc:
            for page in doc:
                page.get_text()


def ours(paths: list[Path], dpi: int) -> None:
    from docproc.document import extract_file
    from docproc.options import ExtractOptions

    opts = ExtractOptions(dpi=dpi)
    for path in paths:
        extract_file(path, opts)


def bare_ocr(paths: list[Path], dpi: int) -> None:
    import pymupdf
    import pytesseract
    from PIL import Image

    for path in paths:
        with pymupdf.open(path) as doc:
            for page in doc:
                pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
                img = Image.frombytes("L", (pix.width, pix.height), pix.samples)
                pytesseract.image_to_string(img, config=f"--psm 3 --dpi {dpi}")


def stage_rate(paths: list[Path], workers: int, dpi: int, work: Path) -> tuple[float, float]:
    """(pages/s, CPU s a page) of the extract stage (pool, parts), workers' CPU included."""
    from docproc.extract import extract_all
    from pipeline.config import build_config, replace
    from pipeline.ingest import ingest_paths
    from pipeline.layout import DataRoot

    root = DataRoot.at(work / f"root-{paths[0].stem}")
    cfg = replace(build_config([]), "extract", workers=workers, dpi=dpi)
    if not root.raw_index.is_file():
        ingest_paths(paths, cfg, root, progress=False)
    shutil.rmtree(root.docs, ignore_errors=True)
    stats: list = []
    _, cpu = timed(lambda: stats.append(extract_all(cfg, root, progress=False)))
    assert stats[0].n_failed == 0, stats[0].summary()
    return stats[0].units / stats[0].seconds, cpu / stats[0].units


def _spin(n: int) -> None:
    x = 0
    for i in range(n):
        x += i


def parallel_capacity(runs: int, n: int = 20_000_000) -> float:
    """How much more work 2 busy processes get done than 1, on this machine right now.

    The cores are shared: this is the ceiling the 2-worker figures are measured under.
    """
    import multiprocessing

    def burst(k: int) -> float:
        procs = [multiprocessing.Process(target=_spin, args=(n,)) for _ in range(k)]
        start = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        return time.perf_counter() - start

    ratios = [2 * burst(1) / burst(2) for _ in range(runs)]
    return statistics.median(ratios)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its finished children) of fn()."""
    t0, p0, c0 = time.perf_counter(), time.process_time(), os.times()
    fn()
    t1, p1, c1 = time.perf_counter(), time.process_time(), os.times()
    children = (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)
    return t1 - t0, (p1 - p0) + children  # children: Tesseract


def side_by_side(label: str, pages: int, a: Callable[[], object], b: Callable[[], object],
                 runs: int, names: tuple[str, str]) -> None:
    """Run a and b alternately `runs` times; print median pages/s of each and their ratio.

    Wall-clock rates are the figures; the CPU-time ratio is printed beside them because the
    2 cores here are shared, and CPU time is what another process's load disturbs least.
    """
    wall: dict[str, list[float]] = {"a": [], "b": []}
    cpu: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(runs):
        for key, fn in (("a", a), ("b", b)):
            w, c = timed(fn)
            wall[key].append(pages / w)
            cpu[key].append(pages / c)
    ma, mb = statistics.median(wall["a"]), statistics.median(wall["b"])
    ca, cb = statistics.median(cpu["a"]), statistics.median(cpu["b"])
    print(f"{label:5s} {names[0]}: {ma:8.2f} pages/s   {names[1]}: {mb:8.2f} pages/s   "
          f"ratio {ma / mb:.2f}x   (CPU time: {ca:.2f} vs {cb:.2f} pages/CPU-s, ratio "
          f"{ca / cb:.2f}x; wall runs {', '.join(f'{r:.1f}' for r in wall['a'])} | "
          f"{', '.join(f'{r:.1f}' for r in wall['b'])})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", nargs="?", type=Path, help="PDFs to extract (default: generated)")
    # 3000: with a few hundred, a stage run lasts ~0.2 s and the fixed costs (starting the
    # workers, the part write) hide how the work scales with workers
    p.add_argument("--text-pages", type=int, default=3000, help="pages to generate")
    p.add_argument("--ocr-pages", type=int, default=4, help="scanned pages to OCR")
    p.add_argument("--dpi", type=int, default=300)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--skip-workers", action="store_true", help="no 1-vs-2-worker comparison")
    args = p.parse_args()

    from docproc.ocr import tesseract_version
    from docproc.pdf import pymupdf_version

    with tempfile.TemporaryDirectory(prefix="cllm-bench-") as tmp:
        work = Path(tmp)
        if args.folder:
            texts = sorted(args.folder.rglob("*.pdf"))
        else:
            (work / "text").mkdir()
            texts = generate_text_pdfs(work / "text", args.text_pages)
        (work / "scans").mkdir()
        scans = generate_scans(work / "scans", args.ocr_pages, args.dpi)
        n_text, n_scan = count_pages(texts), len(scans)
        print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{pymupdf_version()}, tesseract {tesseract_version()}, {os.cpu_count()} cores; "
              f"{len(texts)} PDFs / {n_text} text pages, {n_scan} scanned pages at "
              f"{args.dpi} dpi; medians of {args.runs} runs")
        ours(texts[:1], args.dpi)  # warm imports and caches for both sides
        bare_text(texts[:1])
        side_by_side("text", n_text, lambda: ours(texts, args.dpi), lambda: bare_text(texts),
                     args.runs, ("ours", "bare get_text"))
        side_by_side("ocr", n_scan, lambda: ours(scans, args.dpi),
                     lambda: bare_ocr(scans, args.dpi), args.runs,
                     ("ours", "bare image_to_string"))
        if not args.skip_workers:
            print(f"machine: 2 busy processes do {parallel_capacity(args.runs):.2f}x the work "
                  "of one right now (the ceiling for the 2-worker ratios below)")
            for label, paths in (("text", texts), ("ocr", scans)):
                one, two = [], []
                for _ in range(args.runs):  # alternated, so both see the same machine load
                    one.append(stage_rate(paths, 1, args.dpi, work))
                    two.append(stage_rate(paths, 2, args.dpi, work))
                m1, m2 = (statistics.median(r for r, _ in x) for x in (one, two))
                c1, c2 = (statistics.median(c for _, c in x) for x in (one, two))
                print(f"stage {label:4s} 1 worker: {m1:8.2f} pages/s   2 workers: {m2:8.2f} "
                      f"pages/s   ratio {m2 / m1:.2f}x   (CPU a page: {c1 * 1000:.1f} vs "
                      f"{c2 * 1000:.1f} ms; runs: {', '.join(f'{r:.1f}' for r, _ in one)} | "
                      f"{', '.join(f'{r:.1f}' for r, _ in two)})")
        print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
