"""`cllm status`: what the data root holds, stage by stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.layout import DataRoot


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


def data_root_status(root: DataRoot) -> dict[str, Any]:
    return {
        "root": str(root.path),
        "raw": _raw_status(root),
        "docs": _docs_status(root),
        "tokenizer": root.tokenizer_json.is_file(),
        "shards": _shards_status(root),
        "runs": _folders(root.runs),
        "models": _folders(root.models),
    }


def cli(args, ctx) -> int:  # noqa: ANN001 - argparse namespace and cli.Context
    print(json.dumps(data_root_status(ctx.root), indent=2))
    return 0
