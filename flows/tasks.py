"""Prefect tasks, one per stage of `flows.stages.STAGES`, each publishing a table artifact.

Made from the stages' own declarations: a stage whose failures can be transient (the crawl)
is retried; a cached stage is skipped by a key over what it reads (its input hand-offs'
content), the config sections it depends on and its outputs' generation, so an unchanged
source is not processed again (the stages also skip finished work themselves).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from flows.common import fingerprint, generation, publish_stats, stats_dict
from flows.stages import STAGES
from pipeline.config import Config
from pipeline.layout import DataRoot
from pipeline.stage import Stage, handoff_path

log = logging.getLogger(__name__)

RETRIES = 2  # of a stage whose failures can be transient (network)
RETRY_DELAY_S = 10


def _listing(root: DataRoot, name: str) -> list[Any]:
    """What a hand-off holds, cheaply: the raw store's blobs, else the folder's files."""
    if name == "raw":
        from pipeline.rawstore import RawStore

        if not root.raw_index.is_file():
            return []
        with RawStore(root) as store:
            return [b.sha256 for b in store.iter_blobs()]
    folder = handoff_path(root, name)
    if not folder.is_dir():
        return []
    return sorted((p.name, p.stat().st_size) for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith("."))


def content_key(stage: Stage) -> Callable[[Any, dict[str, Any]], str]:
    """The cache key of a stage's task: what its result depends on."""

    def key(context: Any, parameters: dict[str, Any]) -> str:
        cfg: Config = parameters["cfg"]
        root: DataRoot = parameters["root"]
        settings = {section: cfg.to_dict()[section] for section in stage.sections}
        reads = [_listing(root, name) for name in stage.reads]
        made = [generation(handoff_path(root, name)) for name in stage.writes]
        return f"{stage.name}-" + fingerprint(reads, settings, made, parameters.get("share"))

    return key


def _options(stage: Stage) -> dict[str, Any]:
    options: dict[str, Any] = {"name": stage.name}
    if stage.network:
        options.update(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S)
    if stage.cached:
        options.update(cache_key_fn=content_key(stage), persist_result=True,
                       result_serializer="json")
    else:
        options.update(cache_policy=NO_CACHE)
    return options


def stage_task(stage: Stage) -> Task:
    """The task that runs `stage` and returns its StageStats as JSON (cacheable)."""

    def run(cfg: Config, root: DataRoot, share: tuple[int, int] | None = None) -> dict[str, Any]:
        if share is None:
            stats = stage.run(cfg, root, progress=False)
        else:
            assert stage.run_share is not None
            stats = stage.run_share(cfg, root, *share)
        key = f"{stage.name}-{share[0]}-of-{share[1]}" if share else None
        publish_stats(stats, key)
        return stats_dict(stats)

    return task(**_options(stage))(run)


TASKS: dict[str, Task] = {stage.name: stage_task(stage) for stage in STAGES}


@task(name="prepare-encoding", cache_policy=NO_CACHE)
def prepare_encoding_task(cfg: Config, root: DataRoot) -> list[str]:
    from pipeline.tokenization import prepare_encoding

    return prepare_encoding(cfg, root)


@task(name="encode", cache_policy=NO_CACHE)
def encode_task(cfg: Config, root: DataRoot, names: list[str]) -> dict[str, Any]:
    from pipeline.tokenization import encode_task_parts

    return stats_dict(encode_task_parts(cfg, root, names))
