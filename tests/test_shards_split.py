"""The chunk-level val split: few long documents still give a val split of the share asked
for, deterministically, and no chunk changes split as the data grows; an empty or tiny split
is warned about; a format-1 data root stays readable and grows."""

from __future__ import annotations

import hashlib
import json
import math
import random

import numpy as np
import pytest
from test_dataset import add_parts, shard_bytes, small_config
from test_dataset_support import doc_id, make_text

from pipeline.chunks import (
    chunk_ends,
    is_val,
    split_entries,
    token_table,
    val_split_warning,
)
from pipeline.clean import iter_clean_documents
from pipeline.docstore import write_part
from pipeline.errors import ConfigError
from pipeline.layout import DataRoot
from pipeline.records import Document
from pipeline.shards import SPLITS, open_shard, read_manifest, verify_shards
from pipeline.split import split_phase
from pipeline.tokenization import tokenize_dataset
from pipeline.tokenizer import load_tokenizer


def long_docs(n: int, words: int, seed: int = 0) -> list[Document]:
    """`n` manuals of `words` words each (paragraphs of prose), paged like a PDF."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        text = make_text(rng, words)
        docs.append(Document(id=doc_id(f"manual-{seed}-{i}"), source=f"/manuals/m{i}.pdf",
                             mime="application/pdf", title=f"Manual {i}", text=text,
                             created_at="2026-01-01"))
    return docs


def test_a_document_of_n_chunks_has_its_share_of_val_chunks_and_short_ones_keep_their_split(
        ) -> None:
    ids = [f"{i:064x}" for i in range(3000)]
    for f in (0.05, 0.1, 0.3):
        for n in (1, 7, 40):
            counts = [sum(is_val(d, f, c) for c in range(n)) for d in ids[:300]]
            assert set(counts) <= {math.floor(n * f), math.ceil(n * f)}
    # a one-chunk document: the whole-document rule of format 1, unchanged
    old = [int.from_bytes(hashlib.blake2b(b"cllm-split-v1:" + d.encode(),
                                          digest_size=8).digest(), "big") / 2.0**64 < 0.1
           for d in ids]
    assert [is_val(d, 0.1) for d in ids] == old
    assert [split_phase(d) < 0.1 for d in ids] == old
    assert not any(is_val(d, 0.0, c) for d in ids[:50] for c in range(20))


def test_entries_join_runs_of_chunks_and_cover_the_document() -> None:
    ends = list(range(100, 4100, 100))  # 40 chunks
    entries = split_entries("a" * 64, ends, 0.1)
    assert [e.split for e in entries].count("val") == 4
    pairs = list(zip(entries, entries[1:], strict=False))
    assert all(a.split != b.split for a, b in pairs)  # runs of one split are one entry
    assert entries[0].start == 0 and entries[-1].end == 4000
    assert all(a.end == b.start and a.last + 1 == b.first for a, b in pairs)
    for e in entries:
        assert all(is_val("a" * 64, 0.1, c) == (e.split == "val")
                   for c in range(e.first, e.last + 1))


def _tokenize_manuals(root: DataRoot, n: int = 15, words: int = 12_000, **shards: object
                      ) -> None:
    write_part(root.docs, long_docs(n, words))
    cfg = small_config(shards={"val_fraction": 0.05, "shard_tokens": 64 * 1024, **shards},
                       tokenize={"vocab_size": 2000})
    stats = tokenize_dataset(cfg, root, progress=False)
    assert stats.kept == n


def test_fifteen_long_manuals_get_a_val_split_of_the_share_asked(root: DataRoot) -> None:
    # the 15 manuals have ~50k tokens each, ~25 chunks of the default 2048; these have
    # ~14k tokens each, cut at 512: the same ~26 chunks a manual, at a quarter of the cost
    _tokenize_manuals(root, split_chunk_tokens=512)
    manifest = read_manifest(root.manifest)
    totals = manifest.totals()
    share = totals["val"]["tokens"] / (totals["val"]["tokens"] + totals["train"]["tokens"])
    assert manifest.split_chunk_tokens == 512 and manifest.format_version == 3
    assert 0.05 / 1.5 <= share <= 0.05 * 1.5, share
    assert totals["val"]["docs"] >= 15  # each manual has one or two val chunks
    assert val_split_warning(totals, 0.05, 512, 16 * 128) == ""
    assert verify_shards(root.shards, manifest, root.tokenizer_json).ok

    # every manual, its entries of both splits put back in chunk order, is its whole encoding
    tok = load_tokenizer(root.tokenizer_json)
    tok.encode_special_tokens = True
    pieces: dict[str, list[tuple[int, list[int]]]] = {}
    for split in SPLITS:
        for info in manifest.split_shards(split):
            tokens, ends = open_shard(root.shards, info, manifest.dtype)
            rows = [json.loads(x) for x in (root.shards / f"{info.name}.prov.jsonl")
                    .read_text().splitlines()]
            starts = [0, *ends[:-1].tolist()]
            for row, start, end in zip(rows, starts, ends.tolist(), strict=True):
                ids = tokens[start:end - 1].tolist()
                assert len(ids) == row["tokens"][1] - row["tokens"][0]
                first, last = row["chunks"]
                assert all(is_val(row["doc"], 0.05, c) == (split == "val")
                           for c in range(first, last + 1))
                pieces.setdefault(row["doc"], []).append((row["tokens"][0], ids))
    for doc in iter_clean_documents(root, manifest.parts):
        joined = [t for _, ids in sorted(pieces[doc.id]) for t in ids]
        assert joined == tok.encode(doc.text).ids


def test_chunks_are_cut_at_paragraphs_within_the_bounds(root: DataRoot) -> None:
    _tokenize_manuals(root, n=2, words=3000)
    tok = load_tokenizer(root.tokenizer_json)
    tok.encode_special_tokens = True
    table = token_table(root.tokenizer_json)
    text = long_docs(1, 6000, seed=3)[0].text
    ids = np.array(tok.encode(text).ids)
    ends = chunk_ends(ids, table, 512)
    sizes = np.diff([0, *ends])
    assert ends[-1] == len(ids) and len(ends) > 10
    assert all(256 <= s <= 512 for s in sizes[:-1]) and sizes[-1] <= 512
    for end in ends[:-1]:  # paragraphs are shorter than half a chunk: every cut is at one
        assert tok.decode(ids[:end].tolist()).endswith("\n\n")
    # no boundary at all (one unbroken run of characters): still cut within the bounds
    run = np.array(tok.encode("x" * 20_000).ids)
    run_ends = chunk_ends(run, table, 512)
    assert run_ends[-1] == len(run) and max(np.diff([0, *run_ends])) <= 512
    assert chunk_ends(ids[:500], table, 512) == [500]


def _reference_cut(pieces: list[bytes], lo: int, hi: int) -> int:
    """The cut rule read off the tokens' bytes one cut at a time: the last cut before a
    token k (lo < k <= hi) that starts a paragraph, else a line, else a word; else hi."""
    def kind(k: int) -> int:
        before = b"".join(pieces[max(k - 2, 0):k])
        starts_text = not pieces[k] or pieces[k][:1] not in (b" ", b"\t", b"\n", b"\r",
                                                              b"\x0b", b"\x0c")
        if before.endswith(b"\n") and starts_text:
            return 3 if before.endswith(b"\n\n") else 2
        return 1 if pieces[k].startswith(b" ") or pieces[k - 1].endswith(b" ") else 0

    for wanted in (3, 2, 1):
        found = [k for k in range(lo + 1, hi + 1) if kind(k) == wanted]
        if found:
            return found[-1]
    return hi


def test_each_cut_is_the_last_of_the_best_kind_in_its_window(root: DataRoot) -> None:
    _tokenize_manuals(root, n=2, words=3000)
    tok = load_tokenizer(root.tokenizer_json)
    tok.encode_special_tokens = True
    table = token_table(root.tokenizer_json)
    rng = random.Random(7)
    words = ["alpha", "beta,", "gamma.", "\t", "x" * 40, "\n", "\n\n", " ", "  \n", "\n \n"]
    for _ in range(20):
        text = "".join(rng.choice(words) + rng.choice(["", " ", " "]) for _ in range(900))
        ids = np.array(tok.encode(text).ids)
        pieces = [tok.decode([int(i)]).encode() for i in ids]
        assert b"".join(pieces) == text.encode()  # one token, one whole piece of bytes
        chunk = rng.choice([64, 100, 256])
        ends = chunk_ends(ids, table, chunk)
        start = 0
        for end in ends[:-1]:
            assert end == _reference_cut(pieces, start + chunk // 2, start + chunk)
            start = end
        assert ends[-1] == len(ids)


def test_the_split_of_every_chunk_stays_as_the_data_grows(root: DataRoot) -> None:
    _tokenize_manuals(root, n=3, words=6000)
    before, first = shard_bytes(root), read_manifest(root.manifest)
    write_part(root.docs, long_docs(3, 6000, seed=9))
    tokenize_dataset(small_config(shards={"val_fraction": 0.05, "shard_tokens": 64 * 1024},
                                  tokenize={"vocab_size": 2000}), root, progress=False)
    second = read_manifest(root.manifest)
    assert second.shards[:len(first.shards)] == first.shards
    assert all(shard_bytes(root)[name] == data for name, data in before.items())
    assert second.totals()["val"]["docs"] > first.totals()["val"]["docs"]


def test_an_empty_or_tiny_val_split_is_warned_about_naming_the_settings(root: DataRoot) -> None:
    assert val_split_warning({"train": {"tokens": 10_000}, "val": {"tokens": 0}}, 0.05, 2048,
                             2048).startswith("the val split is empty")
    tiny = val_split_warning({"train": {"tokens": 1_000_000}, "val": {"tokens": 5000}}, 0.05,
                             2048, 2048)
    assert "tiny: 5000 of 1005000 tokens (0.50%), under 1% of the tokens" in tiny
    assert "shards.split_chunk_tokens" in tiny
    unchunked = val_split_warning({"train": {"tokens": 90_000}, "val": {"tokens": 1000}}, 0.05,
                                  0, 2048)  # 1.1% of the tokens, but under one batch
    assert "tiny: 1000 of 91000 tokens (1.10%), under one batch" in unchunked
    assert "set shards.split_chunk_tokens" in unchunked
    assert val_split_warning({"train": {"tokens": 90_000}, "val": {"tokens": 3000}}, 0.05, 0,
                             2048) == ""
    assert "shards.val_fraction is 0" in val_split_warning(
        {"train": {"tokens": 9}, "val": {"tokens": 0}}, 0.0, 2048, 2048)
    assert val_split_warning({"train": {"tokens": 0}, "val": {"tokens": 0}}, 0.05, 2048, 1) == ""

    add_parts(root, [31], docs=12, words=150)  # 12 short documents: val under one batch
    stats = tokenize_dataset(small_config(shards={"val_fraction": 0.05}), root, progress=False)
    warning = stats.extra["val_warning"]
    assert "shards.split_chunk_tokens" in warning and "shards.val_fraction" in warning
    # a run with nothing new still says so
    again = tokenize_dataset(small_config(shards={"val_fraction": 0.05}), root, progress=False)
    assert again.extra["val_warning"] == warning


def _as_format_1(root: DataRoot) -> None:
    """Rewrite a data root's shards as the code before chunks wrote them (no sidecars)."""
    data = json.loads(root.manifest.read_text())
    data.update(format_version=1, split_rule="blake2b-8(cllm-split-v1: + doc id) / 2^64 < "
                "val_fraction")
    data.pop("split_chunk_tokens")
    for shard in data["shards"]:
        shard.pop("prov_sha256")
        shard.pop("text_bytes")
    root.manifest.write_text(json.dumps(data))
    for path in root.shards.glob("*.prov.jsonl"):
        path.unlink()


def test_format_1_shards_stay_readable_and_grow(root: DataRoot) -> None:
    add_parts(root, [32], docs=12, words=150)
    cfg = small_config()
    tokenize_dataset(cfg, root, progress=False)
    _as_format_1(root)
    old = read_manifest(root.manifest)
    assert old.format_version == 1 and old.split_chunk_tokens == 0
    assert verify_shards(root.shards, old, root.tokenizer_json).ok
    before = shard_bytes(root)

    add_parts(root, [33], docs=12, words=150)
    stats = tokenize_dataset(cfg, root, progress=False)
    new = read_manifest(root.manifest)
    assert stats.kept == 12 and new.format_version == 3 and new.split_chunk_tokens == 2048
    assert new.shards[:len(old.shards)] == old.shards
    assert all(shard_bytes(root)[name] == data for name, data in before.items())
    assert verify_shards(root.shards, new, root.tokenizer_json).ok


def test_changing_the_chunk_size_needs_a_rebuild_which_rewrites_every_shard(
        root: DataRoot) -> None:
    def chunks_of(manifest: object) -> dict[str, int]:
        rows = [json.loads(line) for s in manifest.shards  # type: ignore[attr-defined]
                for line in (root.shards / f"{s.name}.prov.jsonl").read_text().splitlines()]
        return {row["doc"]: row["of"] for row in rows}

    _tokenize_manuals(root, n=3, words=6000)
    first = read_manifest(root.manifest)
    chunks_before = chunks_of(first)
    cfg = small_config(shards={"val_fraction": 0.05, "shard_tokens": 64 * 1024,
                               "split_chunk_tokens": 512}, tokenize={"vocab_size": 2000})
    with pytest.raises(ConfigError, match="shards.split_chunk_tokens is 512 .* 2048"):
        tokenize_dataset(cfg, root, progress=False)
    cfg = small_config(shards={"val_fraction": 0.05, "shard_tokens": 64 * 1024,
                               "split_chunk_tokens": 512},
                       tokenize={"vocab_size": 2000, "rebuild": True})
    tokenize_dataset(cfg, root, progress=False)
    rebuilt = read_manifest(root.manifest)
    assert rebuilt.split_chunk_tokens == 512 and rebuilt.parts == first.parts
    assert not {s.name for s in first.shards} & {s.name for s in rebuilt.shards}
    on_disk = {p.name.split(".")[0] for p in root.shards.glob("*-[0-9]*.*")}
    assert on_disk == {s.name for s in rebuilt.shards}  # the replaced shards are gone
    assert sum(s.tokens for s in rebuilt.shards) - sum(s.docs for s in rebuilt.shards) == \
        sum(s.tokens for s in first.shards) - sum(s.docs for s in first.shards)
    assert all(n > 2 * chunks_before[doc] for doc, n in chunks_of(rebuilt).items())
    # a run killed between a rebuild's commit and the removal of the old shards leaves them:
    # the next run, with nothing new, removes them
    (root.shards / "train-00000.bin").write_bytes(b"\0" * 64)
    again = small_config(shards={"val_fraction": 0.05, "shard_tokens": 64 * 1024,
                                 "split_chunk_tokens": 512}, tokenize={"vocab_size": 2000})
    assert tokenize_dataset(again, root, progress=False).kept == 0
    assert not (root.shards / "train-00000.bin").exists()
    assert read_manifest(root.manifest) == rebuilt
    assert verify_shards(root.shards, rebuilt, root.tokenizer_json).ok
