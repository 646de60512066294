"""Generation speed: tokens/s of 256 new tokens after a 128-token prompt, three ways, one run:

    ours        model.sample.generate_ids with the KV cache (what cllm sample runs)
    no cache    the same without it: the whole context read again for every token
    transformers  the same model exported (`cllm export --format hf`) and run by transformers'
                `generate` (greedy, its own KV cache)

Greedy decoding, end-of-text not stopping, the same torch threads for all three, interleaved
runs, medians. The three must make the same tokens (checked: a speed-up that changed the
output would not count). Targets: ours >= 3x no cache, ours >= 1.0x transformers.

    .venv/bin/python bench/sample.py              # GPT-2 recipe, 6 x 384, vocab 8192, fp32
    .venv/bin/python bench/sample.py --smoke      # tiny, seconds (CI)

Writes bench/results/sample.json (or --out).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from train import pydoc_corpus  # bench/train.py: this script's folder is on sys.path

from model.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from model.cllm import CLLM, ModelConfig
from model.export import export_model
from model.sample import generate_ids
from model.tiny import corpus
from pipeline.config import SampleConfig
from pipeline.tokenizer import eos_id, train_bpe

TARGETS = {"no_cache": 3.0, "transformers": 1.0}  # ours / theirs at least
PRESETS = {
    "default": {"n_layer": 6, "n_embd": 384, "n_head": 6, "vocab": 8192, "prompt": 128,
                "new": 256, "runs": 5},
    "smoke": {"n_layer": 2, "n_embd": 64, "n_head": 2, "vocab": 512, "prompt": 16,
              "new": 32, "runs": 1},
}


def make_model(preset: dict[str, Any], folder: Path) -> tuple[CLLM, list[int], int, Path]:
    """A GPT-2-recipe model of random weights (speed does not depend on them) with a real
    tokenizer, saved as a checkpoint; a prompt of real text; the end-of-text id."""
    texts = corpus(docs=200) if preset["vocab"] <= 1024 else pydoc_corpus()
    tok = train_bpe(texts, vocab_size=preset["vocab"])
    context = preset["prompt"] + preset["new"]
    cfg = ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=preset["n_layer"],
                      n_head=preset["n_head"], n_embd=preset["n_embd"], block_size=context)
    torch.manual_seed(0)
    model = CLLM(cfg).eval()
    checkpoint = save_checkpoint(folder / "model.pt", {
        "format": CHECKPOINT_FORMAT, "model": model.state_dict(), "model_config": cfg.to_dict(),
        "step": 0, "tokenizer": {"json": tok.to_str(), "eos_id": eos_id(tok), "sha256": "",
                                 "vocab_size": tok.get_vocab_size()}})
    prompt = tok.encode(" ".join(texts[:20])).ids[:preset["prompt"]]
    return model, prompt, eos_id(tok), checkpoint


def timed(call: Callable[[], list[int]]) -> tuple[float, list[int]]:
    began = time.perf_counter()
    tokens = call()
    return time.perf_counter() - began, tokens


def parse_args() -> argparse.Namespace:
    from common import add_mode_args

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="interleaved runs of each (default 5, "
                        "--quick 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    add_mode_args(parser)
    return parser.parse_args()


def three_ways(model: CLLM, hf: Any, prompt: list[int], eos: int, new: int
               ) -> dict[str, Callable[[], list[int]]]:
    """Each way of making `new` greedy tokens after `prompt`, returning them."""
    greedy = SampleConfig(max_new_tokens=new, temperature=0.0, stop_at_eos=False)
    ids = torch.tensor([prompt])

    def theirs() -> list[int]:
        with torch.no_grad():
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                              max_new_tokens=new, min_new_tokens=new, pad_token_id=eos)
        return out[0, len(prompt):].tolist()

    return {
        "ours": lambda: list(generate_ids(model, prompt, greedy, eos)),
        "no_cache": lambda: list(generate_ids(model, prompt, greedy, eos, use_cache=False)),
        "transformers": theirs,
    }


def measure(ways: dict[str, Callable[[], list[int]]], runs: int
            ) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Seconds of each way over interleaved runs (the order rotating), and its tokens."""
    for call in ways.values():
        call()  # warm-up: allocations, first-call costs
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    tokens: dict[str, list[int]] = {}
    names = list(ways)
    for run in range(runs):
        for name in names[run % len(names):] + names[:run % len(names)]:
            took, tokens[name] = timed(ways[name])
            seconds[name].append(took)
    return seconds, tokens


def print_result(result: dict[str, Any]) -> None:
    shape, rate = result["model"], result["tokens_per_s"]
    print(f"generation, {result['new_tokens']} new tokens after {result['prompt_tokens']} "
          f"({shape['n_layer']} x {shape['n_embd']}, vocab {shape['vocab']}, fp32, "
          f"{result['threads']} threads, median of {result['runs']}):")
    for name in rate:
        line = f"  {name:<13} {rate[name]:8.1f} tokens/s"
        if name in TARGETS:
            same = "yes" if result["same_tokens"][name] else "NO"
            line += (f"   ours / {name} = {result['ratio'][name]:.2f}x (target >= "
                     f"{TARGETS[name]:.1f}x), same tokens: {same}")
        print(line)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    preset = dict(PRESETS["smoke" if args.smoke else "default"])
    runs = args.runs or (3 if args.quick else preset["runs"])
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the figures, not a loading bar
    with tempfile.TemporaryDirectory() as tmp:
        model, prompt, eos, checkpoint = make_model(preset, Path(tmp))
        hf = AutoModelForCausalLM.from_pretrained(
            export_model(checkpoint, Path(tmp) / "hf", "hf").out).eval()
    hf.generation_config.eos_token_id = None  # 256 new tokens, whatever they are
    seconds, tokens = measure(three_ways(model, hf, prompt, eos, preset["new"]), runs)
    rate = {name: preset["new"] / statistics.median(s) for name, s in seconds.items()}
    result = {
        "model": {k: preset[k] for k in ("n_layer", "n_embd", "n_head")} | {
            "vocab": model.cfg.vocab_size, "recipe": "gpt2", "dtype": "float32"},
        "prompt_tokens": len(prompt), "new_tokens": preset["new"], "runs": runs,
        "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "tokens_per_s": rate, "seconds_all": seconds,
        "ratio": {name: rate["ours"] / rate[name] for name in TARGETS},
        "targets": TARGETS, "smoke": args.smoke,
        "same_tokens": {name: tokens[name] == tokens["ours"] for name in TARGETS},
    }
    print_result(result)
    from common import row, write_results

    result["table"] = [row(
        f"sampling, {preset['new']} new tokens after {len(prompt)}, {preset['n_layer']} x "
        f"{preset['n_embd']} model, fp32, {result['threads']} threads",
        f"{rate['ours']:.0f} tokens/s (KV cache; without it {rate['no_cache']:.0f})",
        f"{rate['transformers']:.0f} tokens/s (transformers `generate`, the same weights)",
        f"{result['ratio']['transformers']:.2f}x",
        f"≥ {TARGETS['transformers']:g}x, the same tokens: "
        f"{'yes' if result['same_tokens']['transformers'] else 'NO'}")]
    write_results("sample", result, args, "torch", "transformers",
                  threads=result["threads"])


if __name__ == "__main__":
    main()
