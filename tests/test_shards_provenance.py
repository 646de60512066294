"""Provenance sidecars: every .idx entry says which document, chunks, source, title and pages
it holds; `cllm shards decode` prints that first, `cllm shards find SOURCE` lists where a
source's tokens lie; `verify` checks the sidecars."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from test_dataset import add_parts, small_config
from test_dataset_support import doc_id, make_text

from pipeline.docstore import write_part
from pipeline.layout import DataRoot
from pipeline.provenance import describe_row, find_source, places, read_provenance
from pipeline.records import Document, PageInfo
from pipeline.shards import SPLITS, read_manifest, verify_shards
from pipeline.tokenization import tokenize_dataset
from pipeline.tokenizer import decode, load_tokenizer

URL = "https://example.org/manual.pdf"


def paged_manual(pages: int = 40, words: int = 300) -> Document:
    rng = random.Random(7)
    texts = [make_text(rng, words) for _ in range(pages)]
    return Document(id=doc_id("paged-manual"), source=URL, mime="application/pdf",
                    title="The Manual", text="\n\n".join(texts), pages=pages,
                    page_info=[PageInfo(number=i + 1, chars=len(t), ocr=False, reason="has_text")
                               for i, t in enumerate(texts)], created_at="2026-01-01")


def _tokenize(root: DataRoot) -> None:
    add_parts(root, [51], docs=6, words=150)
    write_part(root.docs, [paged_manual()])
    cfg = small_config(shards={"val_fraction": 0.1, "split_chunk_tokens": 512},
                       tokenize={"vocab_size": 1000})
    assert tokenize_dataset(cfg, root, progress=False).kept == 7


def test_each_entry_names_its_document_chunks_source_and_pages(root: DataRoot) -> None:
    _tokenize(root)
    manifest = read_manifest(root.manifest)
    assert verify_shards(root.shards, manifest, root.tokenizer_json).ok
    tok = load_tokenizer(root.tokenizer_json)
    manual = [p for split in SPLITS for p in places(root.shards, manifest, split)
              if p.row["source"] == URL]
    assert {p.row["title"] for p in manual} == {"The Manual"}
    rows = sorted((p.row for p in manual), key=lambda r: r["chunks"][0])
    assert rows[0]["chunks"][0] == 0 and rows[-1]["chunks"][1] == rows[0]["of"] - 1 > 10
    assert rows[0]["pages"][0] == 1 and rows[-1]["pages"][1] == 40
    assert all(a["pages"][1] <= b["pages"][0] + 1 for a, b in zip(rows, rows[1:], strict=False))
    text = paged_manual().text.encode()
    for place in manual:  # the bytes a row names are the text its tokens decode to
        start, end = place.row["bytes"]
        tokens = read_shard_tokens(root, place)
        assert decode(tok, tokens) == text[start:end].decode()
    short = [p for p in places(root.shards, manifest, "train") if p.row["source"] != URL]
    assert all(p.row["of"] == 1 and p.row["pages"] == [] for p in short)
    assert {split for split, _ in find_source(root.shards, manifest, URL)} == {"train", "val"}
    assert len(list(find_source(root.shards, manifest, "/corpus/doc-51-*.txt"))) == 6
    assert list(find_source(root.shards, manifest, "https://example.org/other")) == []
    line = describe_row(rows[1])
    assert line.startswith(f'{URL} "The Manual" (doc {rows[1]["doc"][:16]}, chunk')
    assert "pages " in line or "page " in line


def read_shard_tokens(root: DataRoot, place) -> list[int]:  # noqa: ANN001 - a Place
    import numpy as np

    manifest = read_manifest(root.manifest)
    info = next(s for s in manifest.shards if s.name == place.shard)
    data = np.fromfile(root.shards / f"{info.name}.bin", dtype=manifest.dtype)
    return data[place.start:place.end - 1].tolist()


def test_verify_finds_a_damaged_or_missing_sidecar(root: DataRoot) -> None:
    _tokenize(root)
    manifest = read_manifest(root.manifest)
    info = manifest.shards[0]
    assert len(read_provenance(root.shards, info)) == info.docs
    path = root.shards / f"{info.name}.prov.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"doc":"', b'"doc":"x', 1))
    assert any("prov.jsonl sha256 differs" in p for p in verify_shards(root.shards).problems)
    path.unlink()
    assert any("prov.jsonl is missing" in p for p in verify_shards(root.shards).problems)


def test_cllm_shards_find_and_decode_name_the_source(root: DataRoot,
                                                     cli_env: dict[str, str]) -> None:
    _tokenize(root)
    base = [str(Path(sys.executable).parent / "cllm"), "--root", str(root.path), "shards"]
    found = subprocess.run([*base, "find", URL], env=cli_env, capture_output=True, text=True,
                           timeout=60)
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    manifest = read_manifest(root.manifest)
    expected = [(s, p) for s, p in find_source(root.shards, manifest, URL)]
    assert len(lines) == len(expected) > 2
    split, place = next((s, p) for s, p in expected if s == "val")
    line = next(x for x in lines if x.startswith(f"val {place.number}\t"))
    assert f"{place.shard} tokens {place.start}-{place.end}" in line and line.endswith(URL)

    decoded = subprocess.run([*base, "decode", "--split", split, "--doc", str(place.number)],
                             env=cli_env, capture_output=True, text=True, timeout=60)
    first, text = decoded.stdout.split("\n", 1)
    assert decoded.returncode == 0
    assert first == f"# val {place.number} ({place.shard} entry {place.entry}): " \
        + describe_row(place.row)
    start, end = place.row["bytes"]
    assert text == paged_manual().text.encode()[start:end].decode()

    missing = subprocess.run([*base, "find", "/nowhere/*"], env=cli_env, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and "no entry of the shards comes from" in missing.stderr
