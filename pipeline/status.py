"""`cllm status`: what the data root holds, stage by stage (lines for people, or --json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.layout import DataRoot

REGISTRY_ENTRIES = ("current", "canary")  # in models/ beside the promoted models' folders


def _raw_status(root: DataRoot) -> dict[str, Any]:
    if not root.raw_index.is_file():
        return {}
    from pipeline.failures import FailureLog
    from pipeline.rawstore import RawStore

    with RawStore(root) as store:
        return {"sources": store.count_sources(), "blobs": store.count_blobs(),
                "failures": len(FailureLog(root.raw_failures).read())}


def _docs_status(root: DataRoot) -> dict[str, Any]:
    from pipeline.docstore import list_parts
    from pipeline.failures import FailureLog

    parts = list_parts(root.docs)
    if not parts:
        return {}
    return {"parts": len(parts), "failures": len(FailureLog(root.doc_failures).read())}


def _shards_status(root: DataRoot) -> dict[str, Any]:
    if not root.manifest.is_file():
        return {}
    manifest = json.loads(root.manifest.read_text(encoding="utf-8"))
    return {"manifest_version": manifest.get("version"), "dtype": manifest.get("dtype"),
            "totals": manifest.get("totals")}


def _folders(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _models_status(root: DataRoot) -> dict[str, Any]:
    """The promoted models, which one is current, and the canary set: three different things."""
    folder = root.models
    current = _read_json(folder / "current" / "record.json")
    canary = _read_json(folder / "canary" / "canary.json")
    promoted = [name for name in _folders(folder)
                if name not in REGISTRY_ENTRIES and (folder / name / "record.json").is_file()]
    return {"promoted": promoted,
            "current": {k: current.get(k) for k in ("id", "step", "val_loss", "canary_loss")}
            if current else None,
            "canary": {k: canary.get(k) for k in ("docs", "tokens", "frozen_at")}
            if canary else None}


def data_root_status(root: DataRoot) -> dict[str, Any]:
    return {
        "root": str(root.path),
        "raw": _raw_status(root),
        "docs": _docs_status(root),
        "tokenizer": root.tokenizer_json.is_file(),
        "shards": _shards_status(root),
        "runs": _folders(root.runs),
        "models": _models_status(root),
    }


def _loss(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "n/a"


def _shard_line(shards: dict[str, Any]) -> str:
    totals = shards.get("totals") or {}
    splits = ", ".join(f"{split} {t.get('docs', 0)} documents / {t.get('tokens', 0)} tokens"
                       for split, t in totals.items())
    return f"version {shards.get('manifest_version')} ({shards.get('dtype')}): {splits}"


def status_lines(status: dict[str, Any]) -> list[str]:
    """The status as a person reads it: one line per stage's output."""
    raw, docs, shards, models = status["raw"], status["docs"], status["shards"], status["models"]
    none = "none yet"
    current = models["current"]
    canary = models["canary"]
    return [
        f"data root  {status['root']}",
        f"raw        {raw['sources']} sources, {raw['blobs']} stored files, "
        f"{raw['failures']} failures" if raw else f"raw        {none}",
        f"documents  {docs['parts']} parts, {docs['failures']} failures" if docs
        else f"documents  {none}",
        f"tokenizer  {'trained' if status['tokenizer'] else none}",
        f"shards     {_shard_line(shards)}" if shards else f"shards     {none}",
        f"runs       {len(status['runs'])}: {', '.join(status['runs'])}" if status["runs"]
        else f"runs       {none}",
        f"models     {len(models['promoted'])} promoted" if models["promoted"]
        else f"models     {none}",
        f"current    {current['id']} (step {current['step']}, val loss "
        f"{_loss(current['val_loss'])}, canary loss {_loss(current['canary_loss'])})"
        if current else f"current    {none}",
        f"canary     {canary['docs']} val documents, {canary['tokens']} tokens, frozen "
        f"{canary['frozen_at']}" if canary else f"canary     {none}",
    ]


def cli(args, ctx) -> int:  # noqa: ANN001 - argparse namespace and cli.Context
    status = data_root_status(ctx.root)
    if getattr(args, "json", False):
        print(json.dumps(status, indent=2))
    else:
        print("\n".join(status_lines(status)))
    return 0
