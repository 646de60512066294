"""The one list of stages, in pipeline order. `cllm <stage>`, the flows' tasks, `cllm status`
and the legacy tools are made from it; a stage added here appears in all of them.

It sits above every package it names (the core's `Stage` type names none). Each `run` imports
its stage's libraries only when called, so building `cllm --help` from this list is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.stage import Stage

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.layout import DataRoot
    from pipeline.stats import StageStats


def _ingest(cfg: Config, root: DataRoot, *, progress: bool = True) -> StageStats:
    from pipeline.ingest import ingest_paths

    return ingest_paths([Path(p) for p in cfg.sources.paths], cfg, root, progress=progress)


def _crawl(cfg: Config, root: DataRoot, *, progress: bool = True) -> StageStats:
    from crawler.run import crawl

    return crawl(list(cfg.sources.urls), cfg, root, progress=progress,
                 restart=cfg.crawl.restart)


def _extract(cfg: Config, root: DataRoot, *, progress: bool = True) -> StageStats:
    from docproc.extract import extract_all

    return extract_all(cfg, root, progress=progress)


def _extract_share(cfg: Config, root: DataRoot, i: int, k: int) -> StageStats:
    from docproc.extract import extract_all

    return extract_all(cfg, root, progress=False, partition=(i, k))


def _clean(cfg: Config, root: DataRoot, *, progress: bool = True) -> StageStats:
    from pipeline.clean import clean_documents

    return clean_documents(cfg, root, progress=progress)


def _tokenize(cfg: Config, root: DataRoot, *, progress: bool = True) -> StageStats:
    from pipeline.tokenization import tokenize_dataset

    return tokenize_dataset(cfg, root, progress=progress)


def _train(cfg: Config, root: DataRoot, *, progress: bool = True) -> StageStats:
    from model.train import train_stage

    return train_stage(cfg, root, progress=progress)


def _evaluate(cfg: Config, root: DataRoot, *, progress: bool = True) -> StageStats:
    from model.evaluate import evaluate_stage

    return evaluate_stage(cfg, root, progress=progress)


def _has_paths(cfg: Config) -> bool:
    return bool(cfg.sources.paths)


def _has_urls(cfg: Config) -> bool:
    return bool(cfg.sources.urls)


STAGES: tuple[Stage, ...] = (
    Stage(name="ingest", section="ingest", summary="store local files and folders in the raw store",
          reads=("files",), writes=("raw",), run=_ingest, applies=_has_paths, cached=False),
    Stage(name="crawl", section="crawl", summary="crawl web sites into the raw store",
          reads=("web",), writes=("raw",), run=_crawl, applies=_has_urls, network=True,
          cached=False),
    Stage(name="extract", section="extract",
          summary="extract text (PDF, OCR, HTML, text, images) into docs/",
          reads=("raw",), writes=("docs",), run=_extract, run_share=_extract_share),
    Stage(name="clean", section="clean",
          summary="quality-filter and deduplicate extracted documents into state/clean/",
          reads=("docs",), writes=("clean",), run=_clean),
    Stage(name="tokenize", section="tokenize",
          summary="clean (if not done), train/load the tokenizer, write token shards",
          reads=("clean",), writes=("tokenizer", "shards"), run=_tokenize,
          also_configured_by=("shards",)),
    Stage(name="train", section="train", summary="train (or resume) the CLLM model on the shards",
          reads=("shards",), writes=("runs",), run=_train, cached=False),
    Stage(name="evaluate", section="evaluate",
          summary="validation loss and perplexity of a checkpoint (default: the promoted one)",
          reads=("shards", "runs", "models"), writes=(), run=_evaluate, cached=False),
)

BY_NAME = {stage.name: stage for stage in STAGES}
DATA_STAGES = tuple(s for s in STAGES if s.name not in ("train", "evaluate"))  # the ingest flow
