"""bench/quality.py's summary: mean ± std over seeds, paired differences, the tables, the JSON."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

REFERENCE = "reference: bench/minigpt.py (nanoGPT)"
SAME = 1e-4  # nats: paired differences below this, on every seed, are the same result


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: list[dict[str, Any]], names: list[str], default: str
              ) -> dict[str, dict[str, Any]]:
    """Per recipe: mean and std over seeds, and the per-seed differences to the reference and
    to our default recipe (mean and std of the paired differences)."""
    by = {(r["recipe"], r["seed"]): r for r in runs}
    out = {}
    for name in names:
        seeds = sorted(s for (n, s) in by if n == name)
        row: dict[str, Any] = {"seeds": seeds}
        for key in ("val_loss", "val_bpb", "first_loss"):
            row[key], row[key + "_std"] = _mean_std([by[name, s][key] for s in seeds])
        row["tokens_per_s"] = statistics.median(by[name, s]["tokens_per_s"] for s in seeds)
        row["default"] = name == default
        for base, label in ((REFERENCE, "vs_reference"), (default, "vs_default")):
            paired = [by[name, s]["val_loss"] - by[base, s]["val_loss"] for s in seeds
                      if (base, s) in by]
            if paired and name != base:
                row[label], row[label + "_std"] = _mean_std(paired)
        out[name] = row
    return out


def verdict(mean: float, std: float) -> str:
    """Better / worse when the mean paired difference is beyond its spread (1 std)."""
    if abs(mean) < SAME and std < SAME:
        return "same"
    if mean + std < 0:
        return "better"
    if mean - std > 0:
        return "worse"
    return "within spread"


def print_table(summary: dict[str, dict[str, Any]], title: str) -> None:
    print(f"\n{title}\n{'recipe':58} {'val loss':>16} {'bits/byte':>16} {'vs reference':>24} "
          f"{'vs default':>17} {'tokens/s':>9}")
    for name, r in summary.items():
        label = f"{name} (default)" if r["default"] else name
        ref = (f"{r['vs_reference']:+.4f} ± {r['vs_reference_std']:.4f} "
               f"{verdict(r['vs_reference'], r['vs_reference_std'])[:6]:>6}"
               if "vs_reference" in r else "")
        own = f"{r['vs_default']:+.4f} ± {r['vs_default_std']:.4f}" if "vs_default" in r else ""
        print(f"{label:58} {r['val_loss']:.4f} ± {r['val_loss_std']:.4f} "
              f"{r['val_bpb']:.4f} ± {r['val_bpb_std']:.4f} {ref:>24} {own:>17} "
              f"{r['tokens_per_s']:9.0f}")


def markdown(summary: dict[str, dict[str, Any]]) -> str:
    """The README's table of a suite."""
    lines = ["| recipe | val loss | bits/byte | vs reference (paired) | vs default (paired) | "
             "first loss |", "|---|---|---|---|---|---|"]
    for name, r in summary.items():
        label = f"**{name}** (default)" if r["default"] else name
        ref = f"{r['vs_reference']:+.3f} ± {r['vs_reference_std']:.3f}" \
            if "vs_reference" in r else ""
        own = f"{r['vs_default']:+.3f} ± {r['vs_default_std']:.3f}" if "vs_default" in r else ""
        lines.append(f"| {label} | {r['val_loss']:.3f} ± {r['val_loss_std']:.3f} | "
                     f"{r['val_bpb']:.3f} ± {r['val_bpb_std']:.3f} | {ref} | {own} | "
                     f"{r['first_loss']:.2f} |")
    return "\n".join(lines)


def save(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Write one suite's entry into the results file, keeping the other suites'."""
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[key] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def tables(path: Path, order: list[str]) -> None:
    """The README's tables from a results file, rows in `order` (the JSON sorts them)."""
    results = json.loads(path.read_text())
    rank = {name: i for i, name in enumerate(order)}
    for suite in ("recipes", "crystalline"):
        if suite in results:
            summary = results[suite]["summary"]
            rows = sorted(summary, key=lambda n: (rank.get(n, len(rank)), n))
            print(f"\n{suite} ({results[suite]['command']}):\n")
            print(markdown({name: summary[name] for name in rows}))
