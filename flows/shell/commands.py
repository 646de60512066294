"""The `cllm` commands that are not stages (shards, sample, export, status, config), and how the
stages' results are told: each stage's summary line, plus what some stages say besides.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from flows.shell.runner import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    report_stats,
)


def shards(args: Any, ctx: Any) -> int:
    """`cllm shards inspect | verify | decode --split S --doc N`."""
    from pipeline.records import RecordFormatError
    from pipeline.shards import describe, read_document, read_manifest, verify_shards

    root = ctx.root
    try:
        manifest = read_manifest(root.manifest)
    except (FileNotFoundError, RecordFormatError) as e:
        print(f"cllm shards: {e}", file=sys.stderr)
        return EXIT_FAILED
    if args.shards_command == "inspect":
        print(describe(manifest))
        return EXIT_OK
    if args.shards_command == "verify":
        report = verify_shards(root.shards, manifest, root.path / manifest.tokenizer.path)
        for note in report.notes:
            print(f"note: {note}", file=sys.stderr)
        for problem in report.problems:
            print(f"FAILED: {problem}")
        if report.ok:
            print(f"OK: {report.shards} shards, {report.tokens} tokens verified")
        return EXIT_OK if report.ok else EXIT_FAILED
    from pipeline.tokenizer import decode, load_tokenizer

    try:
        ids = read_document(root.shards, manifest, args.split, args.doc)
    except IndexError as e:
        print(f"cllm shards decode: {e}", file=sys.stderr)
        return EXIT_USAGE
    text = decode(load_tokenizer(root.path / manifest.tokenizer.path), ids.tolist())
    sys.stdout.write(text + ("\n" if sys.stdout.isatty() and not text.endswith("\n") else ""))
    return EXIT_OK


def sample(args: Any, ctx: Any) -> int:
    """`cllm sample [CHECKPOINT] -p PROMPT`: generated text, streamed as it is made."""
    from model.evaluate import default_checkpoint
    from model.sample import TextGenerator

    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint(ctx.root)
    gen = TextGenerator.load(checkpoint, ctx.cfg.train.device)
    sys.stdout.write(args.prompt)
    for piece in gen.stream(args.prompt, ctx.cfg.sample):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return EXIT_OK


def export(args: Any, ctx: Any) -> int:
    """`cllm export [CHECKPOINT] --format hf|gguf --out DIR [--force]`."""
    from model.checkpoint import CheckpointError
    from model.evaluate import default_checkpoint
    from model.export import ExportError, export_model

    try:
        source = Path(args.checkpoint) if args.checkpoint else default_checkpoint(ctx.root)
        done = export_model(source, Path(args.out), args.format, force=args.force)
    except (ExportError, CheckpointError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    print(f"exported {done.source} ({done.architecture}) as {done.format} to {done.out}: "
          f"{', '.join(done.files)}")
    return EXIT_OK


def status(args: Any, ctx: Any) -> int:
    from flows.stages import STAGES
    from pipeline.status import data_root_status, status_lines

    state = data_root_status(ctx.root, STAGES)
    print(json.dumps(state, indent=2) if args.json else "\n".join(status_lines(state)))
    return EXIT_OK


def config(args: Any, ctx: Any) -> int:
    if args.action == "show":
        sys.stdout.write(ctx.cfg.to_toml())
    else:
        print("config OK")
    return EXIT_OK


# --- what a stage's command prints, besides its summary line ---------------------------------


def _crawl_told(stats: Any, args: Any, ctx: Any) -> int:
    code = report_stats(stats, ctx.strict)
    if getattr(args, "export_urls", None):
        from crawler.run import export_urls, make_seeds

        n = export_urls(ctx.root, make_seeds(ctx.cfg.sources.urls, ctx.cfg.crawl),
                        Path(args.export_urls))
        print(f"wrote {n} URLs to {args.export_urls}", file=sys.stderr)
    if stats.extra.get("interrupted"):
        print(f"crawl stopped; run the same command again to resume job {stats.extra['job']}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _train_told(stats: Any, args: Any, ctx: Any) -> int:
    code = report_stats(stats, ctx.strict)
    return EXIT_FAILED if stats.extra.get("stop_reason") == "nan_loss" else code


def _evaluate_told(stats: Any, args: Any, ctx: Any) -> int:
    result = stats.extra["result"]
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    unit = "windows" if result["what"] == "val" else "documents"
    bpb = result["bits_per_byte"]
    why = "shards of manifest format 1 count no bytes; tokenize into a new data root to " \
        "count them" if result["what"] == "val" else "the model carries no tokenizer"
    per_byte = f"{bpb:.4f} bits per byte" if bpb is not None else f"bits per byte n/a ({why})"
    print(f"{result['checkpoint']} (step {result['step']}): {result['what']} loss "
          f"{result['loss']:.4f}, perplexity {result['perplexity']:.2f}, {per_byte} over "
          f"{result['tokens']} tokens ({result['windows']} {unit})")
    return EXIT_OK


def tell(stage: str, stats: Any, args: Any, ctx: Any) -> int:
    """Print what a stage did; the exit code it implies."""
    told = {"crawl": _crawl_told, "train": _train_told, "evaluate": _evaluate_told}.get(stage)
    return told(stats, args, ctx) if told else report_stats(stats, ctx.strict)


def read_url_file(args: Any, ctx: Any) -> Any:
    """`cllm crawl [URL...] --url-file F`: the file's URLs join those given on the command
    line; together they replace sources.urls."""
    from crawler.run import read_url_file as read_urls
    from pipeline.config import replace

    if not getattr(args, "url_file", None):
        return ctx.cfg
    given = (getattr(args, "config_flags", None) or {}).get("sources.urls") or []
    return replace(ctx.cfg, "sources", urls=[*given, *read_urls(Path(args.url_file))])
