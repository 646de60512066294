"""Model quality at equal steps: recipes trained on the same shards for the same steps, scored by
one evaluator on the same fixed val windows (loss and bits per byte), over several seeds.

The reference is `bench/minigpt.py` (GPT-2 as nanoGPT builds it, not our model class) trained
by a bare nanoGPT-style loop; our recipes are trained by `model.train.train` (what `cllm
train` runs) with the recipe's [train] keys. Every recipe of a seed sees the same training
windows (model/data.py's windows of (seed, step)) and the same settings (lr, schedule, decay,
clip, batch); what differs is the recipe alone, so differences are taken per seed (paired).

The data is the standard library's documentation (bench/corpus.py: fixed, the same in every
process) taken through our own ingest, extract, clean and tokenize stages, one worker each so
the shards are the same too (their digest is in the results): BPE 2048, 10% of the documents
(by id) in val, about 11% of the tokens.

    .venv/bin/python bench/quality.py                     # the recipes and crystalline suites
    .venv/bin/python bench/quality.py --suite recipes --seeds 5
    .venv/bin/python bench/quality.py --suite throughput  # tokens/s, the issue's model
    .venv/bin/python bench/quality.py --table             # the README's tables from the JSON
    .venv/bin/python bench/quality.py --smoke             # seconds: CI

Runs go to --jobs processes of one thread each, seeds interleaved (each seed runs the recipes
in the reverse order of the seed before), so a machine's changing load favours no recipe.
Losses do not depend on the load; tokens/s from parallel runs on a shared machine are
provisional (the throughput suite times one run at a time). Writes bench/results/quality.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from minigpt import MiniGPT, nanogpt_lr
from quality_data import Data, Setup, check_split, load_data, prepare, score
from quality_summary import REFERENCE, print_table, save, summarise, tables

from model.data import SplitTokens, TrainWindows

RESULTS = Path(__file__).resolve().parent / "results" / "quality.json"


FULL = Setup()  # about a minute a run on a loaded core: both suites in ~30 min on 2 cores
SMOKE = Setup(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=4, steps=6, warmup=2,
              vocab=400, val_fraction=0.3, windows=8, seeds=(1, 2),
              modules=("bisect", "heapq", "textwrap", "fnmatch", "shlex", "getopt"),
              doc_chars=1500)
# the model (4 layers, 4 heads, 256 wide, context 128, batch 16, BPE 4096), for tokens/s
THROUGHPUT = replace(FULL, n_embd=256, batch_size=16, steps=14, vocab=4096)
THROUGHPUT_WARMUP = 4  # untimed steps of each throughput run


@dataclass(frozen=True, slots=True)
class Recipe:
    name: str
    suite: str  # recipes | crystalline (an option over our default recipe)
    train: dict[str, Any] = field(default_factory=dict)  # [train] keys of the recipe
    reference: bool = False  # bench/minigpt.py in the bare loop instead of our trainer
    # "plain-0.02": our weights with every Linear N(0, 0.02), the residual projections unscaled
    init: str = ""


GPT2 = {"norm": "layernorm", "position": "learned", "mlp": "gelu", "bias": False}
LLAMA = {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False}
OUT = {"decay_embeddings": False}  # main before this bench: embeddings out of decay
IN = {"decay_embeddings": True}  # nanoGPT: every 2-D parameter decayed
NANOGPT_IN_OURS = "GPT-2, embeddings decayed (nanoGPT's recipe)"
UNSCALED = "GPT-2, embeddings decayed, residual projections unscaled"
RECIPES = (
    Recipe(REFERENCE, "recipes", reference=True),
    Recipe("GPT-2, embeddings out of decay (main before)", "recipes", {**GPT2, **OUT}),
    Recipe(NANOGPT_IN_OURS, "recipes", {**GPT2, **IN}),
    Recipe(UNSCALED, "recipes", {**GPT2, **IN}, init="plain-0.02"),
    Recipe("Llama (rmsnorm, rope, swiglu), embeddings out of decay", "recipes", {**LLAMA, **OUT}),
    Recipe("Llama, embeddings decayed", "recipes", {**LLAMA, **IN}),
    # the crystalline options, each over our default recipe
    Recipe("embedding_init=lattice", "crystalline", {"embedding_init": "lattice"}),
    Recipe("lattice, lattice_scale=0.05", "crystalline",
           {"embedding_init": "lattice", "lattice_scale": 0.05}),
    Recipe("lattice, input side only (untied head)", "crystalline",
           {"embedding_init": "lattice", "tie_embeddings": False}),
    Recipe("untied head, normal init (control)", "crystalline", {"tie_embeddings": False}),
    Recipe("position=prime", "crystalline", {"position": "prime"}),
    Recipe("position=clock", "crystalline", {"position": "clock"}),
    Recipe("position=spiral", "crystalline", {"position": "spiral"}),
    Recipe("symmetry=twelvefold", "crystalline", {"symmetry": "twelvefold"}),
    Recipe("position=sinusoidal (reference)", "crystalline", {"position": "sinusoidal"}),
)
# what the smoke mode runs: every kind of run (the reference, ours, a start from given
# weights, an option over the default)
SMOKE_RECIPES = (REFERENCE, NANOGPT_IN_OURS, UNSCALED,
                 "lattice, input side only (untied head)")
THROUGHPUT_RECIPES = (NANOGPT_IN_OURS, "GPT-2, embeddings out of decay (main before)")


def default_recipe() -> Recipe:
    """The recipe of the `recipes` suite that the [train] defaults are (else one made of them)."""
    from pipeline.config import TrainConfig

    defaults = TrainConfig()
    for recipe in RECIPES:
        if recipe.suite == "recipes" and not recipe.reference and not recipe.init and all(
                getattr(defaults, k) == v for k, v in recipe.train.items()):
            return recipe
    return Recipe("ours: the [train] defaults", "recipes",
                  {k: getattr(defaults, k) for k in (*GPT2, *OUT)})


def train_keys(recipe: Recipe) -> dict[str, Any]:
    """The recipe's [train] keys: a crystalline option goes over the default recipe's."""
    if recipe.suite == "crystalline":
        return {**default_recipe().train, **recipe.train}
    return dict(recipe.train)


# --- the runs -------------------------------------------------------------------------------


def train_reference(setup: Setup, data: Data, seed: int) -> tuple[torch.nn.Module, list[float],
                                                                  list[float]]:
    """nanoGPT's loop over bench/minigpt.py: (model, loss per step, seconds per step)."""
    torch.manual_seed(seed)
    model = MiniGPT(vocab_size=data.manifest.tokenizer.vocab_size, block_size=setup.block_size,
                    n_layer=setup.n_layer, n_head=setup.n_head, n_embd=setup.n_embd)
    optimizer = model.configure_optimizer(weight_decay=setup.weight_decay, lr=setup.lr,
                                          betas=(0.9, 0.95), device_type="cpu")
    windows = TrainWindows(SplitTokens(data.root.shards, data.manifest, "train"),
                           block_size=setup.block_size, batch_size=setup.batch_size, seed=seed)
    losses, seconds = [], []
    for step in range(setup.steps):
        t0 = time.perf_counter()
        lr = nanogpt_lr(step, lr=setup.lr, min_lr=setup.min_lr, warmup=setup.warmup,
                        decay_steps=setup.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = windows.batch(step, 0)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), setup.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))  # waits for the step, as the trainer does
        seconds.append(time.perf_counter() - t0)
    return model, losses, seconds


def _train_keys(setup: Setup, recipe: Recipe, seed: int, run: str) -> dict[str, Any]:
    return {"n_layer": setup.n_layer, "n_head": setup.n_head, "n_embd": setup.n_embd,
            "block_size": setup.block_size, "batch_size": setup.batch_size,
            "max_steps": setup.steps, "lr": setup.lr, "min_lr": setup.min_lr,
            "warmup_steps": setup.warmup, "scheduler": "cosine",
            "weight_decay": setup.weight_decay, "beta1": 0.9, "beta2": 0.95,
            "grad_clip": setup.grad_clip, "eval_interval": setup.steps, "eval_iters": 1,
            "save_interval": setup.steps, "device": "cpu", "precision": "fp32",
            "seed": seed, "threads": torch.get_num_threads(), "run": run, **train_keys(recipe)}


def _plain_init(cfg: Any, data: Data, seed: int, path: Path) -> Path:
    """A checkpoint of the weights our model draws for `seed`, but with every Linear
    N(0, 0.02): the residual projections not scaled by 1/sqrt(2 n_layer)."""
    from model.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
    from model.cllm import CLLM, INIT_STD, ModelConfig

    torch.manual_seed(seed)
    mc = ModelConfig.from_train(cfg.train, data.manifest.tokenizer.vocab_size)
    model = CLLM(mc)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            torch.nn.init.normal_(p, mean=0.0, std=INIT_STD)
    tok = data.manifest.tokenizer
    return save_checkpoint(path, {
        "format": CHECKPOINT_FORMAT, "model": model.state_dict(), "model_config": mc.to_dict(),
        "step": 0, "tokenizer": {"sha256": tok.sha256, "vocab_size": tok.vocab_size,
                                 "eos_id": tok.eos_id, "json": ""}})


def train_ours(setup: Setup, data: Data, recipe: Recipe, seed: int, run: str
               ) -> tuple[torch.nn.Module, list[float], list[float]]:
    """Our trainer on the recipe: (final model, loss per step, seconds per step)."""
    from model.evaluate import load_model
    from model.metrics import read_metrics, step_rows
    from model.train import train
    from pipeline.config import build_config

    cfg = build_config([{"train": _train_keys(setup, recipe, seed, run)}])
    init = None
    if recipe.init == "plain-0.02":
        init = _plain_init(cfg, data, seed, data.root.path / f"{run}-init.pt")
    result = train(cfg, data.root, progress=False, init_checkpoint=init)
    if result.steps != setup.steps or result.last_checkpoint is None:
        raise RuntimeError(f"{recipe.name}: stopped at step {result.steps} "
                           f"({result.stop_reason})")
    rows = step_rows(read_metrics(result.metrics))
    model, _ = load_model(result.last_checkpoint, "cpu")
    tokens_per_step = setup.batch_size * setup.block_size
    return model, [r["loss"] for r in rows], [tokens_per_step / r["tokens_per_s"] for r in rows]


def run_one(setup: Setup, data: Data, recipe: Recipe, seed: int) -> dict[str, Any]:
    """Train one recipe for one seed and score it."""
    t0 = time.perf_counter()
    run = f"{re.sub(r'[^a-z0-9]+', '-', recipe.name.lower()).strip('-')[:48]}-s{seed}"
    if recipe.reference:
        model, losses, seconds = train_reference(setup, data, seed)
    else:
        model, losses, seconds = train_ours(setup, data, recipe, seed, run)
    loss, bpb = score(model, data, setup)
    timed = seconds[min(THROUGHPUT_WARMUP, len(seconds) - 1):]
    return {"recipe": recipe.name, "seed": seed, "val_loss": loss, "val_bpb": bpb,
            "first_loss": losses[0], "last_train_loss": losses[-1],
            "tokens_per_s": setup.batch_size * setup.block_size / statistics.median(timed),
            "params": sum(p.numel() for p in model.parameters()),
            "seconds": time.perf_counter() - t0}


_WORKER: dict[str, Any] = {}


def _init_worker(setup: Setup, folder: str, threads: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)
    _WORKER["setup"], _WORKER["data"] = setup, load_data(Path(folder))


def _run_in_worker(recipe: Recipe, seed: int) -> dict[str, Any]:
    return run_one(_WORKER["setup"], _WORKER["data"], recipe, seed)


def interleaved(recipes: list[Recipe], seeds: tuple[int, ...]) -> list[tuple[Recipe, int]]:
    """(recipe, seed) in run order: seed by seed, every other seed in reverse recipe order."""
    order = []
    for i, seed in enumerate(seeds):
        order += [(r, seed) for r in (recipes[::-1] if i % 2 else recipes)]
    return order


def run_all(setup: Setup, folder: Path, data: Data, recipes: list[Recipe], jobs: int,
            threads: int) -> list[dict[str, Any]]:
    """Every (recipe, seed), `jobs` at a time (in this process for one), printing each."""
    tasks = interleaved(recipes, setup.seeds)
    results = []
    with contextlib.ExitStack() as stack:
        if jobs > 1:
            pool = stack.enter_context(ProcessPoolExecutor(
                jobs, mp_context=get_context("spawn"), initializer=_init_worker,
                initargs=(setup, str(folder), threads)))
            rows = (f.result() for f in [pool.submit(_run_in_worker, r, s) for r, s in tasks])
        else:
            rows = (run_one(setup, data, r, s) for r, s in tasks)
        for n, row in enumerate(rows, 1):
            results.append(row)
            print(f"  [{n}/{len(tasks)}] {row['recipe']}, seed {row['seed']}: val loss "
                  f"{row['val_loss']:.4f}, {row['val_bpb']:.4f} bits/byte, first loss "
                  f"{row['first_loss']:.2f}, {row['tokens_per_s']:.0f} tokens/s, "
                  f"{row['seconds']:.0f}s", flush=True)
    return results


# --- suites -------------------------------------------------------------------------------


def quality(args: argparse.Namespace, setup: Setup, folder: Path, data: Data, out: Path
            ) -> None:
    suites = ["recipes", "crystalline"] if args.suite == "all" else [args.suite]
    default = default_recipe()
    always = (REFERENCE, default.name)  # every suite's rows are set against these two
    recipes = [r for r in (*RECIPES, default) if r.suite in suites or r.name in always]
    recipes = list({r.name: r for r in recipes}.values())  # the default once
    if args.smoke:
        recipes = [r for r in recipes if r.name in SMOKE_RECIPES or r.name in always]
    jobs, threads = (1 if args.smoke else args.jobs), torch.get_num_threads()
    print(f"{len(recipes)} recipes x {len(setup.seeds)} seeds, {jobs} at a time, "
          f"{threads} thread(s) each; the default recipe: {default.name}", flush=True)
    runs = run_all(setup, folder, data, recipes, jobs, threads)
    for suite in suites:
        names = [r.name for r in recipes if r.suite == suite or r.name in always]
        summary = summarise(runs, names, default.name)
        print_table(summary, f"suite {suite}: val loss after {setup.steps} steps, "
                             f"{len(setup.seeds)} seeds (mean ± std; differences per seed)")
        save(out, suite, {"setup": asdict(setup), "data": data.info, "summary": summary,
                               "runs": [r for r in runs if r["recipe"] in names],
                               "command": " ".join(sys.argv)})
    print(f"\nwrote {out}")


def throughput(setup: Setup, data: Data, out: Path) -> None:
    """tokens/s of our trainer before and after, and of the reference loop: the issue's model,
    one run at a time with every thread, interleaved, median over repeats (`setup.seeds`)."""
    by_name = {r.name: r for r in RECIPES}
    recipes = [by_name[REFERENCE]] + [by_name[n] for n in THROUGHPUT_RECIPES]
    recipes += [r for r in (default_recipe(),) if r not in recipes]
    rates: dict[str, list[float]] = {r.name: [] for r in recipes}
    for recipe, seed in interleaved(recipes, setup.seeds):
        rates[recipe.name].append(run_one(setup, data, recipe, seed)["tokens_per_s"])
        print(f"  {recipe.name}, repeat {seed}: {rates[recipe.name][-1]:.0f} tokens/s",
              flush=True)
    peer = statistics.median(rates[REFERENCE])
    print(f"\n{'set-up':46} {'tokens/s':>9} {'vs reference':>13}   (median of "
          f"{len(setup.seeds)} runs x {setup.steps - THROUGHPUT_WARMUP} timed steps, "
          f"{torch.get_num_threads()} threads)")
    summary = {}
    for name, values in rates.items():
        rate = statistics.median(values)
        summary[name] = {"tokens_per_s": rate, "runs": values, "vs_reference": rate / peer}
        print(f"{name:46} {rate:9.0f} {rate / peer:12.2f}x")
    save(out, "throughput", {"setup": asdict(setup), "summary": summary,
                             "command": " ".join(sys.argv)})


def with_settings(setup: Setup, settings: list[str]) -> Setup:
    """`setup` with KEY=VALUE overrides of its fields (numbers, or module lists a,b,c)."""
    changes: dict[str, Any] = {}
    for item in settings:
        key, _, value = item.partition("=")
        if key not in Setup.__dataclass_fields__ or key == "seeds":
            raise SystemExit(f"--set {item}: not a field of Setup (use --seeds for seeds)")
        kind = type(getattr(setup, key))
        changes[key] = tuple(v for v in value.split(",") if v) if kind is tuple else kind(value)
    return replace(setup, **changes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", default="all",
                   choices=["all", "recipes", "crystalline", "throughput"])
    p.add_argument("--seeds", type=int, default=0, help="seeds per recipe (default 3)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a Setup field, e.g. --set n_embd=256 --set steps=600 (the issue's)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="runs at a time (processes)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per run (default 1; throughput: every core)")
    p.add_argument("--repeats", type=int, default=3, help="throughput: runs per set-up")
    p.add_argument("--smoke", action="store_true", help="a tiny model and corpus (seconds)")
    p.add_argument("--table", action="store_true", help="print the README tables of --out")
    p.add_argument("--out", type=Path, default=None,
                   help=f"results file (default {RESULTS}; with --smoke a temporary one)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.table:
        return tables(args.out or RESULTS, [r.name for r in RECIPES])
    setup = suite_setup(args)
    with tempfile.TemporaryDirectory(prefix="cllm-quality-") as tmp:
        folder = Path(tmp)
        out = args.out or (folder / "quality.json" if args.smoke else RESULTS)
        t0 = time.perf_counter()
        data = prepare(setup, folder)
        (folder / "info.json").write_text(json.dumps(data.info))
        print(f"corpus {data.info['corpus_sha256'][:12]}: {data.info['train_tokens']} train / "
              f"{data.info['val_tokens']} val tokens ({data.info['train_docs']} / "
              f"{data.info['val_docs']} documents), BPE {data.info['vocab']}; prepared in "
              f"{time.perf_counter() - t0:.0f}s", flush=True)
        if args.suite == "throughput":
            torch.set_num_threads(args.threads or os.cpu_count() or 1)
            throughput(setup, data, out)
            return
        if not args.smoke:
            check_split(setup, data)
        torch.set_num_threads(args.threads or 1)
        quality(args, setup, folder, data, out)


def suite_setup(args: argparse.Namespace) -> Setup:
    """The suite's Setup, with --seeds / --repeats and --set applied."""
    if args.suite == "throughput":
        setup = replace(SMOKE, steps=THROUGHPUT_WARMUP + 3) if args.smoke else THROUGHPUT
        setup = replace(setup, seeds=tuple(range(1, args.repeats + 1)))
    else:
        setup = SMOKE if args.smoke else FULL
    if args.seeds:
        setup = replace(setup, seeds=tuple(range(1, args.seeds + 1)))
    return with_settings(setup, args.set)

if __name__ == "__main__":
    main()
