"""The peer half of bench/dedup.py: datatrove's MinHash dedup at its defaults (5-grams, 14
buckets x 8 hashes) over documents, timed; it imports nothing of this project, so it runs in
any Python that has datatrove (bench/dedup.py --datatrove-python /path/to/venv/bin/python).

    python bench/dedup_datatrove.py DOCS.jsonl WORKDIR OUT.json   # {"removed": [...], ...}
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path


def removed_by_datatrove(docs: list[tuple[str, str]], workdir: Path) -> tuple[set[str], float]:
    """Ids datatrove's four MinHash steps remove from (id, text) pairs, and their seconds."""
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )

    base = workdir / "datatrove"
    shutil.rmtree(base, ignore_errors=True)
    records = [Document(text=text, id=doc_id) for doc_id, text in docs]
    config = MinhashConfig()
    kept: list[str] = []

    def collect(data, rank: int = 0, world_size: int = 1):  # noqa: ANN001, ANN202
        for d in data:
            kept.append(d.id)
            yield d

    stages = [
        ([records, MinhashDedupSignature(output_folder=str(base / "sigs"), config=config)], 1),
        ([MinhashDedupBuckets(input_folder=str(base / "sigs"), output_folder=str(base / "bkt"),
                              config=config)], config.num_buckets),
        ([MinhashDedupCluster(input_folder=str(base / "bkt"), output_folder=str(base / "rm"),
                              config=config)], 1),
        ([records, MinhashDedupFilter(input_folder=str(base / "rm")), collect], 1),
    ]
    started = time.perf_counter()
    for i, (pipeline, tasks) in enumerate(stages):
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1,
                              logging_dir=str(base / f"logs{i}")).run()
    seconds = time.perf_counter() - started
    return {doc_id for doc_id, _ in docs} - set(kept), seconds


def version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("datatrove")


def main() -> None:
    docs_path, workdir, out = (Path(a) for a in sys.argv[1:4])
    docs = [(r["id"], r["text"]) for r in map(json.loads, docs_path.read_text().splitlines())]
    removed, seconds = removed_by_datatrove(docs, workdir)
    out.write_text(json.dumps({"removed": sorted(removed), "seconds": seconds,
                               "version": version()}), encoding="utf-8")


if __name__ == "__main__":
    main()
