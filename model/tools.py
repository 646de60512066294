"""The original project's command-line tools, on the same functions as `cllm train|sample`.

  train_model DATA_DIR [--model-name] [--vocab-size] [--embed-dim] [--num-layers] [--num-heads]
              [--batch-size] [--seq-len] [--learning-rate/--lr] [--epochs] [--max-steps]
              [--warmup-steps] [--scheduler cosine|linear|step|none] [--threads]
              [--checkpoint-dir]
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
from typing import Any

log = logging.getLogger(__name__)

SCHEDULERS = {"cosine": "cosine", "linear": "linear", "step": "step", "none": "constant",
              "constant": "constant"}


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
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--resume", action="store_true", help="continue the run's last checkpoint")
    p.add_argument("--checkpoint-dir", help="also copy the best checkpoint and its safetensors "
                                            "export here")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def _train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    flags = {"model_name": "run", "embed_dim": "n_embd", "num_layers": "n_layer",
             "num_heads": "n_head", "batch_size": "batch_size", "seq_len": "block_size",
             "lr": "lr", "max_steps": "max_steps", "warmup_steps": "warmup_steps",
             "threads": "threads", "device": "device"}
    out = {key: getattr(args, flag) for flag, key in flags.items()
           if getattr(args, flag) is not None}
    if args.scheduler:
        out["scheduler"] = SCHEDULERS[args.scheduler]
    if args.resume:
        out["init_from"] = "resume"
    if "lr" in out:  # keep min_lr <= lr when only --lr is given
        out.setdefault("min_lr", out["lr"] / 10)
    return out


def _data_root_for(data_dir: Path, root_flag: str | None) -> tuple[Any, bool]:
    """(data root, whether DATA_DIR still has to be tokenized)."""
    from pipeline.layout import DEFAULT_ROOT, DataRoot

    if (data_dir / "shards" / "manifest.json").is_file():
        return DataRoot.at(data_dir), False
    if (data_dir / "manifest.json").is_file() and data_dir.name == "shards":
        return DataRoot.at(data_dir.parent), False
    root = DataRoot.at(root_flag or os.environ.get("CLLM_ROOT") or DEFAULT_ROOT)
    return root, True


def tokenize_folder(data_dir: Path, cfg: Any, root: Any, progress: bool) -> None:
    """Ingest, extract and tokenize a folder of documents into `root`."""
    log.info("train_model: %s holds no shards: ingesting, extracting and tokenizing it into %s",
             data_dir, root.path)
    from pipeline.ingest import ingest_paths

    log.info("%s", ingest_paths([data_dir], cfg, root, progress=progress).summary())
    from docproc.extract import extract_all

    log.info("%s", extract_all(cfg, root, progress=progress).summary())
    from pipeline.tokenization import tokenize_dataset

    log.info("%s", tokenize_dataset(cfg, root, progress=progress).summary())


def _steps_for_epochs(epochs: float, cfg: Any, root: Any) -> int:
    from pipeline.shards import read_manifest

    tokens = read_manifest(root.manifest).totals()["train"]["tokens"]
    t = cfg.train
    return max(1, math.ceil(epochs * tokens / (t.batch_size * t.block_size * t.grad_accum)))


def train_model_main(argv: Sequence[str] | None = None) -> int:
    from pipeline.cli import Failed, guarded

    from model.train import TrainResult, train
    from pipeline.config import Config, load_config, replace
    from pipeline.errors import ConfigError

    args = _train_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname).1s %(message)s", datefmt="%H:%M:%S")
    data_dir = Path(args.data_dir)
    if not data_dir.exists():
        print(f"train_model: {data_dir} does not exist", file=sys.stderr)
        return 2
    def run() -> tuple[Config, TrainResult]:
        extra: dict[str, dict[str, Any]] = {"train": _train_overrides(args)}
        if args.vocab_size:
            extra["tokenize"] = {"vocab_size": args.vocab_size}
        cfg = load_config(Path(args.config) if args.config else None, extra=extra)
        try:
            root, needs_tokenizing = _data_root_for(data_dir, args.root)
            if needs_tokenizing:
                tokenize_folder(data_dir, cfg, root, progress=not args.quiet)
            if args.epochs:
                steps = _steps_for_epochs(args.epochs, cfg, root)
                if args.max_steps:
                    steps = min(steps, args.max_steps)
                cfg = replace(cfg, "train", max_steps=steps,
                              warmup_steps=min(cfg.train.warmup_steps, steps - 1))
            return cfg, train(cfg, root, progress=not args.quiet)
        except (FileNotFoundError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            print(f"train_model: {e}", file=sys.stderr)
            raise Failed(1) from None

    try:
        cfg, result = guarded("train_model", run, lambda: str(args.root or data_dir))
    except Failed as e:
        return e.code
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
    return 1 if result.stop_reason == "nan_loss" else 0


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
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("-v", "--verbose", action="store_true", help="model details and speed")
    return p


def inference_main(argv: Sequence[str] | None = None) -> int:
    from model.sample import TextGenerator
    from pipeline.config import SampleConfig

    args = _inference_parser().parse_args(argv)
    problems = [msg for bad, msg in ((args.tokens <= 0, "-n must be > 0"),
                                     (args.temperature < 0, "-t must be >= 0"),
                                     (args.top_k < 0, "-k must be >= 0"),
                                     (not 0 < args.top_p <= 1, "--top-p must be in (0, 1]"))
                if bad]
    if problems:
        print(f"cllm_inference: {'; '.join(problems)}", file=sys.stderr)
        return 2
    try:
        gen = TextGenerator.load(Path(args.model), args.device)
    except (FileNotFoundError, ValueError) as e:
        print(f"cllm_inference: {e}", file=sys.stderr)
        return 1
    if args.verbose:
        mc = gen.model.cfg
        print(f"model {gen.meta['path']}: step {gen.meta.get('step')}, "
              f"{gen.model.num_params() / 1e6:.2f}M parameters, {mc.n_layer} layers x "
              f"{mc.n_embd} wide, {mc.n_head} heads, context {mc.block_size}, vocab "
              f"{mc.vocab_size}", file=sys.stderr)
    settings = SampleConfig(max_new_tokens=args.tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    began = time.perf_counter()
    tokens: list[int] = []
    sys.stdout.write(args.prompt)
    for piece in gen.stream(args.prompt, settings, tokens):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if args.verbose:
        secs = time.perf_counter() - began
        print(f"{len(tokens)} tokens in {secs:.2f}s ({len(tokens) / max(secs, 1e-9):.1f} "
              "tokens/s)", file=sys.stderr)
    return 0
