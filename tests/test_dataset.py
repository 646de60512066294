"""The clean and tokenize stages end to end: shard contents, splits, growth, re-runs, resume."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from test_dataset_support import make_docs

from pipeline import clean, encode, tokenization
from pipeline.clean import clean_documents, iter_clean_documents
from pipeline.config import Config, build_config
from pipeline.docstore import write_part
from pipeline.errors import ConfigError
from pipeline.failures import FailureLog
from pipeline.layout import DataRoot
from pipeline.shards import SPLITS, is_val, open_shard, read_manifest, verify_shards
from pipeline.tokenization import tokenize_dataset
from pipeline.tokenizer import load_tokenizer


def small_config(**sections: dict) -> Config:
    """Tiny vocabulary and shards, in-process cleaning: fast, and several shards per split."""
    layers = {"clean": {"workers": 1}, "tokenize": {"vocab_size": 600, "segment_chars": 1000},
              "shards": {"shard_tokens": 1024, "val_fraction": 0.25}}
    for name, values in sections.items():
        layers.setdefault(name, {}).update(values)
    return build_config([layers])


def add_parts(root: DataRoot, seeds: list[int], docs: int = 12, words: int = 150) -> None:
    for seed in seeds:
        write_part(root.docs, make_docs(docs, seed, words=words))


def shard_bytes(root: DataRoot) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.shards.glob("*-*.bin"))
            + sorted(root.shards.glob("*-*.idx"))}


def split_tokens(root: DataRoot, split: str) -> list[int]:
    manifest = read_manifest(root.manifest)
    out: list[int] = []
    for info in manifest.split_shards(split):
        tokens, _ = open_shard(root.shards, info, manifest.dtype)
        out.extend(tokens.tolist())
    return out


def expected_tokens(root: DataRoot, split: str, val_fraction: float) -> list[int]:
    """Each kept document of the split, encoded whole by tokenizers itself, plus EOS."""
    tok = load_tokenizer(root.tokenizer_json)
    tok.encode_special_tokens = True
    eos = read_manifest(root.manifest).tokenizer.eos_id
    names = read_manifest(root.manifest).parts
    out: list[int] = []
    for doc in iter_clean_documents(root, names):
        if ("val" if is_val(doc.id, val_fraction) else "train") == split:
            out.extend(tok.encode(doc.text).ids + [eos])
    return out


def test_shards_hold_the_encodings_of_the_kept_documents_plus_eos(root: DataRoot) -> None:
    cfg = small_config()
    add_parts(root, [1, 2], words=900)  # ~5000 chars each: encoded in segments of <= 1000
    stats = tokenize_dataset(cfg, root, progress=False)
    manifest = read_manifest(root.manifest)
    assert stats.kept == 24 and stats.extra["encoder"] == "tiktoken"
    for split in SPLITS:
        assert split_tokens(root, split) == expected_tokens(root, split, 0.25)
        assert manifest.totals()[split]["docs"] > 0
    assert manifest.dtype == "uint16" and manifest.version == 1
    assert len(manifest.split_shards("train")) > 1
    assert verify_shards(root.shards, manifest, root.tokenizer_json).ok


def test_each_shard_counts_the_utf8_bytes_of_its_documents_text(root: DataRoot) -> None:
    docs = make_docs(12, 21)
    accented = [dataclasses.replace(d, text=d.text + " Fjörð, café, naïve, 日本." * i)
                for i, d in enumerate(docs)]  # characters of two and three bytes
    write_part(root.docs, accented)
    add_parts(root, [22])
    tokenize_dataset(small_config(), root, progress=False)
    manifest = read_manifest(root.manifest)
    tok = load_tokenizer(root.tokenizer_json)
    chars = 0
    for info in manifest.shards:
        tokens, ends = open_shard(root.shards, info, manifest.dtype)
        starts = [0, *ends[:-1].tolist()]
        texts = [tok.decode(tokens[s:e - 1].tolist()) for s, e in zip(starts, ends.tolist(),
                                                                       strict=True)]
        assert info.text_bytes == sum(len(t.encode("utf-8")) for t in texts) > 0
        chars += sum(map(len, texts))
    totals = manifest.totals()
    for split in SPLITS:
        assert totals[split]["text_bytes"] == sum(
            s.text_bytes for s in manifest.split_shards(split))
    assert totals["train"]["text_bytes"] + totals["val"]["text_bytes"] > chars  # bytes, not chars
    assert manifest.format_version == 3  # 2 brought text_bytes, 3 chunks and provenance


def test_hf_and_tiktoken_encoders_write_the_same_shards(tmp_path: Path) -> None:
    roots = [DataRoot.at(tmp_path / name) for name in ("tiktoken", "hf")]
    for r, encoder in zip(roots, ("tiktoken", "hf"), strict=True):
        add_parts(r, [3, 4])
        stats = tokenize_dataset(small_config(tokenize={"encoder": encoder}), r, progress=False)
        assert stats.extra["encoder"] == encoder
    assert shard_bytes(roots[0]) == shard_bytes(roots[1])


def test_documents_keep_their_split_and_old_shards_stay_when_the_dataset_grows(
        root: DataRoot) -> None:
    cfg = small_config()
    add_parts(root, [5, 6])
    tokenize_dataset(cfg, root, progress=False)
    first = read_manifest(root.manifest)
    before = shard_bytes(root)

    add_parts(root, [7, 8])
    stats = tokenize_dataset(cfg, root, progress=False)
    second = read_manifest(root.manifest)

    assert stats.kept == 24 and stats.skipped["already_in_shards"] == 24
    assert second.version == first.version + 1
    assert second.shards[:len(first.shards)] == first.shards
    assert [s.name for s in second.split_shards("train")][:2] == ["train-00000", "train-00001"]
    after = shard_bytes(root)
    assert all(after[name] == data for name, data in before.items())  # never rewritten
    assert len(after) > len(before)
    for split in SPLITS:  # every document where its id puts it, old and new
        assert split_tokens(root, split) == expected_tokens(root, split, 0.25)
    assert verify_shards(root.shards).ok


def test_a_run_without_new_documents_changes_nothing(root: DataRoot) -> None:
    cfg = small_config()
    add_parts(root, [9])
    tokenize_dataset(cfg, root, progress=False)
    manifest_text = root.manifest.read_text()
    stats = tokenize_dataset(cfg, root, progress=False)
    assert stats.kept == 0 and stats.skipped["already_in_shards"] == 12
    assert root.manifest.read_text() == manifest_text


@pytest.mark.slow
def test_rerun_on_a_fresh_root_is_byte_identical_whatever_the_worker_count(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clean, "POOL_MIN_BYTES", 0)  # worker processes even for tiny input
    results = []
    for workers in (1, 2):
        r = DataRoot.at(tmp_path / f"w{workers}")
        add_parts(r, [10, 11, 12])
        write_part(r.docs, make_docs(4, 10))  # the same documents again: duplicate ids
        stats = tokenize_dataset(small_config(clean={"workers": workers}), r, progress=False)
        assert stats.extra["clean"]["workers"] == workers
        results.append((shard_bytes(r), r.tokenizer_json.read_bytes()))
    assert results[0] == results[1]


class Crash(Exception):
    """Stands for the process being killed."""


def _crash_on_call(monkeypatch: pytest.MonkeyPatch, module: object, name: str, n: int) -> None:
    real = getattr(module, name)
    calls = {"n": 0}

    def wrapper(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == n:
            raise Crash(f"{name} call {n}")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


@pytest.mark.parametrize("where", [
    (clean, "_commit_part", 3),  # while cleaning the third part
    (encode, "open_part", 2),  # while encoding the first part and reading the second
    (tokenization, "write_manifest", 1),  # every shard written, none listed yet
])
def test_interrupted_run_resumes_to_the_same_shards(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    where: tuple[object, str, int]) -> None:
    cfg = small_config()
    reference = DataRoot.at(tmp_path / "reference")
    add_parts(reference, [13, 14, 15])
    tokenize_dataset(cfg, reference, progress=False)

    root = DataRoot.at(tmp_path / "resumed")
    add_parts(root, [13, 14, 15])
    with monkeypatch.context() as m:
        _crash_on_call(m, *where)
        with pytest.raises(Crash):
            tokenize_dataset(cfg, root, progress=False)
    stats = tokenize_dataset(cfg, root, progress=False)
    assert shard_bytes(root) == shard_bytes(reference)
    assert read_manifest(root.manifest).shards == read_manifest(reference.manifest).shards
    assert stats.kept == 36
    if where[1] == "write_manifest":
        assert stats.extra["parts_resumed"] == 3  # the encoded parts were not encoded again
    assert not list((root.state / "tokenize").glob("*.bin"))  # spools removed once listed


def test_a_damaged_spool_is_encoded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    cfg = small_config()
    reference = DataRoot.at(tmp_path / "reference")
    add_parts(reference, [29, 30])
    tokenize_dataset(cfg, reference, progress=False)

    root = DataRoot.at(tmp_path / "damaged")
    add_parts(root, [29, 30])
    with monkeypatch.context() as m:
        _crash_on_call(m, tokenization, "write_manifest", 1)
        with pytest.raises(Crash):
            tokenize_dataset(cfg, root, progress=False)
    # what an OS crash can leave of files written without fsync: a short file
    spool = root.state / "tokenize" / "part-00001.train.bin"
    spool.write_bytes(spool.read_bytes()[:-6])
    stats = tokenize_dataset(cfg, root, progress=False)
    assert stats.extra["parts_resumed"] == 1  # part-00000 reused, part-00001 encoded again
    assert shard_bytes(root) == shard_bytes(reference)


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    from pipeline import shards, tokenization
    from pipeline.layout import DataRoot
    from test_dataset import small_config

    real_flush = shards.ShardWriter.flush
    count = {{"n": 0}}

    def dying_flush(self):
        count["n"] += not self.stem  # shards, not the encoding spools (also shard files)
        if count["n"] == 3:  # the third shard is still in its temporary file: die, no cleanup
            os._exit(137)
        return real_flush(self)

    shards.ShardWriter.flush = dying_flush
    if __name__ == "__main__":
        tokenization.tokenize_dataset(small_config(), DataRoot.at(sys.argv[1]), progress=False)
""")


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_shards(tmp_path: Path) -> None:
    cfg = small_config()
    reference = DataRoot.at(tmp_path / "reference")
    add_parts(reference, [16, 17])
    tokenize_dataset(cfg, reference, progress=False)

    root = DataRoot.at(tmp_path / "killed")
    add_parts(root, [16, 17])
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(tests=str(REPO / "tests")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLLM_")}
    proc = subprocess.run([sys.executable, str(script), str(root.path)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr
    assert not root.manifest.exists()
    assert list(root.shards.glob(".*.tmp"))  # the half-written shard
    tokenize_dataset(cfg, root, progress=False)
    assert shard_bytes(root) == shard_bytes(reference)
    assert not list(root.shards.glob(".*.tmp"))
    assert verify_shards(root.shards).ok


def test_bad_parts_and_records_become_failures_and_the_rest_completes(root: DataRoot) -> None:
    cfg = small_config()
    add_parts(root, [18])
    bad_part = root.docs / "part-00001.jsonl.zst"
    bad_part.write_bytes(b"\x28\xb5\x2f\xfd this is not zstd")
    import zstandard

    good = make_docs(2, 19)
    lines = [good[0].to_json(), "{not json", '{"id": "x", "source": "s", "mime": "m"}',
             good[1].to_json()]
    (root.docs / "part-00002.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress(("\n".join(lines) + "\n").encode()))
    stats = tokenize_dataset(cfg, root, progress=False)
    assert stats.kept == 14
    assert stats.failed == {"corrupt": 3}
    rows = FailureLog(root.state / "clean" / "failures.jsonl").read()
    assert sorted(r.source.rsplit("/", 1)[-1] for r in rows) == [
        "part-00001.jsonl.zst", "part-00002.jsonl.zst:2", "part-00002.jsonl.zst:3"]
    assert "part-00001.jsonl.zst" not in read_manifest(root.manifest).parts

    # once the part is readable it is cleaned and tokenized, and its failure row goes
    write_part(root.docs, make_docs(3, 20), number=1)
    stats = tokenize_dataset(cfg, root, progress=False)
    assert stats.kept == 3 and stats.n_failed == 0
    assert [r.source.rsplit("/", 1)[-1] for r in
            FailureLog(root.state / "clean" / "failures.jsonl").read()] == [
        "part-00002.jsonl.zst:2", "part-00002.jsonl.zst:3"]


def test_changing_what_fixes_existing_shards_is_refused(root: DataRoot) -> None:
    add_parts(root, [21])
    tokenize_dataset(small_config(), root, progress=False)
    add_parts(root, [22])
    with pytest.raises(ConfigError, match="shards.val_fraction"):
        tokenize_dataset(small_config(shards={"val_fraction": 0.5}), root, progress=False)
    with pytest.raises(ConfigError, match="tokenize.vocab_size"):
        tokenize_dataset(small_config(tokenize={"vocab_size": 700}), root, progress=False)
    assert read_manifest(root.manifest).version == 1


def test_a_given_tokenizer_is_copied_into_the_data_root_and_used(tmp_path: Path) -> None:
    first = DataRoot.at(tmp_path / "first")
    add_parts(first, [23])
    tokenize_dataset(small_config(), first, progress=False)

    second = DataRoot.at(tmp_path / "second")
    add_parts(second, [24])
    cfg = small_config(tokenize={"tokenizer": str(first.tokenizer_json)})
    stats = tokenize_dataset(cfg, second, progress=False)
    sha = hashlib.sha256(first.tokenizer_json.read_bytes()).hexdigest()
    assert stats.extra["tokenizer"] == "given"
    assert read_manifest(second.manifest).tokenizer.sha256 == sha
    assert second.tokenizer_json.read_bytes() == first.tokenizer_json.read_bytes()
    assert split_tokens(second, "train") == expected_tokens(second, "train", 0.25)


def test_clean_run_separately_then_tokenize_uses_its_output(root: DataRoot) -> None:
    cfg = small_config()
    add_parts(root, [25, 26])
    clean = clean_documents(cfg, root, progress=False)
    assert clean.kept == 24
    stats = tokenize_dataset(cfg, root, progress=False)
    assert stats.extra["clean"]["kept"] == 0  # nothing left to clean
    assert stats.kept == 24
    assert sum(read_manifest(root.manifest).totals()[s]["docs"] for s in SPLITS) == 24


@pytest.mark.slow
def test_cllm_tokenize_and_shards_commands(root: DataRoot, cli_env: dict[str, str]) -> None:
    add_parts(root, [27])
    base = [str(Path(sys.executable).parent / "cllm"), "--root", str(root.path),
            "--set", "tokenize.vocab_size=600", "--set", "clean.workers=1"]
    clean = subprocess.run([*base, "clean", "--workers", "1"], env=cli_env,
                           capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    assert "clean: 12 seen, 12 kept" in clean.stdout
    run = subprocess.run([*base, "tokenize", "--shard-tokens", "1024", "--val-fraction", "0.25"],
                         env=cli_env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "tokenize: 12 seen, 12 kept" in run.stdout
    assert "clean: 12 seen, 0 kept; 12 skipped (already_cleaned=12)" in run.stderr  # logged
    manifest = read_manifest(root.manifest)
    assert manifest.config["shards"]["shard_tokens"] == 1024
    assert (root.shards / "tokenize.config.toml").is_file()

    inspect = subprocess.run([*base, "shards", "inspect"], env=cli_env, capture_output=True,
                             text=True, timeout=60)
    assert inspect.returncode == 0
    train = manifest.totals()["train"]
    assert f"train: {train['shards']} shards, {train['docs']} docs, {train['tokens']} tokens" \
        in inspect.stdout
    assert manifest.tokenizer.sha256 in inspect.stdout

    decode = subprocess.run([*base, "shards", "decode", "--split", "train", "--doc", "1"],
                            env=cli_env, capture_output=True, text=True, timeout=60)
    train_docs = [d.text for d in iter_clean_documents(root, manifest.parts)
                  if not is_val(d.id, 0.25)]
    source, text = decode.stdout.split("\n", 1)
    assert decode.returncode == 0 and text == train_docs[1]
    assert source.startswith("# train 1 (train-00000 entry 1): /corpus/doc-27-")
    text_only = subprocess.run([*base, "shards", "decode", "--split", "train", "--doc", "1",
                                "--text-only"], env=cli_env, capture_output=True, text=True,
                               timeout=60)
    assert text_only.stdout == train_docs[1]
    missing = subprocess.run([*base, "shards", "decode", "--split", "val", "--doc", "999"],
                             env=cli_env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no document 999" in missing.stderr
    assert np.all(np.diff(np.fromfile(root.shards / "train-00000.idx", dtype="<u8")) > 0)


def test_a_given_file_that_is_no_usable_tokenizer_is_refused(root: DataRoot,
                                                             tmp_path: Path) -> None:
    from pipeline.tokenizer import save_tokenizer, train_bpe

    add_parts(root, [28])
    junk = tmp_path / "junk.json"
    junk.write_text('{"not": "a tokenizer"}')
    with pytest.raises(ConfigError, match="is not a tokenizers tokenizer.json"):
        tokenize_dataset(small_config(tokenize={"tokenizer": str(junk)}), root, progress=False)
    other_eos = tmp_path / "other.json"
    save_tokenizer(train_bpe(["some text"] * 3, vocab_size=300, eos_token="</s>"), other_eos)
    with pytest.raises(ConfigError, match=re.escape("no end-of-text token '<|endoftext|>'")):
        tokenize_dataset(small_config(tokenize={"tokenizer": str(other_eos)}), root,
                         progress=False)
    assert not root.manifest.exists()
