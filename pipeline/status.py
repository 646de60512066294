"""`cllm status`: what the data root holds, stage by stage (lines for people, or --json).

The stages come from the caller (the one list sits above the core); each names the hand-offs
it writes, and each hand-off has its describer here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.layout import DataRoot
from pipeline.stage import Stage

REGISTRY_ENTRIES = ("current", "canary")  # in models/ beside the promoted models' folders


def _raw_status(root: DataRoot) -> dict[str, Any]:
    if not root.raw_index.is_file():
        return {}
    from pipeline.failures import FailureLog
    from pipeline.rawstore import RawStore

    with RawStore(root) as store:
        return {"sources": store.count_sources(), "blobs": store.count_blobs(),
                "types": store.count_blobs_by_type(),
                **_failure_counts(FailureLog(root.raw_failures).read())}


def _docs_status(root: DataRoot) -> dict[str, Any]:
    from pipeline.docstore import list_parts
    from pipeline.failures import FailureLog

    parts = list_parts(root.docs)
    if not parts:
        return {}
    return {"parts": len(parts), **_failure_counts(FailureLog(root.doc_failures).read())}


def _failure_counts(rows: Sequence[Any]) -> dict[str, Any]:
    """How many failure rows, and how many of each kind (corrupt, unsafe_path, ...)."""
    kinds = Counter(row.error for row in rows)
    return {"failures": len(rows), "failure_kinds": dict(kinds.most_common())}


def _clean_status(root: DataRoot) -> dict[str, Any]:
    if not root.dedup_index.is_file():
        return {}
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{root.dedup_index}?mode=ro", uri=True)
        try:
            parts = db.execute("SELECT COUNT(*) FROM parts").fetchone()[0]
            counts = dict(db.execute("SELECT status, COUNT(*) FROM docs GROUP BY status"))
        finally:
            db.close()
    except sqlite3.Error:
        return {}
    return {"parts": parts, "documents": counts, **_recheck_status(root)}


def _recheck_status(root: DataRoot) -> dict[str, Any]:
    """The last decontamination re-check of the documents cleaned before an evaluation file
    changed (pipeline/decontam.py), and how many of those it found are in the shards now."""
    from pipeline.decontam import decontam_dir, read_recheck

    report = read_recheck(decontam_dir(root.state))
    if not report or not report.get("checked"):
        return {}
    found = {row["id"] for row in report.get("contaminated", [])}
    in_shards = 0
    if found and root.manifest.is_file():
        from pipeline.provenance import read_provenance
        from pipeline.shards import read_manifest

        for info in read_manifest(root.manifest).shards:
            in_shards += sum(row["doc"] in found for row in read_provenance(root.shards, info))
    files = report.get("eval", {}).get("files", [])
    return {"recheck": {"checked": report["checked"], "contaminated": len(found),
                        "entries_in_shards": in_shards, "eval_files": len(files),
                        "n": report.get("eval", {}).get("n"), "at": report.get("at")}}


def _tokenizer_status(root: DataRoot) -> dict[str, Any]:
    return {"trained": True} if root.tokenizer_json.is_file() else {}


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
            "current": _current_model(current) if current else None,
            "canary": {k: canary.get(k) for k in ("docs", "tokens", "frozen_at")}
            if canary else None}


def _current_model(record: dict[str, Any]) -> dict[str, Any]:
    """The promoted model's figures: val loss, its perplexity, bits per byte, canary loss."""
    import math

    loss = record.get("val_loss")
    perplexity = math.exp(min(loss, 700.0)) if isinstance(loss, int | float) else None
    return {**{k: record.get(k) for k in ("id", "step", "val_loss")}, "val_ppl": perplexity,
            **{k: record.get(k) for k in ("val_bpb", "canary_loss")}}


def _runs_status(root: DataRoot) -> dict[str, Any]:
    runs = _folders(root.runs)
    return {"runs": runs} if runs else {}


DESCRIBE: dict[str, Callable[[DataRoot], dict[str, Any]]] = {
    "raw": _raw_status, "docs": _docs_status, "clean": _clean_status,
    "tokenizer": _tokenizer_status, "shards": _shards_status, "runs": _runs_status,
    "models": _models_status,
}


def data_root_status(root: DataRoot, stages: Sequence[Stage]) -> dict[str, Any]:
    """Each stage with what it reads and writes, and what each hand-off holds now."""
    return {
        "root": str(root.path),
        "stages": {s.name: {"reads": list(s.reads), "writes": list(s.writes)} for s in stages},
        **{name: describe(root) for name, describe in DESCRIBE.items()},
    }


def _loss(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "n/a"


def _shard_line(shards: dict[str, Any]) -> str:
    totals = shards.get("totals") or {}
    splits = ", ".join(f"{split} {t.get('docs', 0)} documents / {t.get('tokens', 0)} tokens"
                       for split, t in totals.items())
    return f"version {shards.get('manifest_version')} ({shards.get('dtype')}): {splits}"


def _counts(counts: dict[str, int]) -> str:
    return f" ({', '.join(f'{k} {n}' for k, n in counts.items())})" if counts else ""


def _handoff_line(name: str, state: dict[str, Any]) -> str:
    if not state:
        return f"{name}: none yet"
    if name == "raw":
        return (f"raw: {state['sources']} sources, {state['blobs']} stored files"
                f"{_counts(state['types'])}, {state['failures']} failures"
                f"{_counts(state['failure_kinds'])}")
    if name == "docs":
        return (f"docs: {state['parts']} parts, {state['failures']} failures"
                f"{_counts(state['failure_kinds'])}")
    if name == "clean":
        decided = ", ".join(f"{k} {v}" for k, v in sorted(state["documents"].items()))
        line = f"clean: {state['parts']} parts cleaned ({decided or 'no documents'})"
        return line + _recheck_line(state["recheck"]) if "recheck" in state else line
    if name == "tokenizer":
        return "tokenizer: trained"
    if name == "shards":
        return f"shards: {_shard_line(state)}"
    if name == "runs":
        return f"runs: {len(state['runs'])} ({', '.join(state['runs'])})"
    return f"{name}: {len(state['promoted'])} promoted" if state["promoted"] else f"{name}: none"


def _recheck_line(recheck: dict[str, Any]) -> str:
    return (f"; decontamination re-check {recheck['at']}: {recheck['contaminated']} of "
            f"{recheck['checked']} documents cleaned before share {recheck['n']}-grams with the "
            f"evaluation text ({recheck['eval_files']} files), {recheck['entries_in_shards']} "
            "shard entries of them (`cllm tokenize --rebuild` leaves them out)")


def status_lines(status: dict[str, Any]) -> list[str]:
    """The status as a person reads it: each stage and what its outputs hold, then the
    registry (promoted models, the current one, the canary set)."""
    lines = [f"data root  {status['root']}"]
    for name, stage in status["stages"].items():
        said = "; ".join(_handoff_line(w, status[w]) for w in stage["writes"])
        lines.append(f"{name:<10} {said or 'writes nothing: scores ' + ', '.join(stage['reads'])}")
    models = status["models"]
    current, canary = models["current"], models["canary"]
    lines += [
        f"models     {len(models['promoted'])} promoted" if models["promoted"]
        else "models     none yet",
        f"current    {current['id']} (step {current['step']}, val loss "
        f"{_loss(current['val_loss'])}, perplexity {_loss(current['val_ppl'], 2)}, bits per "
        f"byte {_loss(current['val_bpb'])}, canary loss {_loss(current['canary_loss'])})"
        if current else "current    none yet",
        f"canary     {canary['docs']} val documents, {canary['tokens']} tokens, frozen "
        f"{canary['frozen_at']}" if canary else "canary     none yet",
    ]
    return lines
