"""What every benchmark in bench/ shares: its three sizes, its flags and its results file.

The convention (every benchmark script accepts these):

  --smoke    tiny sizes, one run, seconds; writes no results file unless --out is given
             (what CI runs, tests/test_bench_smoke.py; figures meaningless)
  --quick    the size `make bench` runs: every benchmark together under 10 minutes on 2 cores;
             writes bench/results/<name>.json
  (neither)  the full size its docstring states; writes bench/results/<name>.json
  --out F    write the results to F instead (with --smoke too)

A results file holds the figures, a "mode" (smoke / quick / full), the command, and an
"environment" (date, CPU model, cores, threads, load, versions); a benchmark whose figures
belong in the README's table also holds "table": rows of {benchmark, ours, peer, ratio,
target} strings, which bench/report.py writes into README.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MODES = ("smoke", "quick", "full")


def add_mode_args(parser: argparse.ArgumentParser) -> None:
    """The flags of the convention above."""
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true",
                      help="tiny sizes, one run, no results file (what CI runs)")
    size.add_argument("--quick", action="store_true",
                      help="the size `make bench` runs (minutes), results recorded")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default bench/results/<name>.json; "
                             "with --smoke none)")


def mode(args: argparse.Namespace) -> str:
    return "smoke" if args.smoke else "quick" if args.quick else "full"


def cpu_model() -> str:
    """The model name /proc/cpuinfo gives (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(*packages: str) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def environment(*packages: str, threads: int | None = None) -> dict[str, Any]:
    """Where and when the figures were measured: they mean little without it."""
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": cpu_model(),
            "cores": os.cpu_count(), "threads": threads if threads is not None else os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "platform": platform.platform(),
            "versions": versions(*packages)}


def write_results(name: str, result: dict[str, Any], args: argparse.Namespace,
                  *packages: str, threads: int | None = None) -> Path | None:
    """bench/results/<name>.json (or --out) with the mode, command and environment added;
    nothing for a smoke run without --out. Returns the path written."""
    out = args.out or (None if args.smoke else RESULTS_DIR / f"{name}.json")
    if out is None:
        return None
    record = {"benchmark": name, "mode": mode(args),
              "command": " ".join(["bench/" + Path(sys.argv[0]).name, *sys.argv[1:]]),
              "environment": environment(*packages, threads=threads), **result}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out}")
    return out


def row(benchmark: str, ours: str, peer: str = "", ratio: str = "", target: str = ""
        ) -> dict[str, str]:
    """One row of the README's table."""
    return {"benchmark": benchmark, "ours": ours, "peer": peer, "ratio": ratio, "target": target}
