"""Decontamination (clean.decontaminate, clean.decontaminate_n): a document sharing a word
n-gram with the evaluation text is dropped as `contaminated`, whatever its case, punctuation
or spacing; one word short of an n-gram is kept."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from test_dataset_support import doc_id, make_text

from pipeline.clean import clean_documents
from pipeline.config import build_config, read_toml
from pipeline.decontam import contamination, ngram_hashes, normalised_words
from pipeline.docstore import write_part
from pipeline.errors import ConfigError
from pipeline.layout import DataRoot
from pipeline.records import Document

QUESTION = ("Which river flows through the old town past the market and the castle before "
            "it reaches the harbour in winter")  # 20 words
ANSWER = "The answer is the northern branch of the river near the station bridge every summer"


def _eval_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "evals"
    (folder / "sub").mkdir(parents=True)
    (folder / "qa.jsonl").write_text(
        json.dumps({"text": QUESTION, "id": 1}) + "\nnot json\n" + json.dumps({"q": "x"}) + "\n",
        encoding="utf-8")
    (folder / "sub" / "answers.txt").write_text(ANSWER, encoding="utf-8")
    return folder


def test_ngrams_are_of_normalised_words() -> None:
    assert normalised_words("The RIVER, flows—ﬁne!") == ["the", "river", "flows", "fine"]
    words = "a b c d e".split()
    assert len(ngram_hashes(words, 3)) == 3 and len(ngram_hashes(words, 6)) == 0
    assert ngram_hashes(["x", "y", "z"], 3)[0] != ngram_hashes(["z", "y", "x"], 3)[0]


def test_a_shared_ngram_is_found_whatever_the_case_and_punctuation(tmp_path: Path) -> None:
    folder = str(_eval_folder(tmp_path))
    prose = make_text(random.Random(1), 150)
    copied = " ".join(QUESTION.upper().split()[3:16]).replace(" ", ",  ")  # 13 words, mangled
    found = contamination(f"{prose}\n\n{copied}!\n\n{prose}", [folder], 13)
    assert found is not None and found.startswith("1 shared 13-grams, the first: 'through")
    assert contamination(" ".join(ANSWER.split()[:13]), [folder], 13) is not None  # the .txt
    assert contamination(" ".join(QUESTION.split()[:12]) + " " + prose, [folder], 13) is None
    assert contamination(prose, [folder], 13) is None
    with pytest.raises(ConfigError, match=r"clean.decontaminate\[0\]"):
        contamination(prose, [str(tmp_path / "missing")], 13)


def test_clean_drops_contaminated_documents_with_their_reason(root: DataRoot,
                                                              tmp_path: Path) -> None:
    folder = _eval_folder(tmp_path)
    rng = random.Random(2)
    docs = [Document(id=doc_id(f"dc-{i}"), source=f"/dc/{i}.txt", mime="text/plain",
                     text=make_text(rng, 150) + (f"\n\n{QUESTION}?" if i == 1 else ""),
                     created_at="2026-01-01") for i in range(4)]
    write_part(root.docs, docs)
    cfg = build_config([{"clean": {"workers": 1, "decontaminate": [str(folder)]}}])
    stats = clean_documents(cfg, root, progress=False)
    assert stats.kept == 3 and dict(stats.dropped) == {"contaminated": 1}
    assert stats.extra["decontaminate_ngrams"] == (20 - 12) + (15 - 12)  # unique 13-grams


def test_relative_eval_paths_in_a_config_file_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "cllm.toml").write_text('[clean]\ndecontaminate = ["evals"]\n',
                                        encoding="utf-8")
    data = read_toml(tmp_path / "cllm.toml")
    assert data["clean"]["decontaminate"] == [str(tmp_path / "evals")]
    with pytest.raises(ConfigError, match="clean.decontaminate_n"):
        build_config([{"clean": {"decontaminate_n": 2}}])


def test_a_rebuild_leaves_out_what_a_new_eval_file_finds_in_the_shards(root: DataRoot,
                                                                      tmp_path: Path) -> None:
    from test_dataset import small_config

    from pipeline.shards import read_manifest, verify_shards
    from pipeline.tokenization import tokenize_dataset

    rng = random.Random(3)
    docs = [Document(id=doc_id(f"rb-{i}"), source=f"/rb/{i}.txt", mime="text/plain",
                     text=make_text(rng, 150), created_at="2026-01-01") for i in range(6)]
    write_part(root.docs, docs)
    assert tokenize_dataset(small_config(), root, progress=False).kept == 6
    evals = tmp_path / "later.txt"
    evals.write_text(" ".join(docs[4].text.split()[40:60]), encoding="utf-8")

    later = {"decontaminate": [str(evals)]}
    again = tokenize_dataset(small_config(clean=later), root, progress=False)
    assert again.kept == 0  # shards are append-only: what is in them stays until a rebuild
    # ... but the clean stage re-checked the 6 documents cleaned before and says so
    report = json.loads((root.state / "decontam" / "recheck.json").read_text())
    assert report["checked"] == 6 and [r["source"] for r in report["contaminated"]] == \
        ["/rb/4.txt"] and "shared 13-grams" in report["contaminated"][0]["detail"]
    assert (root.state / "decontam" / "ngrams.npy").is_file()
    line = _clean_status_line(root)
    assert "re-check" in line and "1 of 6 documents cleaned before share 13-grams" in line
    assert "0 shard entries" not in line
    index_state = (root.state / "decontam" / "index.json").stat().st_mtime_ns
    assert tokenize_dataset(small_config(clean=later), root, progress=False).kept == 0
    assert (root.state / "decontam" / "index.json").stat().st_mtime_ns == index_state
    rebuilt = tokenize_dataset(small_config(clean=later, tokenize={"rebuild": True}), root,
                               progress=False)
    assert rebuilt.kept == 5 and dict(rebuilt.dropped) == {"contaminated": 1}
    manifest = read_manifest(root.manifest)
    sources = {json.loads(line)["source"] for s in manifest.shards
               for line in (root.shards / f"{s.name}.prov.jsonl").read_text().splitlines()}
    assert sources == {d.source for d in docs} - {"/rb/4.txt"}
    assert verify_shards(root.shards, manifest, root.tokenizer_json).ok
    assert "0 shard entries of them" in _clean_status_line(root)  # the rebuild left it out


def _clean_status_line(root: DataRoot) -> str:
    from flows.stages import STAGES
    from pipeline.status import data_root_status, status_lines

    return next(line for line in status_lines(data_root_status(root, STAGES))
                if line.startswith("clean "))
