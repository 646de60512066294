"""The BPE tokenizer: lossless round trips, exact segmenting, tiktoken id-for-id with tokenizers,
and the legacy tools cllm_tokenize and cllm_vocab_build."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from test_dataset_support import make_text

from flows.shell.legacy_text import tokenize_main, vocab_build_main
from pipeline.encoders import (
    IDENTITY_PROBE,
    HFEncoder,
    TiktokenEncoder,
    UnsupportedTokenizer,
    encode_texts,
    make_encoder,
    segment_text,
    to_tiktoken,
)
from pipeline.tokenizer import decode, eos_id, load_tokenizer, save_tokenizer, train_bpe

UNICODE = ("Ünïcödé naïve café, 中文字符测试, Ελληνικά, русский текст, עִבְרִית, العربية, "
           "emoji 😀👍🏽 👨‍👩‍👧 🇫🇷, math ∑∫√≤≥, combining e\u0301 a\u0308, nbsp\u00a0here, "
           "ideographic\u3000space, line\u2028separator, zero\u200bwidth")
WHITESPACE = "a  b   c\t\td\n\n\ne \n \n  \t f     \r\n\r\ng\x0b\x0ch    \n\n\n\n    "
CODE = '''def f(x: int) -> dict[str, list[int]]:
    """Docstring with 'quotes' and "more"."""
    if x >= 10 and not x % 3:  # comment
        return {"a": [1, 2, 3], 'b': []}
\treturn {}  # tab-indented

class A(B):
    pass
'''


def _stdlib_texts() -> list[str]:
    import argparse as a
    import json.decoder as jd
    import textwrap as t

    return [Path(m.__file__).read_text(encoding="utf-8") for m in (a, jd, t)]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    rng = random.Random(7)
    return [*_stdlib_texts(), UNICODE * 3, WHITESPACE * 3, CODE * 3,
            *(make_text(rng, 300) for _ in range(20))]


@pytest.fixture(scope="module")
def tok(corpus: list[str]):  # noqa: ANN201 - tokenizers.Tokenizer
    return train_bpe(corpus, vocab_size=2000, min_frequency=2)


@pytest.mark.parametrize("text", [UNICODE, WHITESPACE, CODE, "", " ", "\n", "<|endoftext|>",
                                  "before <|endoftext|> after", "\x00\x01 control \x7f"])
def test_decode_of_encode_is_the_exact_text(tok, text: str) -> None:  # noqa: ANN001
    ids = HFEncoder(tok).encode_batch([text])[0]
    assert decode(tok, ids) == text
    assert eos_id(tok) not in ids  # the EOS text inside a document is plain text


def test_training_is_deterministic_and_has_the_eos_token(tok, corpus: list[str]) -> None:  # noqa: ANN001
    again = train_bpe(iter(corpus), vocab_size=2000, min_frequency=2)
    assert again.to_str() == tok.to_str()
    assert tok.get_vocab_size() == 2000 and eos_id(tok) == 0


def test_save_and_load(tok, tmp_path: Path) -> None:  # noqa: ANN001
    sha = save_tokenizer(tok, tmp_path / "t.json")
    assert len(sha) == 64
    assert load_tokenizer(tmp_path / "t.json").to_str() == tok.to_str()
    with pytest.raises(FileNotFoundError, match="cllm tokenize"):
        load_tokenizer(tmp_path / "missing.json")


LONG_TEXTS = {
    "paragraphs": "\n\n".join(make_text(random.Random(i), 120) for i in range(40)),
    "lines": "\n".join(make_text(random.Random(i), 20).replace("\n\n", " ") for i in range(300)),
    "one line": make_text(random.Random(3), 3000).replace("\n\n", " "),
    "indented": ("    code = [x for x in range(10)]\n        \n\n\t  nested\n" * 500),
    "no spaces": "abcdefghij" * 3000,
}


@pytest.mark.parametrize("name", LONG_TEXTS)
def test_segments_cut_at_piece_boundaries_give_the_ids_of_the_whole(tok, name: str) -> None:  # noqa: ANN001
    text = LONG_TEXTS[name]
    pieces = segment_text(text, 1000)
    assert "".join(pieces) == text and len(pieces) > 5
    assert all(len(p) <= 1000 for p in pieces) and all(len(p) >= 500 for p in pieces[:-1])
    whole = HFEncoder(tok).encode_batch([text])[0]
    for encoder in (HFEncoder(tok), TiktokenEncoder(to_tiktoken(tok), 2)):
        ids = encode_texts(encoder, [text], 1000)[0].tolist()
        assert decode(tok, ids) == text
        if name != "no spaces":  # a hard cut inside a word may merge differently
            assert ids == whole


def test_tiktoken_gives_the_same_ids_as_tokenizers(tok, corpus: list[str]) -> None:  # noqa: ANN001
    enc = to_tiktoken(tok)
    hf = HFEncoder(tok)
    assert enc.encode_ordinary_batch(corpus) == hf.encode_batch(corpus)
    # random mixtures of what tends to differ: whitespace kinds, contractions, scripts, digits
    pool = [*"ab XYZ 019'sdtmlvre\n\t\r\x0b\x0c\x1c\x1f\x85\xa0\u2000\u2028\u3000\u200b",
            *"é中😀👍🏽\u0301\u200d!?.,;:()[]{}<|>_-", "<|endoftext|>", "'s", "'ll", "'VE", "\n\n",
            " the", "ing", "    ", "1234567"]
    rng = random.Random(0)
    fuzz = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 40))) for _ in range(3000)]
    assert enc.encode_ordinary_batch(fuzz) == hf.encode_batch(fuzz)


def test_the_stage_s_arrays_are_each_text_s_ids_in_order(tok) -> None:  # noqa: ANN001
    """Texts are encoded in runs of about equal characters, one run per thread at a time:
    empty and long texts among many short ones still come back each with its own ids."""
    rng = random.Random(1)
    texts = [rng.choice(["", "a", "word and words. ", "x" * 5000, "Line\n\n" * 300])
             * rng.randint(0, 3) for _ in range(200)]
    encoder = TiktokenEncoder(to_tiktoken(tok), 2)
    assert [a.tolist() for a in encoder.encode_arrays(texts)] == HFEncoder(tok).encode_batch(texts)
    assert encoder.encode_arrays([]) == [] and encoder.encode_arrays([""])[0].size == 0


@pytest.mark.slow
def test_tiktoken_matches_tokenizers_with_a_full_size_vocabulary() -> None:
    """8192 tokens trained on a few MB of real text and code: every id the same."""
    import os

    folder = Path(os.__file__).parent
    texts, size = [], 0
    for path in sorted(folder.glob("*.py")):
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
        size += len(texts[-1])
        if size > 3_000_000:
            break
    tok = train_bpe(texts, vocab_size=8192)
    texts.append("text that names <|endoftext|> is encoded as text " + IDENTITY_PROBE)
    hf = HFEncoder(tok).encode_batch(texts)
    tiktoken_encoder = TiktokenEncoder(to_tiktoken(tok), 2)
    assert tiktoken_encoder.encode_batch(texts) == hf
    assert sum(map(len, hf)) > 500_000
    # the stage's path: each text's ids as one array, from either encoder
    for encoder in (tiktoken_encoder, HFEncoder(tok)):
        assert [a.tolist() for a in encoder.encode_arrays(texts)] == hf


def test_tokenizers_tiktoken_cannot_reproduce_fall_back_to_tokenizers(tok) -> None:  # noqa: ANN001
    from tokenizers import Tokenizer, normalizers

    lower = Tokenizer.from_str(tok.to_str())
    lower.normalizer = normalizers.Lowercase()
    with pytest.raises(UnsupportedTokenizer, match="normalizer"):
        to_tiktoken(lower)
    choice = make_encoder(lower, "auto")
    assert choice.encoder.name == "hf" and "normalizer" in choice.reason
    with pytest.raises(UnsupportedTokenizer):
        make_encoder(lower, "tiktoken")
    assert make_encoder(tok, "auto").encoder.name == "tiktoken"
    assert make_encoder(tok, "hf").encoder.name == "hf"


# --- legacy tools ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok_file(tok, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    save_tokenizer(tok, path)
    return path


def test_cllm_tokenize_encodes_decodes_and_counts(tok, tok_file: Path, tmp_path: Path,  # noqa: ANN001
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    text = "The river runs past the old mill, naïvely. 😀"
    ids = HFEncoder(tok).encode_batch([text])[0]
    assert tokenize_main(["-v", str(tok_file), text]) == 0
    assert capsys.readouterr().out == " ".join(map(str, ids)) + "\n"

    assert tokenize_main(["-v", str(tok_file), "-j", "-s", text]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ids"] == ids
    assert out["stats"] == {"chars": len(text), "bytes": len(text.encode()), "tokens": len(ids),
                            "min_id": min(ids), "max_id": max(ids),
                            "chars_per_token": round(len(text) / len(ids), 3)}

    assert tokenize_main(["-v", str(tok_file), "-s", text]) == 0
    assert f"tokens: {len(ids)}\nmin id: {min(ids)}\nmax id: {max(ids)}" in capsys.readouterr().out

    (tmp_path / "ids.txt").write_text(json.dumps(ids))
    assert tokenize_main(["-v", str(tok_file), "-d", "-f", str(tmp_path / "ids.txt"),
                          "-o", str(tmp_path / "out.txt")]) == 0
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == text

    assert tokenize_main(["-v", str(tok_file), "-d", "-j", "1, 2,x"]) == 2
    assert "not a token id: 'x'" in capsys.readouterr().err
    assert tokenize_main(["-v", str(tok_file), "-d", "99999"]) == 2
    assert tokenize_main(["-v", str(tmp_path / "none.json"), "hi"]) == 2


def test_cllm_tokenize_console_script_reads_stdin(tok, tok_file: Path,  # noqa: ANN001
                                                  cli_env: dict[str, str]) -> None:
    text = "line one\n\n  indented line two\n"
    run = subprocess.run([str(Path(sys.executable).parent / "cllm_tokenize"), "-v",
                          str(tok_file), "--json"], input=text, env=cli_env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["ids"] == HFEncoder(tok).encode_batch([text])[0]


def test_cllm_vocab_build_trains_on_text_files(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    top = tmp_path / "corpus"
    (top / "sub").mkdir(parents=True)
    rng = random.Random(11)
    for i in range(3):
        (top / f"a{i}.txt").write_text(make_text(rng, 400))
        (top / "sub" / f"b{i}.md").write_text(make_text(rng, 400))
    (top / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0binary")
    (top / "notes.log").write_text(make_text(rng, 50))
    out = tmp_path / "tok.json"

    assert vocab_build_main(["-o", str(out), "-s", "400", "-r", "-e", "txt,md", str(top)]) == 0
    summary = capsys.readouterr().out
    assert "from 6 files" in summary
    built = load_tokenizer(out)
    assert built.get_vocab_size() == 400 and eos_id(built) == 0
    assert decode(built, HFEncoder(built).encode_batch([UNICODE])[0]) == UNICODE

    assert vocab_build_main(["-o", str(out), "-s", "400", str(top)]) == 0  # not recursive
    captured = capsys.readouterr()
    assert "from 4 files" in captured.out and "image.png: binary" in captured.err

    assert vocab_build_main(["-o", str(out), str(tmp_path / "empty-dir-missing")]) == 1
    with pytest.raises(SystemExit):
        vocab_build_main(["-s", "10", str(top)])


def test_tool_parsers_accept_the_legacy_flags() -> None:
    from flows.shell.legacy_text import _tokenize_parser, _vocab_parser

    args = _tokenize_parser().parse_args(["-f", "in", "-o", "out", "-d", "-s", "-v", "t", "-j"])
    assert vars(args) == {"text": [], "file": "in", "output": "out", "decode": True,
                          "stats": True, "vocab": "t", "json": True}
    args = _vocab_parser().parse_args(["-o", "o", "-s", "9", "-r", "-e", "txt", "-v", "p1", "p2"])
    assert isinstance(args, argparse.Namespace)
    assert (args.output, args.size, args.recursive, args.ext, args.verbose, args.paths) == \
        ("o", 9, True, ["txt"], True, ["p1", "p2"])


def test_the_identity_check_runs_once_per_tokenizer_and_library_versions(
        tok, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The whole-vocabulary check passes once, is remembered in the user cache, and a
    tokenizer with other merges is checked again (a failing check still refuses it)."""
    from tokenizers import Tokenizer

    from pipeline import encoders

    monkeypatch.setenv("CLLM_CACHE_DIR", str(tmp_path / "cache"))
    to_tiktoken(tok)
    assert len(list((tmp_path / "cache" / "tiktoken-identity").glob("*.ok"))) == 1

    def disagree(*_: object) -> None:
        raise UnsupportedTokenizer("tiktoken gives other ids than tokenizers")

    monkeypatch.setattr(encoders, "check_identity", disagree)
    to_tiktoken(tok)  # remembered: not checked again
    other = Tokenizer.from_str(tok.to_str())
    other.add_special_tokens(["<|other|>"])
    with pytest.raises(UnsupportedTokenizer, match="other ids"):
        to_tiktoken(other)
