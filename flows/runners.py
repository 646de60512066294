"""Task runners and fan-out: threads locally, Dask (prefect-dask) to scale out."""

from __future__ import annotations

import logging
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


def merge_stats(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result out of the per-share results of a fanned-out stage."""
    if len(results) == 1:
        return results[0]
    from flows.common import stats_dict
    from pipeline.stats import StageStats

    parts = [StageStats.from_dict(r) for r in results]
    total = sum(parts[1:], parts[0])
    return stats_dict(total) | {"partitions": len(parts)}


def run_stage(name: str, cfg: Config, root: DataRoot) -> dict[str, Any]:
    """A stage's task; a stage that can split its work runs as `partitions(cfg)` tasks over
    disjoint shares, on the flow's task runner."""
    from flows.stages import BY_NAME
    from flows.tasks import TASKS

    k = partitions(cfg)
    stage_task = TASKS[name]
    if k == 1 or BY_NAME[name].run_share is None:
        return result_of(stage_task(cfg, root, return_state=True))
    futures = [stage_task.submit(cfg, root, (i, k)) for i in range(k)]
    for future in futures:
        future.wait()
    results = [result_of(f.state) for f in futures]
    merged = merge_stats(results)
    return merged | {"cached": True} if all(r.get("cached") for r in results) else merged


def result_of(state: Any) -> dict[str, Any]:
    """A stage task's result (its error raised); one that Prefect took from its cache says
    so, since its figures are those of the run that made it: this run did nothing."""
    result = state.result()
    return result | {"cached": True} if state.name == "Cached" else result


def tokenize_fanned_out(cfg: Config, root: DataRoot) -> dict[str, Any]:
    """Encode the new cleaned parts in `partitions(cfg)` tasks, then run the tokenize stage,
    which finds their spools and only cuts the shards (in part order: deterministic). Both
    paths encode with the same function (`pipeline.encode.encode_parts`)."""
    from flows.tasks import TASKS, encode_task, prepare_encoding_task

    k = partitions(cfg)
    if k > 1:
        names = prepare_encoding_task(cfg, root)
        futures = [encode_task.submit(cfg, root, names[i::k]) for i in range(k) if names[i::k]]
        for future in futures:
            future.result()
    return result_of(TASKS["tokenize"](cfg, root, return_state=True))
