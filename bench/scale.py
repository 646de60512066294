"""How cost grows with the data: every stage at 1x, 4x and 16x its input, and re-run unchanged.

    .venv/bin/python bench/scale.py                          # the issue's sizes (hours)
    .venv/bin/python bench/scale.py --quick | --smoke        # minutes | seconds
    .venv/bin/python bench/scale.py --stages extract,crawl --factors 1,4 --out /tmp/s.json
    .venv/bin/python bench/scale.py --stages clean --factors 16 --merge   # a long run in pieces

Stages (`--stages`, default all) and their units; the 1x size is `--base` (MB of text),
`--pdf-pages`, `--site-pages`:
  clean     MB   `clean_documents` (quality filters, exact and near dedup, its worker processes
                 at every size) over generated documents written as docs parts (untimed)
  tokenize  MB   `tokenize_dataset` after it: tokenizer training, encoding, shards
  shards    MB   the shards again from scratch, the tokenizer just trained given (encoding and
                 shards alone)
  extract   page `cllm extract` as a whole process over generated PDFs (bench/extract.py's
                 manual-like pages, 25 a file) that `cllm ingest` stored first (untimed)
  crawl     page `cllm crawl` as a whole process of a generated loopback site (bench/crawl.py's
                 "plain" shape, ~5 KB pages, 20 links each) served by bench/crawl.py's
                 SiteServer in a process of its own
Full sizes at 1x / 4x / 16x: 64 / 256 / 1024 MB of text (~20k / 80k / 316k documents),
3,125 / 12,500 / 50,000 PDF pages, 1,250 / 5,000 / 20,000 site pages.

Each text stage runs in a fresh process of its own (its peak RSS is its own, not what an
earlier stage left), on one data root per size, its library call timed there; extract and
crawl are whole `cllm` processes timed from start to exit. Each measurement gives time per
unit, CPU per unit (the process and its workers: user + system) and peak RSS (the process and
its descendants summed, sampled every 20 ms); then the same stage runs again with nothing new
(the text stages as the same call, extract and crawl as the same command on the same data
root), timed alike.

The text looks like prose, not repeated lines: a Zipf vocabulary of 30k words (common English
words first), sentences of 5-28 words, paragraphs of 2-7 sentences, documents of 0.5-10 kB
(log-uniform, at least a paragraph: mean ~3.5 kB); and near-duplicates at a known rate:
NEAR_RATE of the documents are an earlier one with 1% of its words changed, EXACT_RATE exact
copies.

Targets (issue 16), the largest factor over the smallest: time per unit within 1.25x, peak RSS
within 1.5x; a re-run with nothing new under 5% of the first run's time (at the largest
factor: at small sizes a whole process's start-up alone is more). Misses are flagged.
Writes bench/results/scale.json (--out: elsewhere; --merge: into what the file holds).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tokenization import PeakRss, generated_documents, reset_shards, write_docs

from pipeline.records import Document

FACTORS = (1, 4, 16)
NEAR_RATE = 0.05  # share of documents that are a near-copy (1% of words changed) of another
EXACT_RATE = 0.02  # share that are exact copies
DOC_BYTES = (500, 10_000)  # document sizes, log-uniform
PDF_PAGES_PER_FILE = 25
MEASURED_ON = ("date", "cpu", "load_avg_1m")  # what each run records of where it ran
TEXT_STAGES = {"clean": "clean + dedup", "tokenize": "tokenize (train the BPE + shards)",
               "shards": "tokenize with that tokenizer given (encode + shards)"}
STAGES = {**TEXT_STAGES, "extract": "`cllm extract` of generated PDFs",
          "crawl": "`cllm crawl` of a generated loopback site"}
UNITS = {**dict.fromkeys(TEXT_STAGES, "MB"), "extract": "page", "crawl": "page"}
SIZES = {  # mode: 1x of (MB of text, PDF pages, site pages)
    "smoke": (0.1, 20, 12), "quick": (1.0, 200, 100), "full": (64.0, 3125, 1250)}
TARGETS = {"time_per_unit": 1.25, "peak_rss": 1.5, "rerun_share": 0.05}
COMMAND = " ".join(["bench/scale.py", *sys.argv[1:]])
CLLM = [sys.executable, "-m", "flows.shell.cllm"]
CRAWL_SETTINGS = ["--set", "crawl.delay_s=0", "--set", "crawl.autothrottle=false",
                  "--set", "crawl.concurrency=16", "--set", "crawl.per_domain_concurrency=16",
                  "--set", "crawl.retries=0"]


# --- the text stages, each in a process of its own --------------------------------------------


def with_duplicates(docs: Iterator[Document], copies: dict[str, int], seed: int = 7
                    ) -> Iterator[Document]:
    """The documents, with near and exact copies of earlier ones mixed in at known rates
    (counted in `copies`)."""
    rng = random.Random(seed)
    kept: list[Document] = []
    for n, doc in enumerate(docs):
        yield doc
        if len(kept) < 200:  # small: this process's RSS is what the stages measure
            kept.append(doc)
        else:
            kept[rng.randrange(len(kept))] = doc  # a reservoir: copies from all over the run
        draw = rng.random()
        if draw < EXACT_RATE + NEAR_RATE:
            original = rng.choice(kept)
            kind = "exact" if draw < EXACT_RATE else "near"
            copies[kind] = copies.get(kind, 0) + 1
            text = original.text if kind == "exact" else _edit(original.text, rng)
            yield Document(id=f"{n:056x}dup{draw:.6f}"[:64].ljust(64, "0"),
                           source=f"{original.source}#copy{n}", mime="text/plain", text=text,
                           created_at=original.created_at)


def _edit(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    for _ in range(max(1, len(words) // 100)):
        words[rng.randrange(len(words))] = rng.choice(("river", "stone", "lantern", "quiet"))
    return " ".join(words)


def measured_call(call: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """The call's result, its seconds, CPU seconds (workers included) and peak RSS."""
    with PeakRss() as peak:
        began, cpu = time.perf_counter(), time.process_time()
        result = call()
        seconds = time.perf_counter() - began
        cpu = time.process_time() - cpu
    return result, {"seconds": seconds, "cpu_s": cpu + peak.cpu_s(descendants_only=True),
                    "peak_rss_mb": peak.peak_total / 2**20,
                    "peak_rss_self_mb": peak.peak_self / 2**20}


def write_text_root(mb: float, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """A data root holding `mb` MB of generated documents as docs parts (streamed to disk,
    never held), and what was written."""
    copies: dict[str, int] = {}
    sizes: list[int] = []

    def counted(docs: Iterator[Document]) -> Iterator[Document]:
        for doc in docs:
            sizes.append(len(doc.text.encode()))
            yield doc

    from pipeline.layout import DataRoot

    root = DataRoot.at(Path(tempfile.mkdtemp(prefix="scale-", dir=workdir)))
    write_docs(root, counted(with_duplicates(generated_documents(mb, seed=3, sizes=DOC_BYTES),
                                             copies)))
    return root.path, {"units": round(sum(sizes) / 1e6, 3), "documents": len(sizes),
                       "mean_doc_bytes": round(sum(sizes) / len(sizes)), "copies_made": copies}


def run_text_stage(stage: str, path: Path) -> dict[str, Any]:
    """One text stage on the data root at `path` and its re-run, in this (fresh) process, so
    that its peak RSS is its own and not what an earlier stage left."""
    from pipeline import clean
    from pipeline.clean import clean_documents
    from pipeline.config import build_config
    from pipeline.layout import DataRoot
    from pipeline.tokenization import tokenize_dataset

    clean.POOL_MIN_BYTES = 0  # clean workers at every size (as at 16x), so the sizes compare
    root = DataRoot.at(path)
    cfg = build_config([{"tokenize": {"vocab_size": 8192}}])
    tokenizer = root.path / "given-tokenizer.json"
    given = build_config([{"tokenize": {"vocab_size": 8192, "tokenizer": str(tokenizer)}}])

    def shards_only() -> Any:  # the tokenizer trained before given: encoding and shards
        shutil.copyfile(root.tokenizer_json, tokenizer)
        reset_shards(root)
        return tokenize_dataset(given, root, progress=False)

    first, again = {"clean": (lambda: clean_documents(cfg, root, progress=False),) * 2,
                    "tokenize": (lambda: tokenize_dataset(cfg, root, progress=False),) * 2,
                    "shards": (shards_only,
                               lambda: tokenize_dataset(given, root, progress=False))}[stage]
    stats, fig = measured_call(first)
    _, rerun = measured_call(again)
    return {**fig, "rerun_seconds": rerun["seconds"], "kept": stats.kept,
            "dropped": dict(stats.dropped)}


def run_text(mb: float, workdir: Path, stages: list[str]) -> dict[str, Any]:
    """The text stages asked for at one size, each in a fresh process on the same data root;
    clean and tokenize run whether asked for or not when a later stage needs their output."""
    path, written = write_text_root(mb, workdir)
    try:
        last = max(list(TEXT_STAGES).index(stage) for stage in stages)
        out = {}
        for stage in list(TEXT_STAGES)[:last + 1]:
            got = text_child(stage, path)
            if stage in stages:
                out[stage] = {**written, **got}
        return out
    finally:
        shutil.rmtree(path, ignore_errors=True)


def text_child(stage: str, path: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", stage, "--child-root", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"scale: {stage} on {path} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- extract and crawl, whole cllm processes -------------------------------------------------


def measured_process(argv: list[str]) -> dict[str, float]:
    """Seconds, CPU seconds and peak RSS of the process and its descendants, start to exit;
    it must exit 0."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: no pipe to fill and block
        began = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        with PeakRss(pid=proc.pid) as peak:
            _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n"
                             f"{err.read().decode(errors='replace')[-3000:]}")
    # both miss some: rusage the workers of a forkserver, sampling a process's last 20 ms
    cpu = max(usage.ru_utime + usage.ru_stime, peak.cpu_s())
    return {"seconds": seconds, "cpu_s": cpu,
            "peak_rss_mb": peak.peak_total / 2**20, "peak_rss_self_mb": peak.peak_self / 2**20}


def cllm(root: Path, *args: str) -> list[str]:
    return [*CLLM, "--root", str(root), "-q", *args]


def first_and_rerun(argv: list[str]) -> dict[str, float]:
    first = measured_process(argv)
    return {**first, "rerun_seconds": measured_process(argv)["seconds"]}


def whole_files(pages: int) -> int:
    """`pages` rounded up to whole generated files."""
    return -(-pages // PDF_PAGES_PER_FILE) * PDF_PAGES_PER_FILE


def pdf_files(workdir: Path, pages: int) -> list[Path]:
    """The generated PDFs of the first `pages` pages (whole files), kept in `workdir` for
    later runs: the generator is deterministic, so a smaller set is a prefix of a larger."""
    from extract import generate_text_pdfs

    cache = workdir / "scale-pdfs"
    made = cache / "pages.txt"
    have = int(made.read_text()) if made.is_file() else 0
    if have < pages:
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        print(f"generating {pages} PDF pages (untimed, kept in {cache}) ...", flush=True)
        generate_text_pdfs(cache, pages, PDF_PAGES_PER_FILE)
        made.write_text(str(pages))
    return sorted(cache.glob("text-*.pdf"))[:pages // PDF_PAGES_PER_FILE]


def run_extract(pages: int, workdir: Path, largest: int) -> dict[str, Any]:
    """`cllm extract` over `pages` generated pages that `cllm ingest` stored (untimed)."""
    from pipeline.docstore import iter_documents

    files = pdf_files(workdir, largest)[:pages // PDF_PAGES_PER_FILE]
    work = Path(tempfile.mkdtemp(prefix="scale-extract-", dir=workdir))
    try:
        sources = work / "pdfs"
        sources.mkdir()
        for path in files:  # links: the ingest reads a folder holding just this size's files
            os.link(path, sources / path.name)
        root = work / "root"
        subprocess.run(cllm(root, "ingest", str(sources)), check=True, capture_output=True)
        fig = first_and_rerun(cllm(root, "extract"))
        docs = [doc.pages for doc in iter_documents(root / "docs")]
        got = sum(docs)
        if got != pages:
            raise SystemExit(f"extract gave {got} pages of the {pages} generated")
        return {"units": pages, **fig, "files": len(files), "documents": len(docs)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_crawl(pages: int, workdir: Path) -> dict[str, Any]:
    """`cllm crawl` of a generated site of `pages` pages, then the same command again."""
    from crawl import SiteServer

    root = Path(tempfile.mkdtemp(prefix="scale-crawl-", dir=workdir))
    try:
        with SiteServer("plain", pages) as site:
            fig = first_and_rerun(cllm(root, "crawl", site.url("/"), "--allow-private",
                                       "--max-pages", str(pages + 10), "--max-depth", "1000",
                                       *CRAWL_SETTINGS))
        with sqlite3.connect(root / "raw" / "index.sqlite") as db:
            stored = db.execute("SELECT count(*) FROM blobs").fetchone()[0]
        if stored < pages:  # the home page and robots.txt are stored too
            raise SystemExit(f"crawl stored {stored} files of a site of {pages} pages")
        return {"units": pages, **fig, "stored": stored}
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- figures ---------------------------------------------------------------------------------


def with_rates(run: dict[str, Any]) -> dict[str, Any]:
    """A measurement with its per-unit figures and re-run share, rounded."""
    units = run["units"]
    out = {**run, "s_per_unit": run["seconds"] / units, "cpu_s_per_unit": run["cpu_s"] / units,
           "rerun_share": run["rerun_seconds"] / run["seconds"]}
    return {k: round(v, 6 if k.endswith("per_unit") else 4) if isinstance(v, float) else v
            for k, v in out.items()}


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The largest factor over the smallest, and the re-run share at the largest, each against
    its target; `misses` names those it misses."""
    small, large = runs[min(runs, key=int)], runs[max(runs, key=int)]
    got = {"factors": f"{max(runs, key=int)}x over {min(runs, key=int)}x",
           "time_per_unit": round(large["s_per_unit"] / small["s_per_unit"], 3),
           "cpu_per_unit": round(large["cpu_s_per_unit"] / small["cpu_s_per_unit"], 3),
           "peak_rss": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
           "rerun_share": large["rerun_share"]}
    got["misses"] = [k for k, target in TARGETS.items() if got[k] > target]
    return got


def per_unit(stage: str, seconds: float) -> str:
    return f"{seconds:.3f} s/MB" if UNITS[stage] == "MB" else f"{seconds * 1000:.2f} ms/page"


def describe_run(stage: str, factor: str, r: dict[str, Any]) -> str:
    size = (f"{r['units']:.1f} MB ({r['documents']} docs)" if UNITS[stage] == "MB"
            else f"{r['units']} pages")
    return (f"  {factor:>2}x {size}: {per_unit(stage, r['s_per_unit'])}, CPU "
            f"{per_unit(stage, r['cpu_s_per_unit'])}, peak RSS {r['peak_rss_mb']:.0f} MB, "
            f"{r['seconds']:.1f} s; re-run {r['rerun_seconds']:.2f} s "
            f"({r['rerun_share']:.1%})")


def describe_summary(s: dict[str, Any]) -> str:
    def mark(key: str) -> str:
        return "MISS" if key in s["misses"] else "ok"

    return (f"  {s['factors']}: time/unit {s['time_per_unit']:.2f}x (target <= 1.25x: "
            f"{mark('time_per_unit')}), CPU/unit {s['cpu_per_unit']:.2f}x, peak RSS "
            f"{s['peak_rss']:.2f}x (<= 1.5x: {mark('peak_rss')}); re-run at the largest "
            f"{s['rerun_share']:.1%} of the first (< 5%: {mark('rerun_share')})")


def table(stages: dict[str, Any]) -> list[dict[str, str]]:
    from common import row

    rows = []
    for stage, got in stages.items():
        runs, s = got["runs"], got["summary"]
        order = sorted(runs, key=int)
        if UNITS[stage] == "MB":
            sizes = (" / ".join(f"{runs[f]['units']:.4g}" for f in order) + " MB ("
                     + " / ".join(str(runs[f]["documents"]) for f in order) + " documents)")
        else:
            sizes = " / ".join(str(runs[f]["units"]) for f in order) + " pages"
        scale_of = 1 if UNITS[stage] == "MB" else 1000  # s per MB, ms per page
        per = " / ".join(f"{runs[f]['s_per_unit'] * scale_of:.3g}" for f in order) + (
            " s per MB" if scale_of == 1 else " ms per page")
        rss = " / ".join(f"{runs[f]['peak_rss_mb']:.0f}" for f in order)
        rows.append(row(f"scale: {STAGES[stage]} at {' / '.join(f + 'x' for f in order)} = "
                        f"{sizes}", f"{per}; peak RSS {rss} MB; re-run "
                        f"{s['rerun_share']:.1%} of the first", "",
                        f"time/unit {s['time_per_unit']:.2f}x, RSS {s['peak_rss']:.2f}x "
                        f"({s['factors']})" + (f"; misses {', '.join(s['misses'])}"
                                               if s["misses"] else ""),
                        "≤ 1.25x, ≤ 1.5x, re-run < 5%")
                    | {"measured_on": [runs[f]["environment"] for f in order
                                       if runs[f].get("environment")]})
    return rows


def merged(previous: Path | None, stages: dict[str, Any]) -> dict[str, Any]:
    """`stages` over what the results file `previous` holds: a factor measured now replaces
    the same factor measured before at the same 1x size; other stages are kept."""
    try:
        record = json.loads(previous.read_text(encoding="utf-8")) if previous else {}
        old = record["stages"] if record else {}
    except (FileNotFoundError, KeyError, ValueError):
        record, old = {}, {}
    was = {k: record.get("environment", {}).get(k) for k in MEASURED_ON}
    for before in old.values():  # runs from before each run said where it ran: the file's
        for run in before["runs"].values():
            run.setdefault("environment", was)
    out = dict(old)
    for stage, got in stages.items():
        before = old.get(stage)
        if before and before["base"] == got["base"]:
            got = {**got, "runs": {**before["runs"], **got["runs"]}}
        out[stage] = got
    return out


# --- the run ---------------------------------------------------------------------------------


def _measured_on() -> dict[str, Any]:
    """The date, CPU and load of one run (a file merged from runs of several sessions holds
    runs of several machines)."""
    from common import environment

    env = environment()
    return {k: env[k] for k in MEASURED_ON}


def measure(stages: list[str], factors: list[int], base: dict[str, float], workdir: Path
            ) -> dict[str, Any]:
    """Every stage asked for at every factor; the text stages share a data root per factor."""
    runs: dict[str, dict[str, Any]] = {stage: {} for stage in stages}
    text = [s for s in TEXT_STAGES if s in stages]
    for factor in factors:
        found: dict[str, Any] = {}
        if text:
            found.update(run_text(base["text"] * factor, workdir, text))
        if "extract" in stages:
            found["extract"] = run_extract(whole_files(int(base["extract"] * factor)),
                                           workdir, whole_files(int(base["extract"]
                                                                    * max(factors))))
        if "crawl" in stages:
            found["crawl"] = run_crawl(int(base["crawl"] * factor), workdir)
        for stage, run in found.items():  # each run says what measured it: files merge
            runs[stage][str(factor)] = {**with_rates(run), "measured_by": COMMAND,
                                        "environment": _measured_on()}
            print(f"{stage}: {describe_run(stage, str(factor), runs[stage][str(factor)])}",
                  flush=True)
    return {stage: {"what": STAGES[stage], "unit": UNITS[stage],
                    "base": base["text" if stage in TEXT_STAGES else stage], "runs": runs[stage]}
            for stage in stages}


def parse_args() -> argparse.Namespace:
    from common import add_mode_args

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stages", default=",".join(STAGES),
                   help=f"comma-separated, of {', '.join(STAGES)} (default all)")
    p.add_argument("--factors", help="comma-separated multiples of the 1x sizes (default 1,4,16;"
                                     " --smoke 1,2)")
    p.add_argument("--merge", action="store_true",
                   help="merge into the results file's figures (a long run done in pieces)")
    p.add_argument("--base", type=float, help="MB of text at 1x (full 64: 1 GB at 16x)")
    p.add_argument("--pdf-pages", type=int, help="PDF pages at 1x (full 3125)")
    p.add_argument("--site-pages", type=int, help="site pages at 1x (full 1250)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    p.add_argument("--child", choices=TEXT_STAGES, help=argparse.SUPPRESS)
    p.add_argument("--child-root", type=Path, help=argparse.SUPPRESS)
    add_mode_args(p)
    args = p.parse_args()
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(args.stages) - set(STAGES))
    if unknown:
        p.error(f"unknown stages {unknown}; the stages are {', '.join(STAGES)}")
    return args


def main() -> None:
    from common import RESULTS_DIR, mode, write_results

    args = parse_args()
    if args.child is not None:
        print(json.dumps(run_text_stage(args.child, args.child_root)))
        return
    text_mb, pdf_pages, site_pages = SIZES[mode(args)]
    base = {"text": args.base or text_mb, "extract": args.pdf_pages or pdf_pages,
            "crawl": args.site_pages or site_pages}
    factors = ([int(f) for f in args.factors.split(",")] if args.factors
               else [1, 2] if args.smoke else list(FACTORS))  # smoke: the code paths
    stages = [s for s in STAGES if s in args.stages]
    got = measure(stages, factors, base, args.workdir)
    if args.merge:
        got = merged(args.out or (None if args.smoke else RESULTS_DIR / "scale.json"), got)
    for result in got.values():
        result["summary"] = summarise(result["runs"])
    print("\nper stage (units; time and CPU per unit; peak RSS of the process and its workers):")
    for stage, result in got.items():
        print(f"{stage} ({STAGES[stage]}):")
        for factor in sorted(result["runs"], key=int):
            print(describe_run(stage, factor, result["runs"][factor]))
        print(describe_summary(result["summary"]))
    write_results("scale", {
        "doc_bytes": list(DOC_BYTES), "near_rate": NEAR_RATE,
        "exact_rate": EXACT_RATE, "pdf_pages_per_file": PDF_PAGES_PER_FILE,
        "targets": TARGETS, "stages": got, "table": table(got)}, args)


if __name__ == "__main__":
    main()
