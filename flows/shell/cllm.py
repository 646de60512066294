"""The `cllm` command: a subcommand per stage (from `flows.stages.STAGES`) and the commands
that are not stages. Stages import their libraries only when they run, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.shell.args import ARGUMENTS, add_global_options, flag_overrides, merge_global_options
from flows.shell.runner import Failed, guarded

Handler = Callable[[argparse.Namespace, "Context"], int]


@dataclass(slots=True)
class Context:
    """What every command handler gets besides its own arguments."""

    cfg: Any  # pipeline.config.Config
    root: Any  # pipeline.layout.DataRoot
    strict: bool
    progress: bool  # False with -q: no bars, no periodic lines
    config_path: Path | None


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    handler: Handler


def _orchestrated(name: str) -> Handler:
    def handler(args: argparse.Namespace, ctx: Context) -> int:
        from flows.shell import orchestrated

        return getattr(orchestrated, name)(args, ctx)

    return handler


def _command(name: str) -> Handler:
    def handler(args: argparse.Namespace, ctx: Context) -> int:
        from flows.shell import commands

        return getattr(commands, name)(args, ctx)

    return handler


def _stage_command(name: str) -> Handler:
    def handler(args: argparse.Namespace, ctx: Context) -> int:
        return run_stage(name, args, ctx)

    return handler


OTHER_COMMANDS = (
    Command("shards", "inspect, verify or decode token shards", _command("shards")),
    Command("sample", "generate text from a checkpoint", _command("sample")),
    Command("export", "write a model as a transformers folder or GGUF file",
            _command("export")),
    Command("run", "run the whole pipeline on the sources in cllm.toml", _orchestrated("run")),
    Command("demo", "run the whole pipeline on a built-in sample site", _orchestrated("demo")),
    Command("validate", "validate the promoted model once (what the schedule runs)",
            _orchestrated("validate")),
    Command("retrain", "retrain once if enough new documents arrived", _orchestrated("retrain")),
    Command("serve", "serve the scheduled validate and retrain deployments",
            _orchestrated("serve")),
    Command("status", "what the data root holds, stage by stage", _command("status")),
    Command("config", "show or check the resolved config", _command("config")),
)


def commands() -> list[Command]:
    """Every command: the stages first, in pipeline order, then the others."""
    from flows.stages import STAGES

    return [*(Command(s.name, s.summary, _stage_command(s.name)) for s in STAGES),
            *OTHER_COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cllm",
        description="Documents in, a trained CLLM language model out.",
        epilog="Exit codes: 0 done (input failures are listed), 1 a source that failed "
               "completely, failures with --strict or a failed check, 2 usage/config error, "
               "3 environment error, 130 interrupted. Tracebacks: <root>/logs/cllm.log.",
    )
    add_global_options(parser, on_subcommand=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in commands():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.name in ARGUMENTS:
            ARGUMENTS[cmd.name](p)
        add_global_options(p, on_subcommand=True)
        p.set_defaults(handler=cmd.handler)
    return parser


def make_context(args: argparse.Namespace) -> Context:
    from pipeline.config import DEFAULT_CONFIG_NAME, load_config
    from pipeline.layout import DEFAULT_ROOT, DataRoot

    config_path = Path(args.config) if args.config else None
    if config_path is None and Path(DEFAULT_CONFIG_NAME).is_file():
        config_path = Path(DEFAULT_CONFIG_NAME)  # said explicitly, so flows get it too
    cfg = load_config(config_path, args.overrides, extra=flag_overrides(args))
    root = DataRoot.at(args.root or os.environ.get("CLLM_ROOT") or DEFAULT_ROOT)
    return Context(cfg=cfg, root=root, strict=args.strict, progress=args.quiet == 0,
                   config_path=config_path)


def run_stage(name: str, args: argparse.Namespace, ctx: Context) -> int:
    """`cllm <stage>`: the stage, and what it did; the exit code that implies."""
    from flows.shell.commands import read_url_file, tell
    from flows.stages import BY_NAME

    if name == "crawl":
        ctx.cfg = read_url_file(args, ctx)
    if name == "train":
        _quiet_other_ranks(ctx)
    stats = BY_NAME[name].run(ctx.cfg, ctx.root, progress=ctx.progress)
    return tell(name, stats, args, ctx)


def _quiet_other_ranks(ctx: Context) -> None:
    """Under torchrun, one progress display and summary: rank 0's."""
    import logging

    rank = int(os.environ.get("RANK", "0"))
    if rank:
        ctx.progress = False
        logging.getLogger().setLevel(logging.WARNING)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process


def main(argv: Sequence[str] | None = None) -> int:
    from flows.shell.logs import log_to_file, setup_logging

    parser = build_parser()
    args = merge_global_options(parser.parse_args(argv))
    setup_logging(args.verbose, args.quiet)
    contexts: list[Context] = []

    def run() -> int:
        contexts.append(make_context(args))
        log_to_file(contexts[0].root.logs)
        return args.handler(args, contexts[0])

    def where() -> str:
        return str(contexts[0].root.path) if contexts else ""

    def log_file() -> str:
        return str(contexts[0].root.logs / "cllm.log") if contexts else ""

    try:
        return guarded("cllm", run, where, log_file)
    except Failed as e:
        return e.code


if __name__ == "__main__":
    sys.exit(main())
