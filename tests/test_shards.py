"""Shard writer, manifest, reader and `verify`: the format the trainer reads."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.shards import (
    IDX_DTYPE,
    Manifest,
    ShardInfo,
    ShardWriter,
    TokenizerInfo,
    dtype_for_vocab,
    find_document,
    is_val,
    open_shard,
    open_split,
    read_document,
    read_manifest,
    verify_shards,
    write_manifest,
)

VOCAB = 1000
EOS = 0


def random_docs(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, VOCAB, size=int(rng.integers(0, 700)), dtype=np.uint16)
            for _ in range(n)]


def write_split(folder: Path, docs: list[np.ndarray], shard_tokens: int = 1024
                ) -> list[ShardInfo]:
    writer = ShardWriter(folder, "train", dtype="uint16", eos_id=EOS, shard_tokens=shard_tokens)
    infos = [info for doc in docs if (info := writer.add(doc))]
    last = writer.flush()
    return infos + ([last] if last else [])


def make_manifest(folder: Path, docs: list[np.ndarray]) -> Manifest:
    manifest = Manifest(tokenizer=TokenizerInfo(sha256="0" * 64, vocab_size=VOCAB, eos_id=EOS),
                        dtype="uint16", val_fraction=0.0, shards=write_split(folder, docs))
    write_manifest(folder / "manifest.json", manifest)
    return manifest


def test_dtype_and_split_rule() -> None:
    assert dtype_for_vocab(65535) == np.uint16 and dtype_for_vocab(65536) == np.uint32
    ids = [f"{i:064x}" for i in range(4000)]
    share = sum(is_val(i, 0.1) for i in ids) / len(ids)
    assert 0.08 < share < 0.12
    assert [is_val(i, 0.1) for i in ids] == [is_val(i, 0.1) for i in ids]
    assert not any(is_val(i, 0.0) for i in ids)


def test_shards_hold_documents_with_eos_and_end_offsets(tmp_path: Path) -> None:
    docs = random_docs(40, seed=1)
    manifest = make_manifest(tmp_path, docs)
    assert len(manifest.shards) > 3
    assert all(s.tokens >= 1024 for s in manifest.shards[:-1])
    stream = np.concatenate(open_split(tmp_path, "train"))
    expected = np.concatenate([np.append(d, EOS) for d in docs]).astype(np.uint16)
    assert np.array_equal(stream, expected)
    for n in (0, 7, 39):
        assert np.array_equal(read_document(tmp_path, manifest, "train", n), docs[n])
    tokens, ends = open_shard(tmp_path, manifest.shards[1], "uint16")
    assert ends.dtype == IDX_DTYPE and int(ends[-1]) == len(tokens) == manifest.shards[1].tokens
    with pytest.raises(IndexError, match="has 40 documents"):
        find_document(manifest, "train", 40)
    assert read_manifest(tmp_path / "manifest.json") == manifest
    assert manifest.next_number("train") == len(manifest.shards)


def test_adding_many_documents_at_once_cuts_the_same_shards(tmp_path: Path) -> None:
    docs = random_docs(60, seed=2)
    one_by_one = write_split(tmp_path / "a", docs)
    flat = np.concatenate([np.append(d, EOS) for d in docs]).astype(np.uint16)
    ends = np.cumsum([len(d) + 1 for d in docs]).astype(IDX_DTYPE)
    writer = ShardWriter(tmp_path / "b", "train", dtype="uint16", eos_id=EOS, shard_tokens=1024)
    rng = random.Random(0)
    at_once: list[ShardInfo] = []
    start = 0  # feed it in uneven batches, as parts of different sizes would
    while start < len(docs):
        stop = min(len(docs), start + rng.randint(1, 12))
        base = int(ends[start - 1]) if start else 0
        at_once += writer.add_encoded(flat[base:int(ends[stop - 1])], ends[start:stop] - base)
        start = stop
    at_once.append(writer.flush())
    assert at_once == one_by_one


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    (lambda f: _flip_byte(f / "train-00001.bin", 10), ".bin sha256 differs"),
    (lambda f: _flip_byte(f / "train-00001.idx", 0), ".idx sha256 differs"),
    (lambda f: (f / "train-00002.bin").write_bytes((f / "train-00002.bin").read_bytes()[:-2]),
     "train-00002: .bin has"),
    (lambda f: (f / "train-00000.idx").unlink(), "train-00000: train-00000.idx is missing"),
])
def test_verify_catches_damage(tmp_path: Path, damage, message: str) -> None:  # noqa: ANN001
    make_manifest(tmp_path, random_docs(40, seed=3))
    assert verify_shards(tmp_path).ok
    damage(tmp_path)
    report = verify_shards(tmp_path)
    assert not report.ok and any(message in p for p in report.problems), report.problems


def test_verify_checks_content_not_just_checksums(tmp_path: Path) -> None:
    docs = random_docs(10, seed=4)
    docs[3][5] = VOCAB + 5  # an id the vocabulary does not have
    docs[6][2] = EOS  # an EOS inside a document
    manifest = make_manifest(tmp_path, docs)
    problems = verify_shards(tmp_path, manifest).problems
    assert any(f"token id {VOCAB + 5} >= vocab size" in p for p in problems)
    assert any("EOS tokens for" in p for p in problems)
    tok = tmp_path / "tokenizer.json"
    tok.write_text("{}")
    assert any("sha256 differs" in p for p in verify_shards(tmp_path, manifest, tok).problems)


def test_cllm_shards_verify_exit_status(tmp_path: Path, cli_env: dict[str, str]) -> None:
    shards = tmp_path / "shards"
    make_manifest(shards, random_docs(30, seed=5))
    (tmp_path / "tokenizer").mkdir()
    cmd = [str(Path(sys.executable).parent / "cllm"), "--root", str(tmp_path), "shards",
           "verify"]
    # the manifest's tokenizer sha256 is made up, so only the shards can pass
    run = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "tokenizer" in run.stdout and "train-" not in run.stdout
    _flip_byte(shards / "train-00000.bin", 3)
    run = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "FAILED: train-00000: .bin sha256 differs" in run.stdout
    (shards / "manifest.json").unlink()
    run = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "cllm tokenize" in run.stderr


def test_an_exception_discards_the_shard_being_written(tmp_path: Path) -> None:
    docs = random_docs(12, seed=6)
    with pytest.raises(KeyError):
        with ShardWriter(tmp_path, "val", dtype="uint16", eos_id=EOS, shard_tokens=1024) as w:
            done = [info for doc in docs if (info := w.add(doc))]
            raise KeyError("killed")
    assert [p.name for p in sorted(tmp_path.iterdir())] == [
        f"{s.name}.{ext}" for s in done for ext in ("bin", "idx")]  # no temp file left


def test_byte_counts_follow_their_documents_into_whichever_shard_they_land(
        tmp_path: Path) -> None:
    docs = random_docs(40, 9)
    counts = [int(n) for n in np.random.default_rng(1).integers(1, 5000, size=len(docs))]
    one = ShardWriter(tmp_path, "train", dtype="uint16", eos_id=EOS, shard_tokens=1024)
    infos = [info for doc, n in zip(docs, counts, strict=True) if (info := one.add(doc, n))]
    infos += [one.flush()]
    assert len(infos) > 3
    first = 0
    for info in infos:  # each shard's count is the sum over the documents it holds
        assert info.text_bytes == sum(counts[first:first + info.docs])
        first += info.docs
    batched = ShardWriter(tmp_path / "b", "train", dtype="uint16", eos_id=EOS, shard_tokens=1024)
    again = batched.add_batch(docs[:25], counts[:25]) + batched.add_batch(docs[25:], counts[25:])
    assert [i.text_bytes for i in [*again, batched.flush()]] == [i.text_bytes for i in infos]
    unknown = ShardWriter(tmp_path / "c", "train", dtype="uint16", eos_id=EOS, shard_tokens=10**6)
    unknown.add(docs[0], 10)
    unknown.add(docs[1])  # a document without its count: the shard's total is unknown
    assert unknown.flush().text_bytes is None


def test_a_format_1_manifest_reads_with_its_bytes_unknown(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, random_docs(30, 4))
    old = manifest.to_dict()
    old["format_version"] = 1
    for shard in old["shards"]:
        del shard["text_bytes"]
    import json

    (tmp_path / "manifest.json").write_text(json.dumps(old))
    read = read_manifest(tmp_path / "manifest.json")
    assert all(s.text_bytes is None for s in read.shards)
    assert read.totals()["train"]["text_bytes"] is None
    assert read.totals()["train"]["tokens"] == manifest.totals()["train"]["tokens"]
    from pipeline.shards import describe

    assert "not counted (shards older than format 2)" in describe(read)
