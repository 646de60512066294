"""`cllm export-docs`: the extracted or cleaned documents as Parquet (row groups, read back
with pyarrow) or JSONL, with their metadata and, if asked, the clean stage's decisions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_dataset_support import make_docs

from pipeline.clean import clean_documents, iter_clean_documents
from pipeline.config import build_config
from pipeline.docstore import write_part
from pipeline.errors import InputError
from pipeline.export import export_docs
from pipeline.layout import DataRoot
from pipeline.records import Document, PageInfo


def _root(root: DataRoot) -> list[Document]:
    docs = make_docs(7, seed=61)
    docs[2].page_info = [PageInfo(number=1, chars=10, ocr=True, reason="no_text_layer",
                                  confidence=91.5)]
    docs[2].pages, docs[2].ocr_pages, docs[2].lang = 1, [1], "eng"
    docs[2].meta = {"subject": "Minutes", "blob": "b" * 64}
    docs.append(Document(id="d" * 64, source="/corpus/short.txt", mime="text/plain",
                         text="Too short.", created_at="2026-01-01"))
    docs.append(Document(id="e" * 64, source="/corpus/copy.txt", mime="text/plain",
                         text=docs[0].text, created_at="2026-01-01"))
    write_part(root.docs, docs[:5])
    write_part(root.docs, docs[5:])
    clean_documents(build_config([{"clean": {"workers": 1}}]), root, progress=False)
    return docs


def _as_dict(entries: list[dict]) -> dict:
    """A stats or meta column's {key, value} list (no map type: `datasets` cannot read one)."""
    return {e["key"]: e["value"] for e in entries}


def test_parquet_of_the_cleaned_documents_in_row_groups(root: DataRoot, tmp_path: Path) -> None:
    _root(root)
    out = tmp_path / "cleaned.parquet"
    assert export_docs(root, build_config([]), out, row_group_docs=3) == 7
    table = pq.read_table(out)
    kept = list(iter_clean_documents(root, ["part-00000.jsonl.zst", "part-00001.jsonl.zst"]))
    assert table.column("id").to_pylist() == [d.id for d in kept]
    assert table.column("text").to_pylist() == [d.text for d in kept]
    assert pq.ParquetFile(out).num_row_groups == 3  # 3 + 3 + 1
    row = table.slice(2, 1).to_pylist()[0]
    assert row["page_info"] == [{"number": 1, "chars": 10, "ocr": True,
                                 "reason": "no_text_layer", "confidence": 91.5, "lang": "",
                                 "lang_score": None}]
    # clean identifies the language ("eng", the OCR setting, was extraction's)
    assert row["ocr_pages"] == [1] and row["lang"] == "en" and row["pages"] == 1
    assert _as_dict(row["stats"]) == {k: float(v) for k, v in kept[2].stats.items()}
    assert row["decision"] == "" and row["source"] == kept[2].source
    assert _as_dict(row["meta"]) == {"subject": "Minutes", "blob": "b" * 64}


def test_extracted_with_decisions_and_jsonl(root: DataRoot, tmp_path: Path,
                                            cli_env: dict[str, str]) -> None:
    docs = _root(root)
    out = tmp_path / "extracted.jsonl"
    run = subprocess.run([str(Path(sys.executable).parent / "cllm"), "--root", str(root.path),
                          "export-docs", "--format", "jsonl", "--stage", "extracted",
                          "--with-decisions", "--out", str(out)], env=cli_env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "export-docs: 9 extracted documents" in run.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [d.id for d in docs]
    decisions = {r["source"]: (r["decision"], r["decision_detail"]) for r in rows}
    assert decisions["/corpus/short.txt"][0] == "too_short"
    assert decisions["/corpus/copy.txt"][0] == "exact_duplicate"
    assert sum(d == "kept" for d, _ in decisions.values()) == 7
    assert rows[0]["text"] == docs[0].text and rows[2]["meta"]["subject"] == "Minutes"


def test_nothing_is_left_behind_when_the_export_fails(root: DataRoot, tmp_path: Path) -> None:
    write_part(root.docs, make_docs(3, seed=62))
    (root.docs / "part-00001.jsonl.zst").write_bytes(b"not zstd at all")  # fails mid-way
    out = tmp_path / "sub" / "docs.parquet"
    with pytest.raises(InputError):
        export_docs(root, build_config([]), out, stage="extracted", row_group_docs=1)
    assert list(out.parent.iterdir()) == []  # no file, no temporary file
