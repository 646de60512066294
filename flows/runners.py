"""Task runners and fan-out: threads locally, Dask (prefect-dask) to scale out."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from pipeline.config import Config
from pipeline.layout import DataRoot

log = logging.getLogger(__name__)


def task_runner_for(cfg: Config | None = None) -> Any:
    """The task runner `cfg.flows` asks for (threads by default)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    if cfg is None or cfg.flows.task_runner == "thread":
        return ThreadPoolTaskRunner()
    import dask
    from prefect_dask import DaskTaskRunner

    # extraction runs each document in a child process (timeouts, leaks); Dask's worker
    # processes are daemonic by default, and daemonic processes may not have children
    dask.config.set({"distributed.worker.daemon": False})
    if cfg.flows.dask_address:
        return DaskTaskRunner(address=cfg.flows.dask_address)
    # one single-threaded process per worker: PyMuPDF and Tesseract are not thread-friendly
    # no dashboard, and the scheduler listens on loopback only
    return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.flows.dask_workers,
                                          "threads_per_worker": 1, "processes": True,
                                          "host": "127.0.0.1", "dashboard_address": None})


def partitions(cfg: Config) -> int:
    if cfg.flows.partitions:
        return cfg.flows.partitions
    return cfg.flows.dask_workers if cfg.flows.task_runner == "dask" else 1


def merge_stats(results: list[dict[str, Any]], stage: str) -> dict[str, Any]:
    """One summary out of the per-partition results of a fanned-out stage."""
    if len(results) == 1:
        return results[0]
    out: dict[str, Any] = {"stage": stage, "partitions": len(results)}
    for key in ("seen", "kept", "bytes", "units"):
        out[key] = sum(r.get(key, 0) for r in results)
    for key in ("skipped", "dropped", "failed"):
        total: Counter[str] = Counter()
        for r in results:
            total.update(r.get(key, {}))
        out[key] = dict(total)
    out["seconds"] = max(r.get("seconds", 0.0) for r in results)
    out["failures"] = [f for r in results for f in r.get("failures", [])]
    out["summary"] = " | ".join(r.get("summary", "") for r in results)
    return out


def extract_fanned_out(cfg: Config, root: DataRoot) -> dict[str, Any]:
    """Extract in `partitions(cfg)` tasks over disjoint sets of blobs, on the flow's runner."""
    from flows.tasks import extract_task

    k = partitions(cfg)
    if k == 1:
        return extract_task(cfg, root)
    futures = [extract_task.submit(cfg, root, (i, k)) for i in range(k)]
    return merge_stats([f.result() for f in futures], "extract")


def tokenize_fanned_out(cfg: Config, root: DataRoot) -> dict[str, Any]:
    """Clean and prepare the tokenizer once, encode the new parts in `partitions(cfg)` tasks,
    then cut the shards from their spools (deterministic: in part order)."""
    from flows.tasks import encode_task, prepare_encoding_task, tokenize_task

    k = partitions(cfg)
    if k > 1:
        names = prepare_encoding_task(cfg, root)
        futures = [encode_task.submit(cfg, root, names[i::k]) for i in range(k) if names[i::k]]
        for future in futures:
            future.result()
    return tokenize_task(cfg, root)
