"""Training benchmarks: throughput and MFU against a bare minimal GPT; the crystalline ablation.

Throughput (default): the issue's model (6 layers, 384 wide, 6 heads, 256 context, batch 8,
vocab 8192) trained by `model.train.train`, next to nanoGPT's loop over bench/minigpt.py (an
independent minimal GPT of the same shape, not our class; batches from np.memmap of the same
shard, as nanoGPT's get_batch), both with fused AdamW and clipping at 1.0, in an fp32 row and a
bf16-autocast row (each side the same precision), TF32 set explicitly per row (on for the CUDA
fp32 row, as our trainer sets it; off on a CPU, which has none).

    .venv/bin/python bench/train.py [--quick | --smoke]   # CPU, the issue's model
    .venv/bin/python bench/train.py --device cuda --preset gpt2-small   # with torch.compile

The clock: time.perf_counter at the end of every iteration on both sides (ours through
train()'s on_step callback), so an iteration is everything from one step's end to the next's
(batch, forward, backward, clip, AdamW, the loss read back, the trainer's bookkeeping). Each
figure is the median iteration over --steps steps after --warmup steps, then the median of
--repeats runs in alternating order.

MFU (nanoGPT's estimate_mfu): FLOPs per token = 6 N + 12 L H Q T (N parameters without the
position embedding, L layers, H heads, Q head size, T context), times tokens/s, over the
theoretical peak from the hardware's spec (CPU: cores x clock x FLOPs per cycle per core for
the precision, the derivation printed; GPU: the bf16 dense tensor peak of its model). A second
column gives the same FLOPs over the matmul rate measured in this run.

Ablation: validation loss after the same number of steps, on the same shards (the standard
library's documentation as pydoc renders it), for the plain model and each crystalline option:

    .venv/bin/python bench/train.py --ablation [--ablation-steps 300]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch
from hardware import spec_peak
from minigpt import MiniGPT

from model.cllm import CLLM, ModelConfig
from model.flops import matmul_peak
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
    # a few seconds: what --smoke runs
    "tiny": {"n_layer": 2, "n_embd": 32, "n_head": 2, "block_size": 32, "batch_size": 4,
             "vocab": 512},
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


def nanogpt_flops_per_token(preset: dict[str, Any], n_params: int) -> float:
    """nanoGPT's estimate_mfu: 6N + 12 L H Q T per token (N without the positions)."""
    L, H, T = preset["n_layer"], preset["n_head"], preset["block_size"]
    Q = preset["n_embd"] // H
    return 6 * n_params + 12 * L * H * Q * T


def minigpt(preset: dict[str, Any]) -> MiniGPT:
    return MiniGPT(vocab_size=preset["vocab"], block_size=preset["block_size"],
                   n_layer=preset["n_layer"], n_head=preset["n_head"], n_embd=preset["n_embd"])


def set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def bare_loop(preset: dict[str, Any], root: DataRoot, device: torch.device, precision: str,
              compile_: bool, steps: int, warmup: int) -> float:
    """tokens/s of nanoGPT's loop over bench/minigpt.py: median whole iteration."""
    torch.manual_seed(0)
    model = minigpt(preset).to(device)
    opt = model.configure_optimizer(weight_decay=0.1, lr=3e-4, device_type=device.type)
    step_fn = torch.compile(model) if compile_ else model
    dtype = shards.dtype_for_vocab(preset["vocab"])
    data = np.memmap(sorted(root.shards.glob("train-*.bin"))[0], dtype=dtype, mode="r")
    B, T = preset["batch_size"], preset["block_size"]
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" \
        else contextlib.nullcontext()
    ends = [time.perf_counter()]
    for _ in range(warmup + steps):
        ix = torch.randint(len(data) - T - 1, (B,))
        x = torch.stack([torch.from_numpy(data[i:i + T].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + T].astype(np.int64)) for i in ix])
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with ctx:
            _, loss = step_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss.detach())  # the loss read back every step, as the trainer does
        ends.append(time.perf_counter())
    return B * T / statistics.median(np.diff(ends[warmup:]))


def trainer_run(preset: dict[str, Any], root: DataRoot, device: str, steps: int, warmup: int,
                run: str, **train: Any) -> float:
    """tokens/s of model.train.train: median whole iteration, on_step to on_step."""
    settings = {"n_layer": preset["n_layer"], "n_head": preset["n_head"],
                "n_embd": preset["n_embd"], "block_size": preset["block_size"],
                "batch_size": preset["batch_size"], "max_steps": warmup + steps + 1,
                "warmup_steps": 2, "eval_interval": 1 << 30, "save_interval": 1 << 30,
                "decay_embeddings": True, "device": device, "run": run, **train}
    ends: list[float] = []
    train_fn(build_config([{"train": settings}]), root,
             on_step=lambda _: ends.append(time.perf_counter()))
    return preset["batch_size"] * preset["block_size"] / statistics.median(
        np.diff(ends[warmup:]))


def train_fn(cfg: Any, root: DataRoot, **kwargs: Any) -> Any:
    return train(cfg, root, progress=False, **kwargs)


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    preset = PRESETS[args.preset]
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    n_all = minigpt(preset).num_params()
    n_params = n_all - preset["block_size"] * preset["n_embd"]  # nanoGPT: without positions
    ours_n = CLLM(ModelConfig(vocab_size=preset["vocab"], n_layer=preset["n_layer"],
                              n_head=preset["n_head"], n_embd=preset["n_embd"],
                              block_size=preset["block_size"])).num_params()
    fpt = nanogpt_flops_per_token(preset, n_params)
    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" or cpu_has_bf16() else [])
    peaks = {p: spec_peak(device, p, threads) for p in precisions}
    measured = {p: matmul_peak(device.type, "bfloat16" if p == "bf16" else "float32",
                               seconds=0.1 if args.smoke else 1.0) for p in precisions}
    print(f"model {args.preset}: {n_all / 1e6:.2f}M parameters (ours {ours_n / 1e6:.2f}M), "
          f"batch {preset['batch_size']} x {preset['block_size']}, vocab {preset['vocab']}; "
          f"device {device}, {threads} threads; torch {torch.__version__}; compile "
          f"{args.compile}")
    print(f"FLOPs per token (nanoGPT estimate_mfu, 6N + 12LHQT, N = {n_params:,}): {fpt:,.0f}")
    for p in precisions:
        print(f"peak {p}: {peaks[p]['flops'] / 1e9:,.1f} GFLOP/s from the spec "
              f"({peaks[p]['derivation']}); measured matmul {measured[p] / 1e9:,.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        root = DataRoot.at(tmp)
        random_shards(root, preset["vocab"], tokens=max(200_000, 4 * preset["batch_size"] *
                                                        preset["block_size"] * 8))
        rows = [measure_row(p, preset, root, device, args) for p in precisions]
    print(f"\n{'row':6} {'tf32':>5} {'ours tok/s':>11} {'bare tok/s':>11} {'ratio':>6} "
          f"{'MFU ours':>9} {'bare':>6} {'of measured':>12}   (median of {args.repeats} runs "
          f"x {args.steps} iterations)")
    for r in rows:
        peak, rate = peaks[r["precision"]]["flops"], measured[r["precision"]]
        r["mfu"] = {k: round(fpt * r["tokens_per_s"][k] / peak, 4) for k in ("ours", "bare")}
        r["of_measured_matmul"] = {k: round(fpt * r["tokens_per_s"][k] / rate, 4)
                                   for k in ("ours", "bare")}
        print(f"{r['precision']:6} {str(r['tf32']):>5} {r['tokens_per_s']['ours']:11.0f} "
              f"{r['tokens_per_s']['bare']:11.0f} {r['ratio']:5.2f}x {r['mfu']['ours']:9.3f} "
              f"{r['mfu']['bare']:6.3f} {r['of_measured_matmul']['ours']:7.3f} / "
              f"{r['of_measured_matmul']['bare']:.3f}")
    return {"preset": args.preset, "shape": preset, "device": args.device,
            "compile": args.compile, "params": n_all, "params_nanogpt_n": n_params,
            "params_ours": ours_n, "flops_per_token": fpt, "peaks": peaks,
            "measured_matmul_flops": measured, "steps": args.steps, "warmup": args.warmup,
            "repeats": args.repeats, "rows": rows,
            "clock": "time.perf_counter at each iteration's end, both sides; median iteration",
            "table": train_table(args, preset, rows, threads)}


def measure_row(precision: str, preset: dict[str, Any], root: DataRoot, device: torch.device,
                args: argparse.Namespace) -> dict[str, Any]:
    """Ours and bare at one precision, alternating; TF32 as the trainer sets it."""
    tf32 = device.type == "cuda" and precision == "fp32"
    runs: dict[str, list[float]] = {"ours": [], "bare": []}
    for n in range(args.repeats):
        for side in ("ours", "bare") if n % 2 == 0 else ("bare", "ours"):
            set_tf32(tf32)
            if side == "bare":
                runs[side].append(bare_loop(preset, root, device, precision, args.compile,
                                            args.steps, args.warmup))
            else:
                runs[side].append(trainer_run(preset, root, args.device, args.steps,
                                              args.warmup, f"{precision}{n}",
                                              precision=precision, compile=args.compile))
        print(f"  {precision} run {n + 1}: ours {runs['ours'][-1]:.0f}, bare "
              f"{runs['bare'][-1]:.0f} tokens/s", flush=True)
    set_tf32(False)
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"precision": precision, "tf32": tf32, "tokens_per_s": med,
            "ratio": round(med["ours"] / med["bare"], 3), "runs": runs}


def spread(runs: dict[str, list[float]]) -> str:
    """The lowest and highest ratio of paired runs: how far a loaded machine moved it."""
    ratios = [o / b for o, b in zip(runs["ours"], runs["bare"], strict=True)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}x"


def train_table(args: argparse.Namespace, preset: dict[str, Any], rows: list[dict[str, Any]],
                threads: int) -> list[dict[str, str]]:
    from common import row

    shape = (f"{preset['n_layer']} x {preset['n_embd']}, context {preset['block_size']}, "
             f"batch {preset['batch_size']}")
    table = []
    for r in rows:
        t = r["tokens_per_s"]
        table.append(row(
            f"train, {args.preset} model ({shape}), {r['precision']} both sides, TF32 "
            f"{'on' if r['tf32'] else 'off'}, {args.device}, {threads} threads"
            + (", torch.compile" if args.compile else ""),
            f"{t['ours']:.0f} tokens/s; MFU {r['mfu']['ours']:.2f} of the spec peak, "
            f"{r['of_measured_matmul']['ours']:.2f} of the measured matmul rate",
            f"{t['bare']:.0f} tokens/s (nanoGPT loop over bench/minigpt.py, fused AdamW); MFU "
            f"{r['mfu']['bare']:.2f}", f"{r['ratio']:.2f}x (runs {spread(r['runs'])})",
            "≥ 40% MFU (GPU)" if args.device == "cuda" else "≥ 0.9x"))
    return table


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


SIZES = {"smoke": ("tiny", 2, 1, 1), "quick": ("default", 4, 2, 3), "full": ("issue", 8, 2, 5)}


def main() -> None:
    from common import add_mode_args, mode, write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"])
    p.add_argument("--preset", choices=sorted(PRESETS), help="model (default: issue)")
    p.add_argument("--steps", type=int, help="timed iterations per run")
    p.add_argument("--warmup", type=int, help="untimed iterations first")
    p.add_argument("--repeats", type=int)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile both sides (default on with --device cuda)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--ablation", action="store_true", help="run the ablation instead")
    p.add_argument("--ablation-steps", type=int, default=300)
    add_mode_args(p)
    args = p.parse_args()
    for key, value in zip(("preset", "steps", "warmup", "repeats"), SIZES[mode(args)],
                          strict=True):
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.compile = args.compile or args.device == "cuda"
    logging.basicConfig(level=logging.ERROR)
    if args.threads or args.smoke:  # a tiny model gains nothing from a second thread
        torch.set_num_threads(args.threads or 1)
    if args.ablation:
        ablation(args)
        return
    result = throughput(args)
    name = "train" if args.device == "cpu" else f"train-{args.device}"
    write_results(name, result, args, "torch", threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
