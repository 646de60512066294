"""Prefect tasks: thin typed wrappers over the stage functions, each publishing a table artifact.

Only the crawl retries (a network failure can be transient). Extract and tokenize are cached
by a key over their input content, their config and their output folder's generation, so an
unchanged source is not processed again; the stages also skip finished work themselves.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.common import fingerprint, generation, publish_stats, stats_dict
from pipeline.config import Config
from pipeline.layout import DataRoot

log = logging.getLogger(__name__)

CRAWL_RETRIES = 2
CRAWL_RETRY_DELAY_S = 10


# --- cache keys: what a stage's result depends on --------------------------------------------


def _blob_listing(root: DataRoot) -> list[str]:
    from pipeline.rawstore import RawStore

    if not root.raw_index.is_file():
        return []
    with RawStore(root) as store:
        return [b.sha256 for b in store.iter_blobs()]


def _parts_listing(folder: Path) -> list[tuple[str, int]]:
    from pipeline.docstore import list_parts

    return [(p.name, p.stat().st_size) for p in list_parts(folder)]


def extract_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    cfg: Config = parameters["cfg"]
    root: DataRoot = parameters["root"]
    return "extract-" + fingerprint(_blob_listing(root), cfg.to_dict()["extract"],
                                    generation(root.docs), parameters.get("partition"))


def tokenize_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    cfg: Config = parameters["cfg"]
    root: DataRoot = parameters["root"]
    sections = {k: v for k, v in cfg.to_dict().items() if k in ("clean", "tokenize", "shards")}
    return "tokenize-" + fingerprint(_parts_listing(root.docs), sections,
                                     generation(root.shards))


# --- tasks -------------------------------------------------------------------------------------


@task(name="crawl", retries=CRAWL_RETRIES, retry_delay_seconds=CRAWL_RETRY_DELAY_S,
      cache_policy=NO_CACHE)
def crawl_task(urls: list[str], cfg: Config, root: DataRoot) -> dict[str, Any]:
    from crawler.run import crawl

    stats = crawl(urls, cfg, root, progress=False)
    publish_stats(stats)
    return stats_dict(stats)


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_task(paths: list[str], cfg: Config, root: DataRoot) -> dict[str, Any]:
    from pipeline.ingest import ingest_paths

    # ingest compares each file's size and mtime with its row, so a re-run reads nothing new
    stats = ingest_paths([Path(p) for p in paths], cfg, root, progress=False)
    publish_stats(stats)
    return stats_dict(stats)


@task(name="extract", cache_key_fn=extract_cache_key, persist_result=True,
      result_serializer="json")
def extract_task(cfg: Config, root: DataRoot, partition: tuple[int, int] | None = None
                 ) -> dict[str, Any]:
    from docproc.extract import extract_all

    stats = extract_all(cfg, root, progress=False, partition=partition)
    publish_stats(stats, f"extract-{partition[0]}-of-{partition[1]}" if partition else None)
    return stats_dict(stats)


@task(name="tokenize", cache_key_fn=tokenize_cache_key, persist_result=True,
      result_serializer="json")
def tokenize_task(cfg: Config, root: DataRoot) -> dict[str, Any]:
    from pipeline.dataset import tokenize_dataset

    stats = tokenize_dataset(cfg, root, progress=False)
    publish_stats(stats)
    return stats_dict(stats)


@task(name="prepare-encoding", cache_policy=NO_CACHE)
def prepare_encoding_task(cfg: Config, root: DataRoot) -> list[str]:
    from pipeline.dataset import prepare_encoding

    return prepare_encoding(cfg, root, progress=False)


@task(name="encode", cache_policy=NO_CACHE)
def encode_task(cfg: Config, root: DataRoot, names: list[str]) -> dict[str, Any]:
    from pipeline.dataset import encode_parts

    return stats_dict(encode_parts(cfg, root, names))
