"""The original crawler tool's front end, on the crawl stage that `cllm crawl` runs.

    cllm_crawler --start-url URL [--data-dir DIR] [--max-pages N] [--max-depth N]
                 [--allow-private] [--config FILE] [-q]

Its result is told as `cllm crawl` tells it: the summary, the failures, and after a Ctrl-C
(the crawl stops gracefully, resumable) one line and exit status 130.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flows.shell.runner import run_tool

PROG = "cllm_crawler"


def _parser() -> argparse.ArgumentParser:
    from pipeline.layout import DEFAULT_ROOT

    p = argparse.ArgumentParser(prog=PROG, description="Crawl web sites into the CLLM raw store.")
    p.add_argument("--start-url", action="append", required=True, metavar="URL",
                   help="where to start (repeatable)")
    p.add_argument("--data-dir", default=os.environ.get("CLLM_ROOT", DEFAULT_ROOT),
                   metavar="DIR", help="data root (default ./cllm-data)")
    p.add_argument("--max-pages", type=int, help="page budget")
    p.add_argument("--max-depth", type=int, help="link depth limit")
    p.add_argument("--allow-private", action="store_true",
                   help="allow loopback/private addresses (local sites)")
    p.add_argument("--config", metavar="FILE", help="cllm.toml to read")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def _flags(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config values the flags set, by section (they win over the file)."""
    crawl: dict[str, Any] = {}
    if args.max_pages is not None:
        crawl["max_pages"] = args.max_pages
    if args.max_depth is not None:
        crawl["max_depth"] = args.max_depth
    if args.allow_private:
        crawl["allow_private"] = True
    return {"sources": {"urls": list(args.start_url)}, "crawl": crawl}


def _crawl(args: argparse.Namespace) -> int:
    from flows.shell.cllm import Context
    from flows.shell.commands import tell
    from flows.stages import BY_NAME
    from pipeline.config import load_config
    from pipeline.layout import DataRoot

    config_path = Path(args.config) if args.config else None
    cfg = load_config(config_path, extra=_flags(args))
    ctx = Context(cfg=cfg, root=DataRoot.at(args.data_dir), strict=False,
                  progress=not args.quiet, config_path=config_path)
    stats = BY_NAME["crawl"].run(ctx.cfg, ctx.root, progress=ctx.progress)
    return tell("crawl", stats, args, ctx)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_tool(PROG, lambda: _crawl(args), quiet=int(args.quiet),
                    where=lambda: args.data_dir)
