"""The data root: where every stage's on-disk hand-off lives (see DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = "cllm-data"


@dataclass(frozen=True, slots=True)
class DataRoot:
    path: Path

    @classmethod
    def at(cls, path: Path | str = DEFAULT_ROOT) -> DataRoot:
        return cls(Path(path).expanduser().absolute())

    # raw store: fetched or ingested bytes, content-addressed
    @property
    def raw(self) -> Path:
        return self.path / "raw"

    @property
    def raw_index(self) -> Path:
        return self.raw / "index.sqlite"

    @property
    def raw_failures(self) -> Path:
        return self.raw / "failures.jsonl"

    def blob(self, sha256: str, ext: str) -> Path:
        return self.raw / sha256[:2] / f"{sha256}.{ext}"

    # extracted documents
    @property
    def docs(self) -> Path:
        return self.path / "docs"

    @property
    def doc_failures(self) -> Path:
        return self.docs / "failures.jsonl"

    # tokenizer and token shards
    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"

    @property
    def tokenizer_json(self) -> Path:
        return self.tokenizer_dir / "tokenizer.json"

    @property
    def shards(self) -> Path:
        return self.path / "shards"

    @property
    def manifest(self) -> Path:
        return self.shards / "manifest.json"

    # training runs and the promoted-model registry
    @property
    def runs(self) -> Path:
        return self.path / "runs"

    def run(self, name: str) -> Path:
        return self.runs / name

    @property
    def models(self) -> Path:
        return self.path / "models"

    # stage state that is not a hand-off: dedup index, crawl job dir, caches
    @property
    def state(self) -> Path:
        return self.path / "state"

    @property
    def dedup_index(self) -> Path:
        return self.state / "dedup.sqlite"

    @property
    def logs(self) -> Path:
        """What the commands logged (logs/cllm.log), tracebacks included."""
        return self.path / "logs"

    @property
    def crawl_jobs(self) -> Path:
        return self.state / "crawl"

    def ensure(self) -> DataRoot:
        for folder in (self.raw, self.docs, self.tokenizer_dir, self.shards, self.runs,
                       self.models, self.state):
            folder.mkdir(parents=True, exist_ok=True)
        return self
