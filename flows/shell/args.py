"""The command line's arguments: global options (before or after the command), and each
command's own. Flags that mirror config keys override the config like `--set` does.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


class _ConfigFlag(argparse.Action):
    """Store a flag's value as an override of config key `self.key` (e.g. "extract.workers")."""

    def __init__(self, *args: Any, key: str, append: bool = False, **kwargs: Any) -> None:
        self.key = key
        self.append = append  # repeatable: the values make a list
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if self.nargs == 0:
            values = self.const
        if values is None or values == []:
            return  # an optional positional left out: the config's value stands
        overrides = dict(getattr(namespace, "config_flags", None) or {})
        overrides[self.key] = [*overrides.get(self.key, []), values] if self.append else values
        namespace.config_flags = overrides


def config_positional(p: argparse.ArgumentParser, name: str, *, key: str, **kwargs: Any
                      ) -> None:
    """A positional argument that overrides config key `key` (ingest's PATHs: sources.paths)."""
    p.add_argument(name, action=_ConfigFlag, key=key, **kwargs)


def _config_flag(p: argparse.ArgumentParser, *flags: str, key: str, **kwargs: Any) -> None:
    action = kwargs.pop("action", None)
    if action == "append":
        kwargs["append"] = True
    if action in ("store_true", "store_const"):
        kwargs.update(nargs=0, const=kwargs.get("const", True))
    elif "choices" not in kwargs:
        kwargs.setdefault("metavar", key.partition(".")[2].upper())  # not _FLAG_TRAIN.RUN
    p.add_argument(*flags, action=_ConfigFlag, key=key, dest=f"_flag_{key}",
                   default=argparse.SUPPRESS, **kwargs)


MODEL_HELP = "checkpoint, run or model folder, or exported model.safetensors"
GLOBAL_DESTS = ("root", "config", "overrides", "verbose", "quiet", "strict")
SUB_PREFIX = "sub_"


def add_global_options(p: argparse.ArgumentParser, on_subcommand: bool) -> None:
    """The same options on the main parser and on every subcommand (before or after it).

    On a subcommand they land in `sub_*` so `merge_global_options` can combine both places.
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


def merge_global_options(args: argparse.Namespace) -> argparse.Namespace:
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
    config_positional(p, "paths", key="sources.paths", nargs="+", metavar="PATH",
                      help="files or folders (recursive)")
    _config_flag(p, "--max-bytes", key="ingest.max_bytes", type=int,
                 help="files larger than this many bytes are refused")


def _args_crawl(p: argparse.ArgumentParser) -> None:
    config_positional(p, "urls", key="sources.urls", nargs="*", metavar="URL",
                      help="start URLs (default: sources.urls)")
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
    _config_flag(p, "--restart", key="crawl.restart", action="store_true",
                 help="drop the saved frontier of a stopped crawl of these URLs; start over")
    _config_flag(p, "--refresh", key="crawl.refresh", action="store_true",
                 help="ask again for every page the crawl keeps, even those checked lately "
                      "(crawl.revisit_after_s)")


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
                 help="share of chunks in the val split (fixed once shards exist)")
    _config_flag(p, "--shard-tokens", key="shards.shard_tokens", type=int, metavar="N",
                 help="tokens per shard")
    _config_flag(p, "--encoder", key="tokenize.encoder", choices=["auto", "hf", "tiktoken"],
                 help="auto: tiktoken when it reproduces the tokenizer id for id, else hf")
    _config_flag(p, "--threads", key="tokenize.threads", type=int, metavar="N",
                 help="encoder threads (0 = cores)")
    _config_flag(p, "--workers", key="clean.workers", type=int, metavar="N",
                 help="clean processes (0 = cores)")
    _config_flag(p, "--rebuild", key="tokenize.rebuild", action="store_true",
                 help="write every cleaned part into new shards that replace the old ones")


def _args_shards(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="shards_command", metavar="ACTION", required=True)
    sub.add_parser("inspect", help="counts, dtype, tokenizer")
    sub.add_parser("verify", help="checksums, index consistency, token ids < vocab")
    dec = sub.add_parser("decode", help="print the source line, then the text, of one entry")
    dec.add_argument("--split", choices=["train", "val"], default="val")
    dec.add_argument("--doc", type=int, default=0, metavar="N",
                     help="entry number in the split (a document, or a run of its chunks)")
    dec.add_argument("--text-only", action="store_true", help="the text alone, no source line")
    find = sub.add_parser("find", help="where a source's tokens lie (shard, entry, tokens)")
    find.add_argument("source", metavar="SOURCE", help="a URL or path as ingested, or a glob")


def _args_train(p: argparse.ArgumentParser) -> None:
    _config_flag(p, "--run", key="train.run", help="run name (outputs in runs/<run>/)")
    _config_flag(p, "--max-steps", key="train.max_steps", type=int)
    _config_flag(p, "--resume", key="train.init_from", action="store_const", const="resume",
                 help="continue this run from its last checkpoint")
    _config_flag(p, "--device", key="train.device", choices=["auto", "cpu", "cuda", "mps"])
    _config_flag(p, "--max-seconds", key="train.max_seconds", type=float,
                 help="stop (with a checkpoint) after this much wall time")
    _config_flag(p, "--threads", key="train.threads", type=int, help="torch CPU threads")
    _config_flag(p, "--init-checkpoint", key="train.init_checkpoint", metavar="FILE",
                 help="start from these weights when the run has no checkpoint yet")
    _config_flag(p, "--init-optimizer", key="train.init_optimizer", action="store_true",
                 help="with --init-checkpoint: also continue its optimizer state")


def _args_evaluate(p: argparse.ArgumentParser) -> None:
    config_positional(p, "checkpoint", key="evaluate.checkpoint", nargs="?",
                      help=f"{MODEL_HELP} (default: promoted)")
    _config_flag(p, "--doc", key="evaluate.docs", action="append", metavar="SPLIT:N",
                 help="score these documents (e.g. val:3; repeatable) instead of val windows")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _config_flag(p, "--device", key="train.device", choices=["auto", "cpu", "cuda", "mps"])


def _args_sample(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", help=f"{MODEL_HELP} (default: promoted)")
    p.add_argument("-p", "--prompt", default="", help="text to continue")
    _config_flag(p, "-n", "--max-new-tokens", key="sample.max_new_tokens", type=int)
    _config_flag(p, "-t", "--temperature", key="sample.temperature", type=float)
    _config_flag(p, "-k", "--top-k", key="sample.top_k", type=int)
    _config_flag(p, "--top-p", key="sample.top_p", type=float)
    _config_flag(p, "-s", "--seed", key="sample.seed", type=int)
    _config_flag(p, "--device", key="train.device", choices=["auto", "cpu", "cuda", "mps"])


def _args_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", help=f"{MODEL_HELP} (default: promoted)")
    p.add_argument("--format", choices=["hf", "gguf"], default="hf",
                   help="hf: a transformers folder (GPT-2, Llama, GPT-NeoX); gguf: llama.cpp "
                        "(GPT-2, Llama) (default hf)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the folder to write (new or empty)")
    p.add_argument("--force", action="store_true", help="replace --out when it is not empty")


def _args_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the status as JSON (for scripts)")


def _args_export_docs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="PATH", help="the file to write")
    p.add_argument("--format", choices=["parquet", "jsonl"], default="parquet")
    p.add_argument("--stage", choices=["extracted", "cleaned"], default="cleaned",
                   help="docs/ as extracted, or the clean stage's kept documents")
    p.add_argument("--with-decisions", action="store_true",
                   help="add the clean stage's decision (kept, or the drop reason) per row")


def _args_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["show", "check"], nargs="?", default="show",
                   help="show: print the resolved config as TOML; check: validate only")


def flag_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config values the command's own flags set, by section."""
    out: dict[str, dict[str, Any]] = {}
    for dotted, value in (getattr(args, "config_flags", None) or {}).items():
        section, _, key = dotted.partition(".")
        out.setdefault(section, {})[key] = value
    return out


# each command's own arguments; a command (or stage) without an entry takes none
ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "ingest": _args_ingest, "crawl": _args_crawl, "extract": _args_extract,
    "clean": _args_clean, "tokenize": _args_tokenize, "shards": _args_shards,
    "train": _args_train, "evaluate": _args_evaluate, "sample": _args_sample,
    "export": _args_export, "status": _args_status, "config": _args_config,
    "export-docs": _args_export_docs,
}
