"""`cllm export-docs`: the documents of the extracted (docs/) or cleaned (state/clean/) stage
as Parquet or JSONL, with their metadata, for pandas, DuckDB, Spark or
`datasets.load_dataset("parquet", data_files=...)`.

Streaming: documents are read part by part and written in row groups of `ROW_GROUP_DOCS`, so
memory stays flat; the file appears under its name only when complete (atomic write).
With `with_decisions`, each row also says what the clean stage decided (`kept`, or the reason
it was dropped, and the detail), from state/dedup.sqlite; empty for a document not cleaned yet.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pipeline.atomic import atomic_write
from pipeline.clean import clean_dir, cleaned_parts
from pipeline.config import Config
from pipeline.docstore import list_parts, read_part
from pipeline.errors import EnvironmentProblem
from pipeline.layout import DataRoot
from pipeline.records import Document

Format = Literal["parquet", "jsonl"]
StageName = Literal["extracted", "cleaned"]
ROW_GROUP_DOCS = 1000  # documents per Parquet row group (and per write)


def _entries(value: Any) -> Any:
    """A dict as a list of {key, value}: what an Arrow map holds, as a type that `datasets`
    reads too (it has no map type: load_dataset("parquet") refused map columns)."""
    import pyarrow as pa

    return pa.list_(pa.struct([("key", pa.string()), ("value", value)]))


def _schema() -> Any:
    import pyarrow as pa

    page = pa.struct([("number", pa.int32()), ("chars", pa.int64()), ("ocr", pa.bool_()),
                      ("reason", pa.string()), ("confidence", pa.float64()),
                      ("lang", pa.string()), ("lang_score", pa.float64())])
    return pa.schema([
        ("id", pa.string()), ("source", pa.string()), ("mime", pa.string()),
        ("title", pa.string()), ("lang", pa.string()), ("pages", pa.int32()),
        ("ocr_pages", pa.list_(pa.int32())), ("page_info", pa.list_(page)),
        ("extractor", pa.string()), ("stats", _entries(pa.float64())),
        ("created_at", pa.string()), ("meta", _entries(pa.string())),
        ("decision", pa.string()),
        ("decision_detail", pa.string()), ("text", pa.string()),
    ])


def _documents(root: DataRoot, cfg: Config, stage: StageName) -> Iterator[Document]:
    if stage == "extracted":
        for path in list_parts(root.docs):
            yield from read_part(path)
        return
    for record in cleaned_parts(root, cfg):
        path = clean_dir(root) / record.name
        if path.is_file():
            yield from read_part(path)


class _Decisions:
    """The clean stage's decision on a document, read from state/dedup.sqlite."""

    def __init__(self, root: DataRoot, enabled: bool) -> None:
        self.db = None
        if enabled and root.dedup_index.is_file():
            self.db = sqlite3.connect(f"file:{root.dedup_index}?mode=ro", uri=True)

    def get(self, doc_id: str) -> tuple[str, str]:
        if self.db is None:
            return "", ""
        row = self.db.execute("SELECT status, detail FROM docs WHERE id = ?",
                              (doc_id,)).fetchone()
        return (row[0], row[1] or "") if row else ("", "")

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def _row(doc: Document, decision: tuple[str, str]) -> dict[str, Any]:
    row = doc.to_dict()
    row.pop("v", None)
    row["stats"] = [{"key": k, "value": float(v)} for k, v in doc.stats.items()]
    row["meta"] = [{"key": k, "value": v} for k, v in doc.meta.items()]
    row["decision"], row["decision_detail"] = decision
    return row


def _batches(docs: Iterator[Document], decisions: _Decisions, size: int
             ) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for doc in docs:
        batch.append(_row(doc, decisions.get(doc.id)))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def export_docs(root: DataRoot, cfg: Config, out: Path, fmt: Format = "parquet",
                stage: StageName = "cleaned", with_decisions: bool = False,
                row_group_docs: int = ROW_GROUP_DOCS) -> int:
    """Write the stage's documents to `out`; returns how many."""
    decisions = _Decisions(root, with_decisions)
    count = 0
    try:
        with atomic_write(out, "wb") as fh:
            batches = _batches(_documents(root, cfg, stage), decisions, row_group_docs)
            count = _write_parquet(fh, batches) if fmt == "parquet" else \
                _write_jsonl(fh, batches)
    finally:
        decisions.close()
    return count


def _write_parquet(fh: Any, batches: Iterator[list[dict[str, Any]]]) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise EnvironmentProblem("Parquet needs pyarrow, the project's `parquet` extra: "
                                 "bash scripts/setup.sh, or pip install -e '.[parquet]'") from None

    schema, count = _schema(), 0
    with pq.ParquetWriter(fh, schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count


def _write_jsonl(fh: Any, batches: Iterator[list[dict[str, Any]]]) -> int:
    count = 0
    for batch in batches:
        for row in batch:
            row["stats"], row["meta"] = (
                {e["key"]: e["value"] for e in row[name]} for name in ("stats", "meta"))
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()
                     + b"\n")
        count += len(batch)
    return count
