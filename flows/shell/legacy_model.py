"""The legacy model tools' front ends, on the same functions as `cllm train|sample`.

    train_model DATA_DIR [--model-name] [--vocab-size] [--embed-dim] [--num-layers]
                [--num-heads] [--batch-size] [--seq-len] [--learning-rate/--lr] [--epochs]
                [--max-steps] [--warmup-steps] [--scheduler cosine|linear|step|none]
                [--threads] [--checkpoint-dir]
    cllm_inference MODEL [-p PROMPT] [-n TOKENS] [-t TEMPERATURE] [-k TOP_K] [--top-p P]
                   [-s SEED] [-v]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from flows.shell.runner import EXIT_FAILED, EXIT_OK, UsageError, run_tool
from pipeline.config import Device

if TYPE_CHECKING:
    from pipeline.config import Config, SampleConfig
    from pipeline.layout import DataRoot

log = logging.getLogger(__name__)

DEVICES = list(get_args(Device))  # train.device's values

# --- train_model ----------------------------------------------------------------------------

SCHEDULERS = {"cosine": "cosine", "linear": "linear", "step": "step", "none": "constant",
              "constant": "constant"}
# flag (its argparse dest) -> the train.* key it sets
TRAIN_FLAGS = {"model_name": "run", "embed_dim": "n_embd", "num_layers": "n_layer",
               "num_heads": "n_head", "batch_size": "batch_size", "seq_len": "block_size",
               "lr": "lr", "max_steps": "max_steps", "warmup_steps": "warmup_steps",
               "threads": "threads", "device": "device"}
# what a folder of documents goes through before training, in this order
FOLDER_STAGES = ("ingest", "extract", "tokenize")


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train_model",
        description="Train a CLLM model on DATA_DIR: a data root or shards folder, or a folder "
                    "of documents, which is ingested, extracted and tokenized first.")
    p.add_argument("data_dir", metavar="DATA_DIR")
    p.add_argument("--root", help="data root for a folder of documents (default ./cllm-data "
                                  "or $CLLM_ROOT)")
    p.add_argument("--config", help="config file (default ./cllm.toml when present)")
    p.add_argument("--model-name", help="run name (outputs in runs/<name>/)")
    p.add_argument("--vocab-size", type=int, help="tokenizer vocabulary (when tokenizing)")
    p.add_argument("--embed-dim", type=int, help="model width (n_embd)")
    p.add_argument("--num-layers", type=int)
    p.add_argument("--num-heads", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seq-len", type=int, help="context length (block_size)")
    p.add_argument("--learning-rate", "--lr", dest="lr", type=float)
    p.add_argument("--epochs", type=float, help="passes over the training tokens")
    p.add_argument("--max-steps", type=int, help="step limit (with --epochs: the smaller)")
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS))
    p.add_argument("--threads", type=int, help="CPU threads")
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--resume", action="store_true", help="continue the run's last checkpoint")
    p.add_argument("--checkpoint-dir", help="also copy the best checkpoint and its safetensors "
                                            "export here")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def _train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {key: getattr(args, flag) for flag, key in TRAIN_FLAGS.items()
           if getattr(args, flag) is not None}
    if args.scheduler:
        out["scheduler"] = SCHEDULERS[args.scheduler]
    if args.resume:
        out["init_from"] = "resume"
    if "lr" in out:  # keep min_lr <= lr when only --lr is given
        out.setdefault("min_lr", out["lr"] / 10)
    return out


def _data_root_for(data_dir: Path, root_flag: str | None) -> tuple[DataRoot, bool]:
    """(data root, whether DATA_DIR still has to be tokenized)."""
    from pipeline.layout import DEFAULT_ROOT, DataRoot

    if (data_dir / "shards" / "manifest.json").is_file():
        return DataRoot.at(data_dir), False
    if (data_dir / "manifest.json").is_file() and data_dir.name == "shards":
        return DataRoot.at(data_dir.parent), False
    root = DataRoot.at(root_flag or os.environ.get("CLLM_ROOT") or DEFAULT_ROOT)
    return root, True


def _tokenize_folder(data_dir: Path, cfg: Config, root: DataRoot, progress: bool) -> None:
    """Ingest, extract and tokenize a folder of documents into `root`: the stages with the
    folder as their source."""
    from flows.stages import BY_NAME
    from pipeline.config import replace

    log.info("train_model: %s holds no shards: ingesting, extracting and tokenizing it into %s",
             data_dir, root.path)
    cfg = replace(cfg, "sources", paths=[str(data_dir)])
    for name in FOLDER_STAGES:
        log.info("%s", BY_NAME[name].run(cfg, root, progress=progress).summary())


def _steps_for_epochs(epochs: float, cfg: Config, root: DataRoot) -> int:
    from pipeline.shards import read_manifest

    tokens = read_manifest(root.manifest).totals()["train"]["tokens"]
    t = cfg.train
    return max(1, math.ceil(epochs * tokens / (t.batch_size * t.block_size * t.grad_accum)))


def _train_model(args: argparse.Namespace) -> int:
    from model.train import train
    from pipeline.config import load_config, replace

    data_dir = Path(args.data_dir)
    if not data_dir.exists():
        raise UsageError(f"{data_dir} does not exist")
    extra: dict[str, dict[str, Any]] = {"train": _train_overrides(args)}
    if args.vocab_size:
        extra["tokenize"] = {"vocab_size": args.vocab_size}
    cfg = load_config(Path(args.config) if args.config else None, extra=extra)
    root, needs_tokenizing = _data_root_for(data_dir, args.root)
    if needs_tokenizing:
        _tokenize_folder(data_dir, cfg, root, progress=not args.quiet)
    if args.epochs:
        steps = _steps_for_epochs(args.epochs, cfg, root)
        if args.max_steps:
            steps = min(steps, args.max_steps)
        cfg = replace(cfg, "train", max_steps=steps,
                      warmup_steps=min(cfg.train.warmup_steps, steps - 1))
    result = train(cfg, root, progress=not args.quiet)
    if args.checkpoint_dir and result.export is not None:
        out = Path(args.checkpoint_dir)
        out.mkdir(parents=True, exist_ok=True)
        source = result.best_checkpoint or result.last_checkpoint
        if source is not None:
            shutil.copyfile(source, out / f"{cfg.train.run}.pt")
        shutil.copyfile(result.export, out / f"{cfg.train.run}.safetensors")
    best = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "n/a"
    print(f"trained {result.steps} steps ({result.stop_reason}), {result.tokens_seen} tokens, "
          f"best val loss {best}; checkpoints in {result.run_dir}")
    return EXIT_FAILED if result.stop_reason == "nan_loss" else EXIT_OK


def train_model_main(argv: Sequence[str] | None = None) -> int:
    args = _train_parser().parse_args(argv)
    return run_tool("train_model", lambda: _train_model(args), quiet=1 if args.quiet else 0,
                    where=lambda: str(args.root or args.data_dir))


# --- cllm_inference -------------------------------------------------------------------------

# the sample.* key -> the flag that sets it here, so a bad value is told by its flag
SAMPLE_FLAGS = {"max_new_tokens": "-n", "temperature": "-t", "top_k": "-k", "top_p": "--top-p",
                "seed": "-s"}


def _inference_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cllm_inference",
                                description="Generate text from a CLLM checkpoint.")
    p.add_argument("model", metavar="MODEL", help="checkpoint (.pt), run folder or model folder")
    p.add_argument("-p", "--prompt", default="", help="text to continue")
    p.add_argument("-n", "--tokens", type=int, default=100, help="new tokens at most")
    p.add_argument("-t", "--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("-k", "--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0, help="1.0 = off")
    p.add_argument("-s", "--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("-v", "--verbose", action="store_true", help="model details and speed")
    return p


def _sample_config(args: argparse.Namespace) -> SampleConfig:
    """The [sample] settings the flags give; a bad one is a usage error naming its flag."""
    from pipeline.config import SampleConfig
    from pipeline.errors import ConfigError

    try:
        return SampleConfig(max_new_tokens=args.tokens, temperature=args.temperature,
                            top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    except ConfigError as e:
        message = str(e)
        for key, flag in SAMPLE_FLAGS.items():
            message = message.replace(f"sample.{key} ", f"{flag} ")
        raise UsageError(message) from None


def _inference(args: argparse.Namespace) -> int:
    from model.sample import TextGenerator

    settings = _sample_config(args)
    gen = TextGenerator.load(Path(args.model), args.device)
    if args.verbose:
        mc = gen.model.cfg
        print(f"model {gen.meta['path']}: step {gen.meta.get('step')}, "
              f"{gen.model.num_params() / 1e6:.2f}M parameters, {mc.n_layer} layers x "
              f"{mc.n_embd} wide, {mc.n_head} heads, context {mc.block_size}, vocab "
              f"{mc.vocab_size}", file=sys.stderr)
    began = time.perf_counter()
    tokens: list[int] = []
    sys.stdout.write(args.prompt)
    try:
        for piece in gen.stream(args.prompt, settings, tokens):
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stdout.write("\n")  # end the text's line before the one-line message
        raise
    sys.stdout.write("\n")
    if args.verbose:
        secs = time.perf_counter() - began
        print(f"{len(tokens)} tokens in {secs:.2f}s ({len(tokens) / max(secs, 1e-9):.1f} "
              "tokens/s)", file=sys.stderr)
    return EXIT_OK


def inference_main(argv: Sequence[str] | None = None) -> int:
    args = _inference_parser().parse_args(argv)
    return run_tool("cllm_inference", lambda: _inference(args), quiet=1)
