"""The `cllm` command. Stages are imported only when their command runs, so `--help` is instant.

Every command's handler is `handler(args, ctx) -> StageStats | int | None`, named below as
"module:function". Flags that mirror config keys go through `_config_flag`, so they override
the config exactly like `--set section.key=value`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # input failures with --strict, or a stage/check that failed
EXIT_USAGE = 2  # bad arguments or config
EXIT_ENVIRONMENT = 3  # missing tool, locked data root, unusable machine
EXIT_INTERRUPTED = 130
FAILURES_SHOWN = 20

log = logging.getLogger("cllm")


@dataclass(slots=True)
class Context:
    """What every command handler gets besides its own arguments."""

    cfg: Any  # pipeline.config.Config
    root: Any  # pipeline.layout.DataRoot
    strict: bool
    progress: bool  # False with -q: no bars, no periodic lines
    config_path: Path | None


class _ConfigFlag(argparse.Action):
    """Store a flag's value as an override of config key `self.key` (e.g. "extract.workers")."""

    def __init__(self, *args: Any, key: str, **kwargs: Any) -> None:
        self.key = key
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if self.nargs == 0:
            values = self.const
        overrides = dict(getattr(namespace, "config_flags", None) or {})
        overrides[self.key] = values
        namespace.config_flags = overrides


def _config_flag(p: argparse.ArgumentParser, *flags: str, key: str, **kwargs: Any) -> None:
    action = kwargs.pop("action", None)
    if action in ("store_true", "store_const"):
        kwargs.update(nargs=0, const=kwargs.get("const", True))
    p.add_argument(*flags, action=_ConfigFlag, key=key, dest=f"_flag_{key}",
                   default=argparse.SUPPRESS, **kwargs)


GLOBAL_DESTS = ("root", "config", "overrides", "verbose", "quiet", "strict")
SUB_PREFIX = "sub_"


def _add_global_options(p: argparse.ArgumentParser, on_subcommand: bool) -> None:
    """The same options on the main parser and on every subcommand (before or after it).

    On a subcommand they land in `sub_*` so `_merge_global_options` can combine both places.
    """
    pre = SUB_PREFIX if on_subcommand else ""

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if on_subcommand else value

    g = p.add_argument_group("global options")
    g.add_argument("--root", dest=f"{pre}root", metavar="DIR", default=d(None),
                   help="data root (default ./cllm-data, or $CLLM_ROOT)")
    g.add_argument("--config", dest=f"{pre}config", metavar="FILE", default=d(None),
                   help="config file (default ./cllm.toml when present)")
    g.add_argument("--set", dest=f"{pre}overrides", metavar="SECTION.KEY=VALUE",
                   action="append", default=d([]), help="override a config key (repeatable)")
    g.add_argument("-v", "--verbose", dest=f"{pre}verbose", action="count", default=d(0),
                   help="more log output")
    g.add_argument("-q", "--quiet", dest=f"{pre}quiet", action="count", default=d(0),
                   help="less output: no progress bars")
    g.add_argument("--strict", dest=f"{pre}strict", action="store_true", default=d(False),
                   help="exit non-zero when any input failed")


def _merge_global_options(args: argparse.Namespace) -> argparse.Namespace:
    for dest in GLOBAL_DESTS:
        if not hasattr(args, SUB_PREFIX + dest):
            continue
        late = getattr(args, SUB_PREFIX + dest)
        delattr(args, SUB_PREFIX + dest)
        early = getattr(args, dest)
        if dest == "overrides":
            setattr(args, dest, early + late)
        elif dest in ("verbose", "quiet"):
            setattr(args, dest, early + late)
        elif dest == "strict":
            setattr(args, dest, early or late)
        else:
            setattr(args, dest, late)
    return args


# --- subcommand arguments ---------------------------------------------------------------


def _args_ingest(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (recursive)")
    _config_flag(p, "--max-bytes", key="ingest.max_bytes", type=int,
                 help="files larger than this many bytes are refused")


def _args_crawl(p: argparse.ArgumentParser) -> None:
    p.add_argument("urls", nargs="*", metavar="URL", help="start URLs (default: sources.urls)")
    p.add_argument("--url-file", metavar="FILE", help="read start URLs from a file, one a line")
    p.add_argument("--export-urls", metavar="FILE", help="write the stored URLs to a file")
    _config_flag(p, "--max-pages", key="crawl.max_pages", type=int, metavar="N",
                 help="the most pages this crawl keeps in the dataset, over all its runs")
    _config_flag(p, "--max-depth", key="crawl.max_depth", type=int, metavar="N",
                 help="link depth limit")
    _config_flag(p, "--allow-private", key="crawl.allow_private", action="store_true",
                 help="allow loopback/private addresses (tests, local sites)")
    _config_flag(p, "--concurrency", key="crawl.concurrency", type=int, metavar="N",
                 help="concurrent requests")
    _config_flag(p, "--delay", key="crawl.delay_s", type=float, metavar="S",
                 help="seconds between requests to one site")
    _config_flag(p, "--max-bytes", key="crawl.max_bytes", type=int, metavar="N",
                 help="download size limit per response")
    _config_flag(p, "--sitemap", key="crawl.sitemaps", nargs="+", metavar="URL",
                 help="seed from these sitemaps (or robots.txt files listing them)")
    _config_flag(p, "--redis-url", key="crawl.redis_url", metavar="URL",
                 help="share the frontier with other machines through this Redis")
    _config_flag(p, "--ignore-robots", key="crawl.obey_robots", action="store_const", const=False,
                 help="do not fetch or obey robots.txt (only for sites you own)")
    p.add_argument("--restart", action="store_true",
                   help="drop the saved frontier of a stopped crawl of these URLs; start over")


def _args_extract(p: argparse.ArgumentParser) -> None:
    _config_flag(p, "--workers", key="extract.workers", type=int, help="processes (0 = cores)")
    _config_flag(p, "--ocr", key="extract.ocr", choices=["never", "auto", "force"])
    _config_flag(p, "--dpi", key="extract.dpi", type=int)
    _config_flag(p, "--lang", key="extract.lang", help="Tesseract language(s), e.g. eng+deu")
    _config_flag(p, "--psm", key="extract.psm", type=int, help="Tesseract page segmentation mode")
    _config_flag(p, "--timeout", key="extract.timeout_s", type=float,
                 help="seconds per document")
    _config_flag(p, "--max-pages", key="extract.max_pages", type=int)
    _config_flag(p, "--retry-failed", key="extract.retry_failed", action="store_true",
                 help="try again the sources that failed before")
    _config_flag(p, "--redo-ocr", key="extract.ocr_redo", action="store_true",
                 help="re-OCR pages that carry an earlier invisible OCR layer")


def _args_clean(p: argparse.ArgumentParser) -> None:
    _config_flag(p, "--workers", key="clean.workers", type=int, metavar="N",
                 help="processes (0 = cores)")


def _args_tokenize(p: argparse.ArgumentParser) -> None:
    _config_flag(p, "--vocab-size", key="tokenize.vocab_size", type=int, metavar="N",
                 help="tokens in the BPE vocabulary (when training one)")
    _config_flag(p, "--tokenizer", key="tokenize.tokenizer", metavar="FILE",
                 help="use this tokenizer.json instead of training one")
    _config_flag(p, "--val-fraction", key="shards.val_fraction", type=float, metavar="F",
                 help="share of documents in the val split (fixed once shards exist)")
    _config_flag(p, "--shard-tokens", key="shards.shard_tokens", type=int, metavar="N",
                 help="tokens per shard")
    _config_flag(p, "--encoder", key="tokenize.encoder", choices=["auto", "hf", "tiktoken"],
                 help="auto: tiktoken when it reproduces the tokenizer id for id, else hf")
    _config_flag(p, "--threads", key="tokenize.threads", type=int, metavar="N",
                 help="encoder threads (0 = cores)")
    _config_flag(p, "--workers", key="clean.workers", type=int, metavar="N",
                 help="clean processes (0 = cores)")


def _args_shards(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="shards_command", metavar="ACTION", required=True)
    sub.add_parser("inspect", help="counts, dtype, tokenizer")
    sub.add_parser("verify", help="checksums, index consistency, token ids < vocab")
    dec = sub.add_parser("decode", help="print the text of one document")
    dec.add_argument("--split", choices=["train", "val"], default="val")
    dec.add_argument("--doc", type=int, default=0, metavar="N", help="document number in split")


def _args_train(p: argparse.ArgumentParser) -> None:
    _config_flag(p, "--run", key="train.run", help="run name (outputs in runs/<run>/)")
    _config_flag(p, "--max-steps", key="train.max_steps", type=int)
    _config_flag(p, "--resume", key="train.init_from", action="store_const", const="resume",
                 help="continue this run from its last checkpoint")
    _config_flag(p, "--device", key="train.device", choices=["auto", "cpu", "cuda", "mps"])
    _config_flag(p, "--max-seconds", key="train.max_seconds", type=float,
                 help="stop (with a checkpoint) after this much wall time")
    _config_flag(p, "--threads", key="train.threads", type=int, help="torch CPU threads")
    p.add_argument("--init-checkpoint", metavar="FILE",
                   help="start from these weights when the run has no checkpoint yet")
    p.add_argument("--init-optimizer", action="store_true",
                   help="with --init-checkpoint: also continue its optimizer state")


def _args_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", help="checkpoint or model folder (default: promoted)")
    p.add_argument("--doc", dest="docs", action="append", metavar="SPLIT:N",
                   help="score these documents (e.g. val:3; repeatable) instead of val windows")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _config_flag(p, "--device", key="train.device", choices=["auto", "cpu", "cuda", "mps"])


def _args_sample(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", help="checkpoint or model folder (default: promoted)")
    p.add_argument("-p", "--prompt", default="", help="text to continue")
    _config_flag(p, "-n", "--max-new-tokens", key="sample.max_new_tokens", type=int)
    _config_flag(p, "-t", "--temperature", key="sample.temperature", type=float)
    _config_flag(p, "-k", "--top-k", key="sample.top_k", type=int)
    _config_flag(p, "--top-p", key="sample.top_p", type=float)
    _config_flag(p, "-s", "--seed", key="sample.seed", type=int)
    _config_flag(p, "--device", key="train.device", choices=["auto", "cpu", "cuda", "mps"])


def _args_none(p: argparse.ArgumentParser) -> None:
    pass


def _args_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["show", "check"], nargs="?", default="show",
                   help="show: print the resolved config as TOML; check: validate only")


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    handler: str  # "module:function", imported when the command runs


COMMANDS = [
    Command("ingest", "store local files and folders in the raw store", _args_ingest,
            "pipeline.ingest:cli"),
    Command("crawl", "crawl web sites into the raw store", _args_crawl, "crawler.run:cli"),
    Command("extract", "extract text (PDF, OCR, HTML, text, images) into docs/", _args_extract,
            "docproc.extract:cli"),
    Command("clean", "quality-filter and deduplicate extracted documents", _args_clean,
            "pipeline.dataset:cli_clean"),
    Command("tokenize", "clean, dedup, train/load the tokenizer, write token shards",
            _args_tokenize, "pipeline.dataset:cli_tokenize"),
    Command("shards", "inspect, verify or decode token shards", _args_shards,
            "pipeline.shards:cli"),
    Command("train", "train (or resume) the CLLM model on the shards", _args_train,
            "model.train:cli"),
    Command("evaluate", "validation loss and perplexity of a checkpoint", _args_evaluate,
            "model.evaluate:cli"),
    Command("sample", "generate text from a checkpoint", _args_sample, "model.sample:cli"),
    Command("run", "run the whole pipeline on the sources in cllm.toml", _args_none,
            "flows.cli:run"),
    Command("demo", "run the whole pipeline on a built-in sample site", _args_none,
            "flows.cli:demo"),
    Command("validate", "validate the promoted model once (what the schedule runs)",
            _args_none, "flows.cli:validate"),
    Command("retrain", "retrain once if enough new documents arrived", _args_none,
            "flows.cli:retrain"),
    Command("serve", "serve the scheduled validate and retrain deployments", _args_none,
            "flows.cli:serve"),
    Command("status", "what the data root holds, stage by stage", _args_none,
            "pipeline.status:cli"),
    Command("config", "show or check the resolved config", _args_config, "pipeline.cli:cli_config"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cllm",
        description="Documents in, a trained CLLM language model out.",
        epilog="Exit codes: 0 done (input failures are listed), 1 failures with --strict or a "
               "failed check, 2 usage/config error, 3 environment error, 130 interrupted.",
    )
    _add_global_options(parser, on_subcommand=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_args(p)
        _add_global_options(p, on_subcommand=True)
        p.set_defaults(handler=cmd.handler)
    return parser


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest and embedding tools swap it), so a
    `main()` called in-process never leaves a handler on a stream that has since closed.

    Its name must not start with "_": Prefect keeps the root handlers it takes for the user's
    own, and replaces those of private classes with its console handler.
    """

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(verbose: int, quiet: int) -> None:
    level = logging.INFO + 10 * (quiet - verbose)
    level = min(max(level, logging.DEBUG), logging.ERROR)
    fmt = "%(asctime)s %(levelname).1s %(name)s: %(message)s" if verbose else \
        "%(asctime)s %(levelname).1s %(message)s"
    logging.basicConfig(level=level, format=fmt, datefmt="%H:%M:%S",
                        handlers=[CurrentStderrHandler()], force=True)
    # one line per HTTP request (Prefect's API client) drowns the stage lines
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))


def _flag_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for dotted, value in (getattr(args, "config_flags", None) or {}).items():
        section, _, key = dotted.partition(".")
        out.setdefault(section, {})[key] = value
    return out


def make_context(args: argparse.Namespace) -> Context:
    from pipeline.config import DEFAULT_CONFIG_NAME, load_config
    from pipeline.layout import DEFAULT_ROOT, DataRoot

    config_path = Path(args.config) if args.config else None
    if config_path is None and Path(DEFAULT_CONFIG_NAME).is_file():
        config_path = Path(DEFAULT_CONFIG_NAME)  # said explicitly, so flows get it too
    cfg = load_config(config_path, args.overrides, extra=_flag_overrides(args))
    root = DataRoot.at(args.root or os.environ.get("CLLM_ROOT") or DEFAULT_ROOT)
    return Context(cfg=cfg, root=root, strict=args.strict, progress=args.quiet == 0,
                   config_path=config_path)


def _resolve_handler(spec: str) -> Callable[[argparse.Namespace, Context], Any]:
    module_name, _, func = spec.partition(":")
    return getattr(importlib.import_module(module_name), func)


def report_stats(stats: Any, strict: bool) -> int:
    """Print a stage's summary and failures; the exit code they imply."""
    print(stats.summary())
    if stats.failures:
        shown = stats.failures[:FAILURES_SHOWN]
        for f in shown:
            print(f"  failed [{f.error}] {f.source}: {f.message}", file=sys.stderr)
        if stats.n_failed > len(shown):
            print(f"  ... and {stats.n_failed - len(shown)} more (see the failures log)",
                  file=sys.stderr)
    return EXIT_FAILED if strict and stats.n_failed else EXIT_OK


def cli_config(args: argparse.Namespace, ctx: Context) -> int:
    if args.action == "show":
        sys.stdout.write(ctx.cfg.to_toml())
    else:
        print("config OK")
    return EXIT_OK


class Failed(Exception):
    """What `guarded` raises instead of a traceback: the exit code, the message printed."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def guarded(prog: str, call: Callable[[], Any], where: Callable[[], str] = lambda: "") -> Any:
    """Run a command's body; the errors every tool shares become a message and `Failed`.

    Config errors -> 2; environment problems, a locked data root, a full disk -> 3; Ctrl-C ->
    130; a reader that went away (`| head`) -> 1 quietly. `where` names the data root for the
    disk-full message.
    """
    from pipeline.errors import ConfigError, EnvironmentProblem, disk_full_error
    from pipeline.lock import LockedError

    try:
        return call()
    except ConfigError as e:
        print(f"{prog}: config error: {e}", file=sys.stderr)
        raise Failed(EXIT_USAGE) from None
    except (EnvironmentProblem, LockedError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        raise Failed(EXIT_ENVIRONMENT) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise Failed(EXIT_INTERRUPTED) from None
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise Failed(EXIT_FAILED) from None
    except Exception as e:
        # ENOSPC and its kin (SQLite's "database or disk is full"), wherever in a stage they
        # surface: the machine's problem, reported like one, not as a traceback
        full = disk_full_error(e, where=where())
        if full is None:
            raise
        print(f"{prog}: {full}", file=sys.stderr)
        raise Failed(EXIT_ENVIRONMENT) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _merge_global_options(parser.parse_args(argv))
    _setup_logging(args.verbose, args.quiet)
    contexts: list[Context] = []

    def run() -> Any:
        contexts.append(make_context(args))
        return _resolve_handler(args.handler)(args, contexts[0])

    try:
        result = guarded("cllm", run, lambda: str(contexts[0].root.path) if contexts else "")
    except Failed as e:
        return e.code
    if result is None:
        return EXIT_OK
    if isinstance(result, int):
        return result
    return report_stats(result, contexts[0].strict)


if __name__ == "__main__":
    sys.exit(main())
