"""The per-user cache folder: what is costly to derive and the same for every data root (an
unpacked model, a check that depends only on a tokenizer and library versions)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$CLLM_CACHE_DIR, else the user's cache folder ($XDG_CACHE_HOME or ~/.cache) + cllm/."""
    explicit = os.environ.get("CLLM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "cllm"
