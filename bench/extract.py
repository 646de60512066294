"""Benchmark extraction: ours next to the bare libraries, whole processes, one clock.

    python bench/extract.py [--pdf PATH ...] [--text-pages 3000] [--ocr-pages 20] [--dpi 300]
                            [--runs 3] [--skip-workers] [--smoke | --quick] [--out PATH]

Sections (medians of --runs interleaved runs, wall time and CPU time side by side: the 2
cores here are shared, and CPU time is what another process's load disturbs least):
  text:     `cllm_pdf_extract --workers 1 -o DIR FILES` against a bare PyMuPDF loop
            (`page.get_text()` of every page, each file's text written to DIR), both whole
            processes started the same way, on real PDFs (--pdf: files or folders, e.g.
            /usr/share/doc) and on --text-pages generated ones. Target >= 0.85x.
  decision: the same with `-r` (the per-page OCR decision made on every page) on the real
            files where it OCRs no page: what the OCR probes and decision cost.
  ocr:      our extract_file (auto mode: the pages have no text layer) against bare Tesseract
            handed the same image format (the page rendered at --dpi, saved as uncompressed
            TIFF, `pytesseract.image_to_string` of that file, same --psm and --dpi), both with
            OMP_THREAD_LIMIT=1; pages/s and the character error rate against the pages' text.
            Pages rendered from the real PDFs (their text layer is the truth) or, without
            --pdf, generated. Target >= 0.9x.
  workers:  the extract stage (pool, parts on disk) with 2 workers and with 1, reported as
            our stage's parallel efficiency (speedup / workers); the ceiling is what 2 busy
            processes get done on this machine right now. Target >= 0.75 (1.5x on 2).
Writes bench/results/extract.json (--out: elsewhere). --smoke: tiny, one run, no results
file (seconds). --quick: fewer pages and runs (what `make bench` runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "extract.json"
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


def _scan_of(page: object, dpi: int, path: Path) -> Path:
    """A one-page image-only PDF of `page` rendered at `dpi` (as a scanner would)."""
    import pymupdf

    pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
    scan = pymupdf.open()
    scan.new_page(width=page.rect.width, height=page.rect.height).insert_image(
        pymupdf.Rect(0, 0, page.rect.width, page.rect.height), stream=pix.tobytes("png"))
    scan.save(path)
    return path


def generated_scans(folder: Path, pages: int, dpi: int) -> list[tuple[Path, str]]:
    """(scan, its text) of `pages` generated pages of prose."""
    import pymupdf

    rnd = random.Random(1)
    scans = []
    for n in range(pages):
        doc = pymupdf.open()
        page = doc.new_page()
        body = "\n\n".join(_paragraph(rnd, 60) for _ in range(4))
        page.insert_textbox(pymupdf.Rect(72, 72, 540, 740), body, fontsize=11)
        scans.append((_scan_of(page, dpi, folder / f"scan-{n:03d}.pdf"), body))
    return scans


def real_scans(folder: Path, pdfs: list[Path], pages: int, dpi: int) -> list[tuple[Path, str]]:
    """(scan, its text layer) of `pages` pages of the real PDFs: the middle page of each in
    turn, then the next ones, so that every producer is in the set; pages with little text
    (title pages, figures) are passed over."""
    import pymupdf

    docs = [pymupdf.open(p) for p in pdfs]
    scans: list[tuple[Path, str]] = []
    step = 0
    while len(scans) < pages and step < max(d.page_count for d in docs):
        for doc in docs:
            number = doc.page_count // 2 + step
            if len(scans) == pages or number >= doc.page_count:
                continue
            text = doc[number].get_text()
            if len(text.split()) >= 150:
                path = folder / f"scan-{len(scans):03d}.pdf"
                scans.append((_scan_of(doc[number], dpi, path), text))
        step += 1
    for doc in docs:
        doc.close()
    return scans


def pdf_files(paths: list[Path]) -> list[Path]:
    """The PDFs named or under the folders named, each real file once."""
    found: dict[Path, Path] = {}
    for path in paths:
        for pdf in sorted(path.rglob("*.pdf")) if path.is_dir() else [path]:
            found.setdefault(pdf.resolve(), pdf)
    return list(found.values())


def describe(paths: list[Path]) -> list[dict]:
    import pymupdf

    out = []
    for path in paths:
        with pymupdf.open(path) as doc:
            meta = doc.metadata or {}
            out.append({"file": str(path), "pages": doc.page_count,
                        "producer": meta.get("producer", ""), "creator": meta.get("creator", "")})
    return out


# --- whole processes --------------------------------------------------------------------------

def bare_child(out: Path, paths: list[str]) -> None:
    """The bare peer, run as its own process: every page's `get_text()`, each file's text
    written to `out`. It keeps PyMuPDF 2's layout analyser and pymupdf4llm from loading, as
    our tools do (1.1 s of its import, which text extraction never uses): the strongest bare
    loop."""
    sys.modules.update(dict.fromkeys(("pymupdf.layout", "pymupdf4llm")))
    import pymupdf

    for path in paths:
        with pymupdf.open(path) as doc:
            text = "\f".join(page.get_text() for page in doc)
        (out / (Path(path).stem + ".txt")).write_text(text, encoding="utf-8")


def run_process(argv: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of a whole process, start to exit; its output must say nothing went
    wrong (exit status 0)."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: no pipe to fill and block
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            message = err.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {message}")
    return wall, usage.ru_utime + usage.ru_stime


def our_tool() -> str:
    tool = Path(sys.executable).with_name("cllm_pdf_extract")
    return str(tool) if tool.exists() else shutil.which("cllm_pdf_extract") or "cllm_pdf_extract"


def process_pair(label: str, pages: int, files: list[Path], runs: int, work: Path,
                 flags: tuple[str, ...] = ()) -> dict:
    """Our tool and the bare loop, alternately, `runs` times each, as whole processes."""
    out = work / "out"
    names = [str(f) for f in files]
    sides = {
        "ours": [our_tool(), "--workers", "1", *flags, "-o", str(out / "ours"), *names],
        "bare": [sys.executable, str(Path(__file__).resolve()), "--bare-child",
                 str(out / "bare"), *names],
    }
    wall: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(runs):
        for side, argv in sides.items():
            shutil.rmtree(out / side, ignore_errors=True)
            (out / side).mkdir(parents=True)
            w, c = run_process(argv)
            wall[side].append(w)
            cpu[side].append(c)
    return report(label, pages, wall, cpu, ("ours", "bare get_text"), target=0.85)


def report(label: str, units: int, wall: dict[str, list[float]], cpu: dict[str, list[float]],
           names: tuple[str, str], target: float, unit: str = "pages") -> dict:
    """Median rates of both sides, their ratio by wall time and by CPU time, printed."""
    ours_key, peer_key = list(wall)
    rate = {k: units / statistics.median(v) for k, v in wall.items()}
    cpu_rate = {k: units / statistics.median(v) for k, v in cpu.items()}
    ratio, cpu_ratio = rate[ours_key] / rate[peer_key], cpu_rate[ours_key] / cpu_rate[peer_key]
    print(f"{label:9s} {names[0]}: {rate[ours_key]:8.2f} {unit}/s   {names[1]}: "
          f"{rate[peer_key]:8.2f} {unit}/s   ratio {ratio:.2f}x   (CPU time: "
          f"{cpu_rate[ours_key]:.2f} vs {cpu_rate[peer_key]:.2f} {unit}/CPU-s, ratio "
          f"{cpu_ratio:.2f}x; target >= {target}x)", flush=True)
    return {"units": units, "unit": unit, "per_s": rate, "per_cpu_s": cpu_rate, "ratio": ratio,
            "cpu_ratio": cpu_ratio, "target": target, "wall_s": wall, "cpu_s": cpu}


def by_kind(paths: list[Path]) -> dict[str, list[Path]]:
    """The files by what the auto OCR decision makes of their pages: "text" (no page OCRed),
    "mixed", "image" (no text layer at all: nothing for a text loop to extract)."""
    from docproc.pdf import classify

    kinds: dict[str, list[Path]] = {"text": [], "mixed": [], "image": []}
    for path in paths:
        kinds[classify(path, str(path), 10**6)].append(path)
    return kinds


# --- OCR --------------------------------------------------------------------------------------

def ours_ocr(scans: list[Path], dpi: int, psm: int) -> list[str]:
    from docproc.document import extract_file
    from docproc.options import ExtractOptions

    opts = ExtractOptions(dpi=dpi, psm=psm)
    return [extract_file(path, opts).text for path in scans]


def bare_ocr(scans: list[Path], dpi: int, psm: int, work: Path) -> list[str]:
    """Bare Tesseract on the image format ours hands it: the page's gray render as an
    uncompressed TIFF file (pytesseract's own path for an image object writes a PNG)."""
    import pymupdf
    import pytesseract
    from PIL import Image

    texts = []
    image = work / "page.tif"
    for path in scans:
        with pymupdf.open(path) as doc:
            for page in doc:
                pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY, alpha=False)
                Image.frombytes("L", (pix.width, pix.height), pix.samples).save(
                    image, format="TIFF", dpi=(dpi, dpi))
                texts.append(pytesseract.image_to_string(str(image),
                                                         config=f"--psm {psm} --dpi {dpi}"))
    return texts


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall s, CPU s of this process and its finished children: Tesseract, result)."""
    t0, p0, c0 = time.perf_counter(), time.process_time(), os.times()
    result = fn()
    t1, p1, c1 = time.perf_counter(), time.process_time(), os.times()
    children = (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)
    return t1 - t0, (p1 - p0) + children, result


def character_error_rate(truths: list[str], texts: list[str]) -> float:
    """Edit distance over the characters of the truth, words joined by single spaces, all
    pages together (tests/test_extract_quality.py's banded distance, per page)."""
    from test_extract_quality import cer

    sizes = [len(" ".join(t.split())) for t in truths]
    return sum(cer(t, x) * n for t, x, n in zip(truths, texts, sizes, strict=True)) / sum(sizes)


def bench_ocr(scans: list[tuple[Path, str]], dpi: int, psm: int, runs: int, work: Path) -> dict:
    paths = [p for p, _ in scans]
    wall: dict[str, list[float]] = {"ours": [], "bare": []}
    cpu: dict[str, list[float]] = {"ours": [], "bare": []}
    texts: dict[str, list[str]] = {}
    for _ in range(runs):
        for side, fn in (("ours", lambda: ours_ocr(paths, dpi, psm)),
                         ("bare", lambda: bare_ocr(paths, dpi, psm, work))):
            w, c, texts[side] = timed(fn)
            wall[side].append(w)
            cpu[side].append(c)
    got = report("ocr", len(paths), wall, cpu, ("ours", "bare tesseract (TIFF)"), target=0.9)
    truths = [t for _, t in scans]
    got["cer"] = {side: character_error_rate(truths, texts[side]) for side in texts}
    got["dpi"], got["psm"], got["image_format"] = dpi, psm, "uncompressed TIFF, 8-bit gray"
    print(f"ocr       CER against the pages' text: ours {got['cer']['ours']:.2%}, bare "
          f"{got['cer']['bare']:.2%} ({len(paths)} pages at {dpi} dpi, psm {psm})", flush=True)
    return got


# --- workers ----------------------------------------------------------------------------------

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
    _, cpu, _ = timed(lambda: stats.append(extract_all(cfg, root, progress=False)))
    assert stats[0].n_failed == 0, stats[0].summary()
    return stats[0].units / stats[0].seconds, cpu / stats[0].units


def _spin(n: int) -> None:
    x = 0
    for i in range(n):
        x += i


def parallel_capacity(runs: int, n: int = 20_000_000) -> float:
    """How much more work 2 busy processes get done than 1, on this machine right now (the
    cores are shared): the ceiling the 2-worker speedup is measured under."""
    import multiprocessing

    def burst(k: int) -> float:
        procs = [multiprocessing.Process(target=_spin, args=(n,)) for _ in range(k)]
        start = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        return time.perf_counter() - start

    return statistics.median(2 * burst(1) / burst(2) for _ in range(runs))


def bench_workers(sets: dict[str, list[Path]], dpi: int, runs: int, work: Path) -> dict:
    capacity = parallel_capacity(runs)
    print(f"workers   machine: 2 busy processes do {capacity:.2f}x the work of one right now "
          f"(the ceiling of the speedup below; efficiency ceiling {capacity / 2:.2f})")
    out: dict = {"machine_capacity_2_procs": capacity}
    for label, paths in sets.items():
        stage_rate(paths, 1, dpi, work)  # warm: the store ingested, the pool's imports cached
        one, two = [], []
        for _ in range(runs):  # alternated, so both see the same machine load
            one.append(stage_rate(paths, 1, dpi, work))
            two.append(stage_rate(paths, 2, dpi, work))
        r1, r2 = (statistics.median(r for r, _ in x) for x in (one, two))
        c1, c2 = (statistics.median(c for _, c in x) for x in (one, two))
        efficiency = r2 / r1 / 2
        print(f"workers   {label:4s} 1 worker: {r1:8.2f} pages/s   2 workers: {r2:8.2f} pages/s"
              f"   parallel efficiency (speedup / workers) {efficiency:.2f} (CPU a page: "
              f"{c1 * 1000:.1f} vs {c2 * 1000:.1f} ms; target >= 0.75)", flush=True)
        out[label] = {"pages_per_s": {"1": r1, "2": r2}, "speedup": r2 / r1,
                      "parallel_efficiency": efficiency, "cpu_s_per_page": {"1": c1, "2": c2},
                      "runs": {"1": one, "2": two}, "target_efficiency": 0.75}
    return out


# --- the results file -------------------------------------------------------------------------

def environment() -> dict:
    from common import cpu_model

    from docproc.ocr import tesseract_version
    from docproc.pdf import pymupdf_version

    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": cpu_model(),
            "cores": os.cpu_count(), "threads": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "pymupdf": pymupdf_version(), "tesseract": tesseract_version(),
            "omp_thread_limit": os.environ.get("OMP_THREAD_LIMIT"),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def table(results: dict) -> list[dict]:
    """The README's rows, from the figures (a row per pair)."""
    rows = []
    for key, name in (("text_real", "text extraction, real PDFs"),
                      ("text_generated", "text extraction, generated PDFs"),
                      ("decision_real", "text extraction with the OCR decision, real PDFs")):
        got = results.get(key)
        if got:
            rows.append({"benchmark": f"{name} ({got['units']} pages, whole processes)",
                         "ours": f"{got['per_s']['ours']:.0f} pages/s",
                         "peer": f"{got['per_s']['bare']:.0f} pages/s (`get_text()` loop)",
                         "ratio": f"{got['ratio']:.2f}x (CPU {got['cpu_ratio']:.2f}x)",
                         "target": "≥ 0.85x"})
    if results.get("ocr"):
        got = results["ocr"]
        rows.append({"benchmark": f"OCR, {got['units']} pages at {got['dpi']} dpi",
                     "ours": f"{got['per_s']['ours']:.2f} pages/s, CER {got['cer']['ours']:.2%}",
                     "peer": f"{got['per_s']['bare']:.2f} pages/s, CER {got['cer']['bare']:.2%}"
                             " (Tesseract on the same TIFF)",
                     "ratio": f"{got['ratio']:.2f}x", "target": "≥ 0.9x"})
    for label, got in (results.get("workers") or {}).items():
        if isinstance(got, dict):
            rows.append({"benchmark": f"extract stage {label}, 2 workers vs 1",
                         "ours": f"{got['pages_per_s']['2']:.1f} pages/s",
                         "peer": f"{got['pages_per_s']['1']:.1f} pages/s (our stage, 1 worker)",
                         "ratio": f"parallel efficiency {got['parallel_efficiency']:.2f}",
                         "target": "≥ 0.75"})
    return rows


def main() -> int:
    if sys.argv[1:2] == ["--bare-child"]:
        bare_child(Path(sys.argv[2]), sys.argv[3:])
        return 0
    sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]  # the repo; the CER
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pdf", type=Path, nargs="*", default=[],
                   help="real PDFs, or folders of them (e.g. /usr/share/doc)")
    # 3000: with a few hundred, a stage run lasts ~0.2 s and the fixed costs (starting the
    # workers, the part write) hide how the work scales with workers
    p.add_argument("--text-pages", type=int, default=3000, help="generated text pages")
    p.add_argument("--ocr-pages", type=int, default=20, help="pages to OCR")
    p.add_argument("--dpi", type=int, default=300)
    p.add_argument("--psm", type=int, default=3)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--skip-workers", action="store_true", help="no 2-workers-vs-1 section")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="tiny, one run, no results file")
    size.add_argument("--quick", action="store_true", help="fewer pages and runs")
    p.add_argument("--out", type=Path, help=f"results file (default {RESULTS})")
    args = p.parse_args()
    if args.smoke:
        args.text_pages, args.ocr_pages, args.dpi, args.runs = 20, 1, 100, 1
    elif args.quick:
        args.text_pages, args.ocr_pages, args.runs = 1000, 4, 1
    real = pdf_files(args.pdf)[:2] if args.smoke else pdf_files(args.pdf)
    env = environment()
    print(f"{env['cpu']}, {env['threads']} threads, load {env['load_avg_1m']}; {env['pymupdf']},"
          f" tesseract {env['tesseract']}; medians of {args.runs} runs (a shared, loaded "
          "machine: provisional figures)", flush=True)
    results: dict = {"benchmark": "extract", "mode": "smoke" if args.smoke else
                     "quick" if args.quick else "full", "command": sys.argv, "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="cllm-bench-extract-") as tmp:
        work = Path(tmp)
        (work / "text").mkdir()
        (work / "scans").mkdir()
        generated = generate_text_pdfs(work / "text", args.text_pages)
        if real:
            results["real_pdfs"] = describe(real)
            kinds = by_kind(real)
            text_set = kinds["text"] + kinds["mixed"]
            results["image_only_left_out"] = [str(p) for p in kinds["image"]]
            pages = sum(f["pages"] for f in describe(text_set))
            producers = sorted({f["producer"].split(" ")[0] for f in results["real_pdfs"]})
            print(f"real PDFs: {len(text_set)} files with a text layer, {pages} pages; "
                  f"producers {producers}; image-only, left out: {len(kinds['image'])}")
            results["text_real"] = process_pair("text real", pages, text_set, args.runs, work)
            plain_pages = sum(f["pages"] for f in describe(kinds["text"]))
            results["decision_real"] = process_pair("decision", plain_pages, kinds["text"],
                                                    args.runs, work, flags=("-r",))
            results["decision_real"]["left_out_needing_ocr"] = [str(p) for p in kinds["mixed"]]
        results["text_generated"] = process_pair("text gen", args.text_pages, generated,
                                                 args.runs, work)
        scans = (real_scans(work / "scans", real, args.ocr_pages, args.dpi) if real else
                 generated_scans(work / "scans", args.ocr_pages, args.dpi))
        ours_ocr([p for p, _ in scans[:1]], args.dpi, args.psm)  # warm: imports, caches
        results["ocr"] = bench_ocr(scans, args.dpi, args.psm, args.runs, work)
        if not args.skip_workers:
            sets = {"text": generated, "ocr": [p for p, _ in scans]}
            if args.smoke:  # the path kept working; an OCR pool's start is most of a smoke run
                del sets["ocr"]
            results["workers"] = bench_workers(sets, args.dpi, args.runs, work)
    results["environment"] = env
    results["table"] = table(results)
    out = args.out or (None if args.smoke else RESULTS)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
