"""The README's benchmark table, generated from bench/results/*.json (none typed by hand).

    .venv/bin/python bench/report.py            # rewrite the table in README.md
    .venv/bin/python bench/report.py --check    # exit 1 if README.md is not what the files give
    .venv/bin/python bench/report.py --print    # the table on stdout

The table lies between `<!-- bench:begin -->` and `<!-- bench:end -->` in README.md. A
results file gives its rows either itself (a "table" list, see bench/common.py) or through
the reader below named after its benchmark (files written before the convention). Each row
names its results file and the date, CPU and load of its run, so every figure has its source.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import row as _row

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
ORDER = ("extract", "tokenization", "train", "crawl", "langid", "pii", "dedup", "sample",
         "rerun", "scale")  # the table's order; other files follow by name
Row = dict[str, str]


def _x(value: float) -> str:
    return f"{value:.2f}x"


def crawl_rows(r: dict[str, Any]) -> list[Row]:
    s = r["settings"]
    rows = []
    for shape in r["shapes"]:
        pps = shape["pages_per_s"]
        rows.append(_row(
            f"crawl, {shape['shape']} site on 127.0.0.1, {shape['pages']} pages; concurrency "
            f"{s['concurrency']}, per-domain {s['per_domain']}, whole processes",
            f"{pps['cllm']:.1f} pages/s" + (", all stored" if shape["all_stored"] else "")
            + f"; {shape['cpu_ms_per_page']['cllm']:.2f} ms CPU a page",
            f"{pps['bare']:.1f} pages/s (tuned bare `Spider`, a seen-set); "
            f"{shape['cpu_ms_per_page']['bare']:.2f} ms CPU a page; fetch-only ceiling of a "
            f"Scrapy process {pps['fetch']:.1f}", _x(shape["ours_over_bare"]), "≥ 1.5x"))
    for key, label in (("per_domain_sweep", "one site"), ("four_sites_sweep", "four sites")):
        sweep = r.get(key)
        if sweep:
            levels = list(sweep["process_s"])
            rows.append(_row(
                f"crawl time against per-domain concurrency {' / '.join(levels)} at "
                f"concurrency {sweep['concurrency']}, docs site, {label}",
                " / ".join(f"{v:.1f}" for v in sweep["process_s"].values()) + " s"))
    recrawl = r.get("recrawl")
    if recrawl:
        took = recrawl["process_s"]
        rows.append(_row(
            f"re-crawl of the dense site, {recrawl['pages']} pages, whole processes: first "
            "crawl / re-run with nothing new / `--refresh` (every page asked again)",
            f"{took['first']:.2f} / {took['rerun']:.2f} / {took['refresh']:.2f} s",
            "", f"re-run {recrawl['rerun_over_first']:.1%} of the first, refresh "
            f"{_x(recrawl['refresh_over_first'])}", "re-run < 5% (scale rows: at 20,000 pages)"))
    return rows


def langid_rows(r: dict[str, Any]) -> list[Row]:
    return [_row(f"language filter, {r['documents']} documents in {r['languages']} languages",
                 f"{r['identification_docs_per_s']:.0f} docs/s identified in the clean stage "
                 f"(stage {r['stage_on_docs_per_s']:.0f} on, {r['stage_off_docs_per_s']:.0f} off)",
                 f"{r['bare_library_docs_per_s']:.0f} docs/s (`classify` on each whole text)",
                 _x(r["ratio_identification_vs_bare"]), "≥ 0.9x")]


def pii_rows(r: dict[str, Any]) -> list[Row]:
    return [_row(f"PII scrubbing, {r['mb']:g} MB generated prose",
                 f"clean {r['clean_pii_mb_per_s']:.2f} MB/s with `clean.pii = \"replace\"` "
                 f"(scrub alone {r['scrub_alone_mb_per_s']:.1f} MB/s)",
                 f"clean {r['clean_off_mb_per_s']:.2f} MB/s with `\"off\"`",
                 _x(r["ratio_on_vs_off"]))]


def dedup_rows(r: dict[str, Any]) -> list[Row]:
    sec, met = r["seconds"], r.get("targets", {})
    ours = f"{sec['ours']:.2f} s"
    peer = f"{sec['datatrove']:.1f} s" if "datatrove" in sec else "datatrove not run"
    if "scores" in r:
        ours += f"; recall {_recall(r['scores']['ours']):.3f} (all kinds)"
        if "datatrove" in r["scores"]:
            peer += f"; recall {_recall(r['scores']['datatrove']):.3f}"
    ratio = r["speed_ratio_ours_vs_datatrove"]
    verdict = " (met)" if ratio and met and all(met.values()) else ""
    return [_row(f"near-duplicates, {r['documents']} documents, 8 kinds of near-copy",
                 ours, peer + " (datatrove MinHash, its defaults)",
                 f"{ratio:.2f}x the speed" if ratio else "",
                 "recall ≥ 0.95 for edits ≤ 5%, precision ≥ 0.99, ≥ 2x datatrove" + verdict)]


def _recall(scores: dict[str, dict[str, Any]]) -> float:
    """Recall over every near-copy kind and length of a dedup run."""
    pairs = sum(s["pairs"] for s in scores.values())
    return sum(s["found"] for s in scores.values()) / pairs if pairs else 0.0


def sample_rows(r: dict[str, Any]) -> list[Row]:
    tps = r["tokens_per_s"]
    return [_row(f"sampling, {r['new_tokens']} new tokens after {r['prompt_tokens']}, "
                 f"{r['model']['n_layer']} x {r['model']['n_embd']} model",
                 f"{tps['ours']:.0f} tokens/s (KV cache)",
                 f"{tps['transformers']:.0f} tokens/s (transformers `generate`)",
                 _x(r["ratio"]["transformers"]), f"≥ {r['targets']['transformers']:g}x")]


def rerun_rows(r: dict[str, Any]) -> list[Row]:
    med = r["seconds_median"]
    return [_row(f"re-run with nothing new, {r['docs_in_root']} documents: extract / tokenize",
                 f"{med['extract']:.2f} / {med['tokenize']:.2f} s",
                 f"{med['extract_floor']:.2f} / {med['tokenize_floor']:.2f} s (reading the "
                 "records alone)", f"{med['extract'] / med['extract_floor']:.1f}x / "
                 f"{med['tokenize'] / med['tokenize_floor']:.1f}x")]


READERS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "crawl": crawl_rows, "langid": langid_rows, "pii": pii_rows, "dedup": dedup_rows,
    "sample": sample_rows, "rerun": rerun_rows}


def _cpu(name: str) -> str:
    """A CPU's model name without its trademark signs ("Intel(R) Xeon(R) Processor": Intel
    Xeon): the machines change between runs, and a ratio is read with its machine."""
    words = name.replace("(R)", "").replace("(TM)", "").split()
    return " ".join(w for w in words if w.lower() not in ("processor", "cpu"))


def _when(r: dict[str, Any]) -> str:
    env = r.get("environment") or r.get("machine") or {}
    date = str(env["date"])[:10] if env.get("date") else "date not recorded"
    cpu = _cpu(str(env.get("cpu") or ""))
    load = env.get("load_avg_1m")
    return date + (f", {cpu}" if cpu else "") + (f", load {load:g}" if load is not None else "")


def rows_of(name: str, record: dict[str, Any]) -> list[Row]:
    if "table" in record:
        rows = list(record["table"])
    elif name in READERS:
        rows = READERS[name](record)
    else:
        return []
    return [{**row, "source": f"`bench/results/{name}.json` ({_row_when(row, record)})"}
            for row in rows]


def _row_when(row: dict[str, Any], record: dict[str, Any]) -> str:
    """Where the row's figures were measured: its own runs' machines when it names them (a
    file merged from several sessions), else the file's; runs of one day on one CPU are one
    entry, with the highest load any of them had."""
    runs: dict[tuple[str, str], float | None] = {}
    for env in row.get("measured_on") or ():
        key = (str(env.get("date", ""))[:10], str(env.get("cpu") or ""))
        load = env.get("load_avg_1m")
        known = runs.get(key)
        runs[key] = load if known is None else max(known, load if load is not None else known)
    if not runs:
        return _when(record)
    return "; ".join(_when({"environment": {"date": date, "cpu": cpu, "load_avg_1m": load}})
                     for (date, cpu), load in runs.items())


def result_files(results: Path) -> list[Path]:
    files = {p.stem: p for p in results.glob("*.json")}
    named = [files.pop(n) for n in ORDER if n in files]
    return named + [files[n] for n in sorted(files)]


def table(results: Path = RESULTS) -> str:
    lines = ["| benchmark | ours | bare peer, same run | ratio | target | results file |",
             "|---|---|---|---|---|---|"]
    for path in result_files(results):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("smoke") or record.get("mode") == "smoke":
            continue  # a smoke run's figures mean nothing
        for r in rows_of(path.stem, record):
            lines.append("| " + " | ".join(
                r[k].replace("|", "\\|") for k in
                ("benchmark", "ours", "peer", "ratio", "target", "source")) + " |")
    return "\n".join(lines)


def with_table(readme: str, generated: str) -> str:
    head, sep, rest = readme.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise SystemExit(f"README.md lacks the markers {BEGIN} ... {END}")
    note = ("<!-- generated by bench/report.py from bench/results/*.json: "
            "edit those, not this table -->")
    return f"{head}{BEGIN}\n{note}\n{generated}\n{END}{tail}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    p.add_argument("--print", action="store_true", help="print the table only")
    p.add_argument("--readme", type=Path, default=README)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    generated = table(args.results)
    if args.print:
        print(generated)
        return 0
    old = args.readme.read_text(encoding="utf-8")
    new = with_table(old, generated)
    if args.check:
        if new != old:
            print(f"{args.readme}: the benchmark table is not what bench/results gives; run "
                  "bench/report.py", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(new, encoding="utf-8")
    print(f"wrote the benchmark table of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
