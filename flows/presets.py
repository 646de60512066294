"""Named config presets layered under the user's settings (flow parameter `preset`)."""

from __future__ import annotations

from typing import Any

# The built-in demo: a local site, a small model trained for about two minutes on 2 cores.
DEMO: dict[str, dict[str, Any]] = {
    "crawl": {"allow_private": True, "delay_s": 0.0, "autothrottle": False, "max_pages": 300,
              "max_depth": 3, "concurrency": 8, "per_domain_concurrency": 8},
    # pydoc repeats each inherited method's docstring in every subclass: whole sentences,
    # which the repeated-line filter rightly counts (11 of the 70 documents are over the
    # default 0.3, up to 0.52); this small corpus needs them all the same
    "clean": {"max_repeated_line_ratio": 0.9, "max_symbol_ratio": 0.4},
    "tokenize": {"vocab_size": 4096},
    # 0.2: this small corpus puts only 1 of its 69 documents in val at 0.1 (chance, but fixed)
    "shards": {"val_fraction": 0.2},
    "train": {"run": "demo", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128,
              "batch_size": 16, "max_steps": 1200, "max_seconds": 130.0, "lr": 2e-3,
              "min_lr": 2e-4, "warmup_steps": 50, "eval_interval": 150, "eval_iters": 8,
              "save_interval": 300, "dropout": 0.0},
    "validate": {"eval_iters": 8, "batch_size": 8, "canary_docs": 5},
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {"demo": DEMO}
