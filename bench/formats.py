"""Benchmark the new formats and Markdown mode: ours next to the bare peers, in one run.

    python bench/formats.py [--office DIR] [--pdf FILE ...] [--runs 3] [--smoke] [--out PATH]

Sections (each a median of --runs interleaved runs on the same files, one process, one clock):
  big:      one 3000-page PDF with the default settings (no page cap in the way) vs a bare
            PyMuPDF `page.get_text()` loop.
  markdown: generated manual pages with known ruled tables: our text mode vs our Markdown
            mode (target: Markdown >= 0.5x text's pages/s), and pymupdf4llm.to_markdown (its
            default mode) on a few of them; the share of table cells each recovers in the
            right row and column. On --pdf files (real ones): both modes' pages/s and the
            word-bag F1 of Markdown against text (target >= 0.98).
  office:   .docx/.pptx files (--office DIR, e.g. python-docx's and python-pptx's test files;
            default: generated ones): our extract_file (text mode) vs markitdown (--markitdown-
            python: its own venv) vs the bare library walking paragraphs, tables, headers and
            notes. Whole processes (bench/formats_office.py): per extension and round, one
            process per side converts all the files, timed start to exit by this process's
            perf_counter (imports and start-up included, as a user running it pays them),
            rounds interleaved, medians; each process's own loop seconds are kept too. Words
            per file counted the same on every side (office_words: Markdown punctuation,
            comments, images and their alt text left out); files/s, files that give text,
            files where we get fewer words than each peer.
Writes bench/results/formats.json (--out: elsewhere). --smoke: a few pages and files, one run
(seconds), no results file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]  # the repo; formatkit's makers
RESULTS = HERE / "results" / "formats.json"
os.environ["OMP_THREAD_LIMIT"] = "1"

from formatkit import (  # noqa: E402
    MARKUP,
    docx_bytes,
    pptx_bytes,
    table_pdf_bytes,
    word_bag_f1,
)

from docproc.document import extract_file  # noqa: E402
from docproc.options import ExtractOptions  # noqa: E402

TEXT = ExtractOptions(ocr="never")
MARKDOWN = ExtractOptions(ocr="never", format="markdown")


def interleaved(runs: int, work: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Seconds of each piece of work, run in turn `runs` times (both see the same load)."""
    seconds: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(runs):
        for name, fn in work.items():
            t0 = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - t0)
    return seconds


def rates(units: int, seconds: dict[str, list[float]]) -> dict[str, float]:
    return {name: units / statistics.median(s) for name, s in seconds.items()}


# --- big: one long PDF ----------------------------------------------------------------------

def manual(path: Path, pages: int) -> Path:
    import pymupdf

    doc = pymupdf.open()
    for n in range(1, pages + 1):
        page = doc.new_page()
        page.insert_textbox(pymupdf.Rect(72, 72, 540, 740), f"Chapter {n // 100}, page {n}. "
                            + "The reference manual describes every function in detail. " * 12,
                            fontsize=10)
    doc.save(path)
    return path


def bare_get_text(path: Path) -> str:
    import pymupdf

    with pymupdf.open(path) as doc:
        return "".join(page.get_text() for page in doc)


def bench_big(pages: int, runs: int, work: Path) -> dict:
    path = manual(work / "manual.pdf", pages)
    seconds = interleaved(runs, {"ours": lambda: extract_file(path, ExtractOptions()),
                                 "bare": lambda: bare_get_text(path)})
    got = rates(pages, seconds)
    print(f"big      {pages}-page PDF, default settings: ours {got['ours']:.0f} pages/s, bare "
          f"get_text {got['bare']:.0f} pages/s, ratio {got['ours'] / got['bare']:.2f}x")
    return {"pages": pages, "pages_per_s": got, "ratio": got["ours"] / got["bare"],
            "seconds": seconds}


# --- markdown ---------------------------------------------------------------------------------

TABLE_ROW = re.compile(r"^\|(.*)\|\s*$")


def markdown_tables(md: str) -> list[list[list[str]]]:
    """The GFM tables of a Markdown text, as rows of cells (the rule row left out)."""
    tables, current = [], []
    for line in md.splitlines() + [""]:
        m = TABLE_ROW.match(line.strip())
        if m and not re.fullmatch(r"[\s|:-]*", m.group(1)):
            current.append([c.strip() for c in m.group(1).split("|")])
        elif not m and current:
            tables.append(current)
            current = []
    return tables


def cells_recovered(md: str, want: list[list[list[str]]]) -> float:
    """Share of the known cells found in the right row and column of the table found for
    their page's (the first found table with their header row)."""
    found = markdown_tables(md)
    right = total = 0
    for rows in want:
        total += sum(len(row) for row in rows)
        match = next((t for t in found if t and t[0] == rows[0] and t[1:2] and
                      t[1][0] == rows[1][0]), None)
        if match is None:
            continue
        found.remove(match)
        right += sum(1 for r, row in enumerate(rows) for c, cell in enumerate(row)
                     if r < len(match) and c < len(match[r]) and match[r][c] == cell)
    return right / total if total else 0.0


def pymupdf4llm_markdown(path: Path) -> str:
    import pymupdf4llm

    return pymupdf4llm.to_markdown(str(path), show_progress=False)


def bench_markdown(pages: int, peer_pages: int, runs: int, pdfs: list[Path], work: Path
                   ) -> dict:
    import contextlib
    import io

    data, tables = table_pdf_bytes(pages)
    path = work / "tables.pdf"
    path.write_bytes(data)
    seconds = interleaved(runs, {"text": lambda: extract_file(path, TEXT),
                                 "markdown": lambda: extract_file(path, MARKDOWN)})
    got = rates(pages, seconds)
    ours_md = extract_file(path, MARKDOWN).text
    peer_data, peer_tables = table_pdf_bytes(peer_pages)
    peer_path = work / "tables-peer.pdf"
    peer_path.write_bytes(peer_data)
    with contextlib.redirect_stdout(io.StringIO()):  # its parser prints its own messages
        pymupdf4llm_markdown(peer_path)  # warm: it loads its layout model once
        peer_s = interleaved(runs, {"pymupdf4llm": lambda: pymupdf4llm_markdown(peer_path),
                                    "ours": lambda: extract_file(peer_path, MARKDOWN)})
        peer_md = pymupdf4llm_markdown(peer_path)
    peer = rates(peer_pages, peer_s)
    ours_cells = cells_recovered(ours_md, tables)
    peer_cells = cells_recovered(peer_md, peer_tables)
    ours_peer_cells = cells_recovered(extract_file(peer_path, MARKDOWN).text, peer_tables)
    print(f"markdown {pages} generated pages: text {got['text']:.0f} pages/s, markdown "
          f"{got['markdown']:.0f} pages/s, ratio {got['markdown'] / got['text']:.2f}x "
          "(target >= 0.5x)")
    print(f"markdown {peer_pages} pages: pymupdf4llm {peer['pymupdf4llm']:.1f} pages/s, ours "
          f"{peer['ours']:.0f} pages/s; table cells in the right row and column: ours "
          f"{ours_cells:.1%} ({pages} pages), {ours_peer_cells:.1%} ({peer_pages} pages), "
          f"pymupdf4llm {peer_cells:.1%}")
    real = [bench_real_pdf(pdf, runs) for pdf in pdfs]
    return {"pages": pages, "pages_per_s": got, "ratio": got["markdown"] / got["text"],
            "seconds": seconds, "peer_pages": peer_pages, "peer_pages_per_s": peer,
            "peer_seconds": peer_s, "cells_recovered": {"ours": ours_cells,
                                                        "ours_on_peer_pages": ours_peer_cells,
                                                        "pymupdf4llm": peer_cells},
            "real_pdfs": real}


def bench_real_pdf(path: Path, runs: int) -> dict:
    text_doc = extract_file(path, TEXT)
    seconds = interleaved(runs, {"text": lambda: extract_file(path, TEXT),
                                 "markdown": lambda: extract_file(path, MARKDOWN)})
    got = rates(text_doc.pages, seconds)
    f1 = word_bag_f1(MARKUP.sub("", extract_file(path, MARKDOWN).text), text_doc.text)
    print(f"markdown {path.name} ({text_doc.pages} pages): text {got['text']:.0f} pages/s, "
          f"markdown {got['markdown']:.0f} pages/s, ratio {got['markdown'] / got['text']:.2f}x;"
          f" word-bag F1 markdown vs text {f1:.4f} (target >= 0.98)")
    return {"file": path.name, "pages": text_doc.pages, "pages_per_s": got,
            "ratio": got["markdown"] / got["text"], "word_bag_f1": f1, "seconds": seconds}


# --- office -----------------------------------------------------------------------------------

MD_NOISE = re.compile(  # what the tools add that is not the file's text
    r"<!--.*?-->"  # markitdown's "<!-- Slide number: 3 -->"
    r"|</?[A-Za-z][^>\n]*>"  # HTML tags in its Markdown (mammoth's <u>)
    r"|!\[[^\]]*\]\([^)]*\)"  # images, with their alt text
    r"|\[unsupported chart\]"
    r"|^#* ?(?:Notes|Chart)\b:?"  # its "### Notes:", "### Chart: title"; our "Notes: "
    r"|^\| Category(?= \|)|(?<=\| )None(?= \|)"  # its chart tables' header, empty values
    r"|^ *(?:[-*+]|\d+[.)]) ",  # list markers: "1." is the list's numbering, not text
    re.MULTILINE | re.DOTALL)
MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
WORD = re.compile(r"[^\W_]+(?:['’.-][^\W_]+)*")  # letters/digits; inner ' . - kept ("4.3")


def office_words(text: str) -> int:
    """Words of a text, counted the same way on every side: MD_NOISE dropped, a link counted
    by its text, then runs of letters and digits (Markdown's | # * _ ` > and escapes, table
    rules, are not words)."""
    return len(WORD.findall(MD_LINK.sub(r"\1", MD_NOISE.sub(" ", text))))


def office_files(folder: Path | None, work: Path, n: int) -> list[Path]:
    if folder is not None:
        return sorted(p for p in folder.iterdir() if p.suffix in (".docx", ".pptx"))
    paths = []
    for i in range(n):
        for ext, make in (("docx", lambda i=i: docx_bytes(sections=1 + i % 3)),
                          ("pptx", lambda i=i: pptx_bytes(slides=1 + i % 4))):
            path = work / f"gen-{i}.{ext}"
            path.write_bytes(make())
            paths.append(path)
    return paths


def convert_all(python: str, side: str, files: list[Path], work: Path) -> tuple[float, dict]:
    """Seconds of one whole process of `side` converting `files` (start to exit), its answer."""
    out = work / f"office-{side}.json"
    t0 = time.perf_counter()
    run = subprocess.run([python, str(HERE / "formats_office.py"), side, str(out),
                          *map(str, files)], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if run.returncode:
        sys.exit(f"{python} bench/formats_office.py {side} failed:\n{run.stderr[-2000:]}")
    return seconds, json.loads(out.read_text(encoding="utf-8"))


def office_sides(markitdown_python: str | None) -> dict[str, str]:
    """Each side's interpreter: ours and the bare walk in this one, markitdown in its venv
    (or in this one when it has markitdown)."""
    import importlib.util

    sides = {"ours": sys.executable, "bare": sys.executable}
    if markitdown_python or importlib.util.find_spec("markitdown") is not None:
        sides["markitdown"] = markitdown_python or sys.executable
    return sides


def bench_office(files: list[Path], runs: int, sides: dict[str, str], work: Path) -> dict:
    """Per extension: `runs` interleaved rounds, each one process per side over all files
    (the sides' order rotated from round to round)."""
    out = {"sides": list(sides), "load_average_before": os.getloadavg()}
    for ext in ("docx", "pptx"):
        group = [p for p in files if p.suffix == f".{ext}"]
        if not group:
            continue
        seconds: dict[str, list[float]] = {side: [] for side in sides}
        loop: dict[str, list[float]] = {side: [] for side in sides}
        answers: dict[str, dict] = {}
        order = list(sides)
        for n in range(runs):  # each round in another order: no side always runs first
            for side in order[n % len(order):] + order[:n % len(order)]:
                s, answers[side] = convert_all(sides[side], side, group, work)
                seconds[side].append(s)
                loop[side].append(answers[side]["loop_seconds"])
        words = {side: [office_words(t) for t in a["texts"]] for side, a in answers.items()}
        peers = [side for side in sides if side != "ours"]
        short = {peer: [{"file": p.name, "ours": w, peer: pw}
                        for p, w, pw in zip(group, words["ours"], words[peer], strict=True)
                        if w < pw] for peer in peers}
        got, in_loop = rates(len(group), seconds), rates(len(group), loop)
        with_text = {side: sum(w > 0 for w in ws) for side, ws in words.items()}
        print(f"office   {len(group)} .{ext}, whole processes: " + ", ".join(
            f"{side} {got[side]:.0f} files/s ({in_loop[side]:.0f} in its loop), text from "
            f"{with_text[side]}, {sum(words[side])} words" for side in sides))
        for peer in peers:
            print(f"office   .{ext}: fewer words than {peer} in {len(short[peer])} files "
                  f"{[(d['file'], d['ours'], d[peer]) for d in short[peer]][:8]}")
        out[ext] = {"files": len(group), "files_per_s": got, "files_per_s_in_loop": in_loop,
                    "with_text": with_text, "words": {s: sum(w) for s, w in words.items()},
                    "fewer_words": short, "seconds": seconds, "loop_seconds": loop,
                    "per_file_words": {p.name: {s: words[s][i] for s in sides}
                                       for i, p in enumerate(group)},
                    "errors": {s: a["errors"] for s, a in answers.items()},
                    "versions": {s: a["version"] for s, a in answers.items()}}
    out["load_average_after"] = os.getloadavg()
    return out


def office_rows(office: dict, folder: str) -> list[dict]:
    """The README's Office rows: ours next to markitdown where it ran, else the bare walk."""
    rows = []
    for ext in ("docx", "pptx"):
        if ext not in office:
            continue
        r = office[ext]
        peer = "markitdown" if "markitdown" in r["files_per_s"] else "bare"
        fps, text, words = r["files_per_s"], r["with_text"], r["words"]
        rows.append({"benchmark": f".{ext}, {folder}, whole processes",
                     "ours": f"{fps['ours']:.0f} files/s, text from {text['ours']} of "
                             f"{r['files']}, {words['ours']} words",
                     "peer": f"{fps[peer]:.0f} files/s ({peer}), {text[peer]}, {words[peer]} "
                             f"words; fewer words than {peer} in {len(r['fewer_words'][peer])}"
                             " files",
                     "ratio": f"{fps['ours'] / fps[peer]:.2f}x",
                     "target": "≥ 1x, at least as many words from each file"
                               if peer == "markitdown" else "(markitdown not run)"})
    return rows


def environment() -> dict:
    import importlib.metadata
    import platform
    from datetime import UTC, datetime

    from common import cpu_model  # one reading of /proc/cpuinfo for every benchmark

    from docproc.pdf import pymupdf_version

    versions = {"python": platform.python_version(), "pymupdf": pymupdf_version()}
    for name in ("pymupdf4llm", "python-docx", "python-pptx"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": cpu_model(),
            "cores": os.cpu_count(), "threads": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "versions": versions}


def table(results: dict) -> list[dict]:
    """The README's rows, from the figures."""
    big, md = results["big"], results["markdown"]
    rows = [{"benchmark": f"one {big['pages']}-page PDF, default settings",
             "ours": f"{big['pages_per_s']['ours']:.0f} pages/s",
             "peer": f"{big['pages_per_s']['bare']:.0f} pages/s (`page.get_text()` loop)",
             "ratio": f"{big['ratio']:.2f}x", "target": "about 1x, not refused"}]
    for pdf in md["real_pdfs"]:
        rows.append({"benchmark": f"Markdown vs text mode, {pdf['file']} ({pdf['pages']} pages)",
                     "ours": f"{pdf['pages_per_s']['markdown']:.0f} pages/s, word-bag F1 "
                             f"{pdf['word_bag_f1']:.4f}",
                     "peer": f"{pdf['pages_per_s']['text']:.0f} pages/s (our text mode)",
                     "ratio": f"{pdf['ratio']:.2f}x", "target": "≥ 0.5x, F1 ≥ 0.98"})
    cells, peer = md["cells_recovered"], md["peer_pages_per_s"]
    rows.append({"benchmark": f"Markdown vs pymupdf4llm, {md['peer_pages']} generated pages with "
                              "ruled tables",
                 "ours": f"{peer['ours']:.0f} pages/s, {cells['ours_on_peer_pages']:.0%} of table "
                         "cells",
                 "peer": f"{peer['pymupdf4llm']:.1f} pages/s, {cells['pymupdf4llm']:.0%}",
                 "ratio": f"{peer['ours'] / peer['pymupdf4llm']:.1f}x",
                 "target": "at least as complete"})
    return rows + office_rows(results["office"], Path(results["office_folder"]).name)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--office", type=Path, help="a folder of .docx/.pptx (default: generated)")
    p.add_argument("--pdf", type=Path, nargs="*", default=[], help="real PDFs for the F1")
    p.add_argument("--big-pages", type=int, default=3000)
    p.add_argument("--table-pages", type=int, default=300)
    p.add_argument("--peer-pages", type=int, default=20, help="pages pymupdf4llm converts")
    p.add_argument("--markitdown-python", metavar="PYTHON",
                   help="run markitdown's Office side in this interpreter (a venv that has "
                        "markitdown[docx,pptx]); default: here if importable, else not run")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="a few pages and files, one run")
    p.add_argument("--out", type=Path, help=f"results file (default {RESULTS}; --smoke: none)")
    args = p.parse_args()
    if args.smoke:
        args.big_pages, args.table_pages, args.peer_pages, args.runs = 100, 10, 2, 1
    env = environment()
    print(f"{env['versions']['pymupdf']}, {env['cpu']}, {env['threads']} threads, load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; medians of {args.runs} runs "
          "(a shared, loaded machine: provisional figures)")
    with tempfile.TemporaryDirectory(prefix="cllm-bench-formats-") as tmp:
        work = Path(tmp)
        results = {
            "benchmark": "formats", "mode": "smoke" if args.smoke else "full",
            "command": sys.argv, "runs": args.runs, "smoke": args.smoke,
            "load_average": os.getloadavg(),
            "big": bench_big(args.big_pages, args.runs, work),
            "markdown": bench_markdown(args.table_pages, args.peer_pages, args.runs, args.pdf,
                                       work),
            "office": bench_office(office_files(args.office, work, 3 if args.smoke else 20),
                                   args.runs, office_sides(args.markitdown_python), work),
            "office_folder": str(args.office) if args.office else "generated files",
        }
    results["environment"] = env
    results["table"] = table(results)
    out = args.out or (None if args.smoke else RESULTS)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
