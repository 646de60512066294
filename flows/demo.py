"""`cllm demo`: the whole pipeline on a sample site built and served on 127.0.0.1.

No network and no files from the user: the site is the standard library's pydoc pages plus
PDFs made from some of them and image-only "scanned" copies of a few (pipeline.samples).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.layout import DataRoot
from pipeline.rawstore import sha256_file
from pipeline.shards import read_manifest
from pipeline.sniff import sniff_file

log = logging.getLogger(__name__)

SAMPLE_PROMPT = "The "
DEMO_PORT = 8741  # preferred port of the sample site; any free one if it is taken


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve the files of `folder` on 127.0.0.1 (with ETags); yields the base URL."""
    from crawler.localsite import LocalSite, Page

    routes: dict[str, Any] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        kind = sniff_file(path)
        ctype = f"{kind.mime}; charset=utf-8" if kind.mime.startswith("text/") else kind.mime
        routes["/" + path.relative_to(folder).as_posix()] = Page(
            body=path.read_bytes(), content_type=ctype, etag=f'"{sha256_file(path)[:16]}"')
    routes["/"] = routes["/index.html"]
    try:  # the same address every run, so a re-run re-crawls with conditional requests
        site = LocalSite(routes, port=DEMO_PORT)
    except OSError:
        site = LocalSite(routes)
    with site:
        yield site.url("")


@dataclass(slots=True)
class DemoSummary:
    """What the demo made: the pipeline flow's result and the facts the demo prints."""

    root: Path
    site_url: str
    result: dict[str, Any]
    sample: str
    documents: int = 0
    ocr_pages: int = 0
    tokens: dict[str, int] = field(default_factory=dict)  # per split


def _documents(root: Path) -> tuple[int, int]:
    """Documents in the data root, and pages of theirs that were OCRed."""
    from pipeline.docstore import iter_documents

    docs = ocr = 0
    for doc in iter_documents(root / "docs"):
        docs += 1
        ocr += len(doc.ocr_pages)
    return docs, ocr


def write_sample(root: DataRoot, max_new_tokens: int = 120) -> str:
    from model.evaluate import default_checkpoint
    from model.sample import TextGenerator
    from pipeline.atomic import atomic_write_text
    from pipeline.config import SampleConfig

    generator = TextGenerator.load(default_checkpoint(root), device="cpu")
    settings = SampleConfig(max_new_tokens=max_new_tokens, temperature=0.8, top_k=50,
                              top_p=0.95, seed=0)
    text = SAMPLE_PROMPT + generator.text(SAMPLE_PROMPT, settings)
    atomic_write_text(root.path / "demo-sample.txt", text + "\n")
    return text


def run_demo(root: DataRoot, config: Path | None, overrides: list[str]) -> DemoSummary:
    from flows.chain import pipeline_flow
    from pipeline.samples import build_sample_site

    site = build_sample_site(root.path / "sample-site")
    with serve_folder(site.folder) as url:
        log.info("demo: serving the sample site at %s", url)
        # runs are named demo-<time> (the preset's train.run plus the flow's stamp)
        result = pipeline_flow(root=str(root.path), config=str(config) if config else None,
                               overrides=list(overrides), urls=[url + "/index.html"], paths=[],
                               preset="demo")
    sample = write_sample(root)
    docs, ocr_pages = _documents(root.path)
    totals = read_manifest(root.manifest).totals()
    return DemoSummary(root=root.path, site_url=url, result=result, sample=sample,
                       documents=docs, ocr_pages=ocr_pages,
                       tokens={split: t["tokens"] for split, t in totals.items()})
