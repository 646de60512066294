"""Training benchmarks: throughput and MFU against a bare PyTorch loop; the crystalline ablation.

Throughput (default): the issue's model (6 layers, 384 wide, 6 heads, 256 context, batch 8,
vocab 8192) trained by `model.train.train` in several set-ups, next to a bare loop of the same
model (random windows from an in-memory tensor, plain AdamW, fp32) measured in the same run,
and the machine's matmul peak (fp32 on CPU, bf16 on GPU), also measured in the run:

    .venv/bin/python bench/train.py                       # CPU, the issue's model
    .venv/bin/python bench/train.py --device cuda --preset gpt2-small

MFU = 6 x parameters x tokens/s / measured peak. Each figure is the median of --repeats runs,
each the median step time over --steps steps after --warmup steps.

Ablation: validation loss after the same number of steps, on the same shards (the standard
library's documentation as pydoc renders it), for the plain model and each crystalline option:

    .venv/bin/python bench/train.py --ablation [--ablation-steps 300]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch

from model.cllm import CLLM, ModelConfig
from model.flops import flops_per_token, matmul_peak
from model.metrics import read_metrics
from model.runtime import cpu_has_bf16
from model.tiny import make_shards
from model.train import train
from pipeline import shards
from pipeline.config import build_config
from pipeline.layout import DataRoot

PRESETS = {
    # the CPU model
    "issue": {"n_layer": 6, "n_embd": 384, "n_head": 6, "block_size": 256, "batch_size": 8,
              "vocab": 8192},
    # train.* defaults (what `cllm train` and the demo use unless configured)
    "default": {"n_layer": 4, "n_embd": 128, "n_head": 4, "block_size": 128, "batch_size": 16,
                "vocab": 8192},
    # GPT-2 small (124M), for a GPU
    "gpt2-small": {"n_layer": 12, "n_embd": 768, "n_head": 12, "block_size": 1024,
                   "batch_size": 16, "vocab": 50304},
}
ABLATION = [
    ("plain (learned positions, normal init)", {}),
    ("embedding_init=lattice", {"embedding_init": "lattice"}),
    ("embedding_init=lattice, lattice_scale=0.05", {"embedding_init": "lattice",
                                                    "lattice_scale": 0.05}),
    ("position=prime", {"position": "prime"}),
    ("position=clock", {"position": "clock"}),
    ("position=spiral", {"position": "spiral"}),
    ("symmetry=twelvefold", {"symmetry": "twelvefold"}),
    ("position=sinusoidal (reference)", {"position": "sinusoidal"}),
    ("position=rope (reference)", {"position": "rope"}),
]


def random_shards(root: DataRoot, vocab: int, tokens: int, seed: int = 0) -> None:
    """Shards of random token ids (throughput does not depend on the text)."""
    root.ensure()
    rng = np.random.default_rng(seed)
    dtype = shards.dtype_for_vocab(vocab).name
    infos = []
    for split, count in zip(shards.SPLITS, (tokens, tokens // 20), strict=True):
        writer = shards.ShardWriter(root.shards, split, dtype=dtype, eos_id=0,
                                    shard_tokens=1 << 24)
        for _ in range(max(1, count // 1000)):
            writer.add(rng.integers(1, vocab, 999))
        infos.append(writer.flush())
    shards.write_manifest(root.manifest, shards.Manifest(
        tokenizer=shards.TokenizerInfo(sha256="0" * 64, vocab_size=vocab, eos_id=0),
        dtype=dtype, val_fraction=0.05, shards=infos))


def bare_loop(preset: dict[str, Any], device: torch.device, steps: int, warmup: int) -> float:
    """tokens/s of a plain loop: the same model, in-memory random windows, AdamW, fp32."""
    torch.manual_seed(0)
    mc = ModelConfig(vocab_size=preset["vocab"], n_layer=preset["n_layer"],
                     n_head=preset["n_head"], n_embd=preset["n_embd"],
                     block_size=preset["block_size"])
    model = CLLM(mc).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    data = torch.randint(1, preset["vocab"], (1 << 20,))
    B, T = preset["batch_size"], preset["block_size"]
    times = []
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        ix = torch.randint(0, len(data) - T - 1, (B,))
        x = torch.stack([data[i:i + T] for i in ix]).to(device)
        y = torch.stack([data[i + 1:i + T + 1] for i in ix]).to(device)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss.detach())  # wait for the step, as the trainer does
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    return B * T / statistics.median(times)


def trainer_run(preset: dict[str, Any], root: DataRoot, device: str, steps: int, warmup: int,
                run: str, **train: Any) -> float:
    """tokens/s of model.train.train over the same steps (median step after warmup)."""
    settings = {"n_layer": preset["n_layer"], "n_head": preset["n_head"],
                "n_embd": preset["n_embd"], "block_size": preset["block_size"],
                "batch_size": preset["batch_size"], "max_steps": warmup + steps,
                "warmup_steps": 2, "eval_interval": 1 << 30, "save_interval": 1 << 30,
                "device": device, "run": run, **train}
    result = train_fn(build_config([{"train": settings}]), root)
    rows = [r for r in read_metrics(result.metrics) if "tokens_per_s" in r][warmup:]
    return statistics.median(r["tokens_per_s"] for r in rows)


def train_fn(cfg: Any, root: DataRoot) -> Any:
    return train(cfg, root, progress=False)


def throughput(args: argparse.Namespace) -> None:
    preset = PRESETS[args.preset]
    device = torch.device(args.device)
    peak_dtype = "bfloat16" if device.type == "cuda" else "float32"
    peak = matmul_peak(device.type, peak_dtype, seconds=2.0)
    n_params = CLLM(ModelConfig(vocab_size=preset["vocab"], n_layer=preset["n_layer"],
                                n_head=preset["n_head"], n_embd=preset["n_embd"],
                                block_size=preset["block_size"])).num_params()
    variants: list[tuple[str, dict[str, Any]]] = [("trainer fp32 (fused AdamW)",
                                                   {"precision": "fp32"})]
    bf16_ok = device.type == "cuda" or cpu_has_bf16()
    if bf16_ok:
        variants.append(("trainer bf16 autocast", {"precision": "bf16"}))
    if args.compile:
        variants.append(("trainer fp32 + compile", {"precision": "fp32", "compile": True}))
        if bf16_ok:
            variants.append(("trainer bf16 + compile", {"precision": "bf16", "compile": True}))
    print(f"model {args.preset}: {n_params / 1e6:.1f}M parameters, batch "
          f"{preset['batch_size']} x {preset['block_size']}, vocab {preset['vocab']}; device "
          f"{device}, {torch.get_num_threads()} threads; torch {torch.__version__}")
    print(f"measured matmul peak ({peak_dtype}): {peak / 1e9:.1f} GFLOP/s"
          + (f"; bf16: {matmul_peak('cpu', 'bfloat16', seconds=1.0) / 1e9:.1f} GFLOP/s"
             if device.type == "cpu" and cpu_has_bf16() else ""))
    results: dict[str, list[float]] = {"bare loop (fp32, AdamW)": []}
    results.update({name: [] for name, _ in variants})
    with tempfile.TemporaryDirectory() as tmp:
        root = DataRoot.at(tmp)
        random_shards(root, preset["vocab"], tokens=max(200_000, 4 * preset["batch_size"] *
                                                        preset["block_size"] * 8))
        for repeat in range(args.repeats):
            # odd repeats run in reverse order: slow drift of a shared machine's load then
            # favours no set-up
            order = [("bare", {})] + list(enumerate(variants))
            for i, item in order[::-1] if repeat % 2 else order:
                if i == "bare":
                    results["bare loop (fp32, AdamW)"].append(
                        bare_loop(preset, device, args.steps, args.warmup))
                    continue
                name, extra = item
                results[name].append(trainer_run(preset, root, args.device, args.steps,
                                                 args.warmup, f"r{repeat}v{i}", **extra))
            print(f"  repeat {repeat + 1}/{args.repeats}: " + ", ".join(
                f"{name.split(' (')[0]} {vals[-1]:.0f}" for name, vals in results.items()),
                flush=True)
    bare = statistics.median(results["bare loop (fp32, AdamW)"])
    print(f"\n{'set-up':34} {'tokens/s':>10} {'MFU':>6} {'vs bare':>8}   (median of "
          f"{args.repeats} runs x {args.steps} steps; MFU against the {peak_dtype} peak)")
    for name, vals in results.items():
        rate = statistics.median(vals)
        mfu = flops_per_token(n_params) * rate / peak
        print(f"{name:34} {rate:10.0f} {mfu:6.2f} {rate / bare:7.2f}x")


def pydoc_corpus() -> list[str]:
    """The standard library documentation of the sample site, as plain text."""
    import importlib
    import pydoc

    from pipeline.samples import SAMPLE_MODULES

    texts = []
    for name in SAMPLE_MODULES:
        try:
            texts.append(pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext))
        except ImportError:
            continue
    return texts


def ablation(args: argparse.Namespace) -> None:
    base = {"n_layer": 2, "n_head": 4, "n_embd": 128, "block_size": 128, "batch_size": 16,
            "max_steps": args.ablation_steps, "lr": 2e-3, "min_lr": 2e-4,
            "warmup_steps": max(1, args.ablation_steps // 10), "scheduler": "cosine",
            "eval_interval": args.ablation_steps, "eval_iters": 16,
            "save_interval": args.ablation_steps, "device": args.device, "precision": "fp32",
            "seed": 1337}
    with tempfile.TemporaryDirectory() as tmp:
        root = DataRoot.at(tmp)
        texts = pydoc_corpus()
        manifest = make_shards(root, texts, vocab_size=2048, val_every=10,
                               shard_tokens=1 << 22)
        totals = manifest.totals()
        print(f"corpus: {len(texts)} pydoc pages, {totals['train']['tokens']} train / "
              f"{totals['val']['tokens']} val tokens, vocab {manifest.tokenizer.vocab_size}; "
              f"model 2 x 128, context 128, batch 16, {args.ablation_steps} steps, "
              f"{base['eval_iters'] * 16} fixed val windows")
        rows = []
        for i, (name, option) in enumerate(ABLATION):
            t0 = time.perf_counter()
            result = train_fn(build_config([{"train": {**base, **option, "run": f"a{i}"}}]),
                              root)
            final = [r for r in read_metrics(result.metrics) if r.get("val_loss") is not None]
            rows.append((name, final[-1]["val_loss"], time.perf_counter() - t0))
            print(f"  {name}: val loss {rows[-1][1]:.4f} ({rows[-1][2]:.0f}s)", flush=True)
    plain = rows[0][1]
    print(f"\n{'option':44} {'val loss':>9} {'vs plain':>9}")
    for name, loss, _ in rows:
        print(f"{name:44} {loss:9.4f} {loss - plain:+9.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"])
    p.add_argument("--preset", default="issue", choices=sorted(PRESETS))
    p.add_argument("--steps", type=int, default=5, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also time torch.compile set-ups")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--ablation", action="store_true", help="run the ablation instead")
    p.add_argument("--ablation-steps", type=int, default=300)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ablation:
        ablation(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
