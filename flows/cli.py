"""CLI handlers of the orchestrated commands (run, demo, validate, retrain, serve).

Until the stage issues land, `cllm demo` builds the sample corpus and ingests it.
"""

from __future__ import annotations

import logging

from pipeline.config import Config
from pipeline.layout import DataRoot
from pipeline.progress import StageStats

log = logging.getLogger(__name__)


def run_demo(cfg: Config, root: DataRoot, progress: bool = True) -> StageStats:
    from pipeline.ingest import ingest_paths
    from pipeline.samples import build_sample_site

    site = build_sample_site(root.path / "sample-site")
    return ingest_paths([site.folder], cfg, root, progress=progress)


def demo(args, ctx) -> StageStats:  # noqa: ANN001 - argparse namespace and cli.Context
    return run_demo(ctx.cfg, ctx.root, ctx.progress)
