"""The legacy tokenizer tools' front ends, on the same functions as `cllm tokenize`.

    cllm_tokenize [-f FILE] [-o FILE] [-d/--decode] [-s/--stats] [-v/--vocab TOKENIZER]
                  [-j/--json] [TEXT]
    cllm_vocab_build [-o FILE] [-s/--size N] [-r/--recursive] [-e/--ext EXT] [-v] PATH...
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.shell.runner import EXIT_FAILED, EXIT_OK, UsageError, run_tool
from pipeline.config import TokenizeConfig

log = logging.getLogger(__name__)

BINARY_SNIFF_BYTES = 8192
_ID_SEPARATORS = re.compile(r"[\s,\[\]]+")


# --- cllm_tokenize --------------------------------------------------------------------------


def _tokenize_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cllm_tokenize",
        description="Encode text to token ids (or decode ids to text) with a BPE tokenizer.json.")
    p.add_argument("text", nargs="*", metavar="TEXT",
                   help="text to encode (or ids to decode); default: FILE or standard input")
    p.add_argument("-f", "--file", metavar="FILE", help="read the input from FILE ('-' = stdin)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the output to FILE")
    p.add_argument("-d", "--decode", action="store_true",
                   help="input is token ids (spaces, commas or a JSON list): print the text")
    p.add_argument("-s", "--stats", action="store_true",
                   help="print length, token count, min/max id and chars per token")
    p.add_argument("-v", "--vocab", metavar="TOKENIZER",
                   help="tokenizer.json (default: the data root's, $CLLM_ROOT or ./cllm-data)")
    p.add_argument("-j", "--json", action="store_true", help="print JSON")
    return p


def _default_tokenizer() -> Path:
    from pipeline.layout import DEFAULT_ROOT, DataRoot

    return DataRoot.at(os.environ.get("CLLM_ROOT") or DEFAULT_ROOT).tokenizer_json


def _read_input(args: argparse.Namespace) -> str:
    if args.text and args.file:
        raise UsageError("give TEXT or -f FILE, not both")
    if args.text:
        return " ".join(args.text)
    if args.file and args.file != "-":
        try:
            return Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read {args.file}: {e}") from None
    return sys.stdin.read()


def parse_ids(text: str, vocab_size: int) -> list[int]:
    """Token ids written as spaces/commas/a JSON list; each must be in the vocabulary."""
    ids = []
    for item in _ID_SEPARATORS.split(text.strip()):
        if not item:
            continue
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"not a token id: {item!r}") from None
        if not 0 <= value < vocab_size:
            raise UsageError(f"token id {value} is outside the vocabulary (0..{vocab_size - 1})")
        ids.append(value)
    return ids


def token_stats(text: str, ids: Sequence[int]) -> dict[str, Any]:
    return {"chars": len(text), "bytes": len(text.encode("utf-8")), "tokens": len(ids),
            "min_id": min(ids) if ids else None, "max_id": max(ids) if ids else None,
            "chars_per_token": round(len(text) / len(ids), 3) if ids else None}


def _format_stats(stats: dict[str, Any]) -> str:
    return (f"length: {stats['chars']} chars ({stats['bytes']} bytes)\n"
            f"tokens: {stats['tokens']}\n"
            f"min id: {stats['min_id']}\nmax id: {stats['max_id']}\n"
            f"chars per token: {stats['chars_per_token']}\n")


def _tokenize(args: argparse.Namespace) -> str:
    from pipeline.encoders import encode_texts, make_encoder
    from pipeline.tokenizer import decode, load_tokenizer

    path = Path(args.vocab) if args.vocab else _default_tokenizer()
    try:
        tok = load_tokenizer(path)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        raise UsageError(f"{path} is not a tokenizer.json: {e}") from None
    data = _read_input(args)
    if args.decode:
        ids = parse_ids(data, tok.get_vocab_size())
        text = decode(tok, ids)
    else:
        text = data
        choice = make_encoder(tok, TokenizeConfig().encoder)
        ids = encode_texts(choice.encoder, [text], TokenizeConfig().segment_chars)[0].tolist()
    stats = token_stats(text, ids)
    if args.json:
        out: dict[str, Any] = {"text": text} if args.decode else {"ids": ids}
        if args.stats:
            out["stats"] = stats
        return json.dumps(out, ensure_ascii=False) + "\n"
    if args.stats:
        return _format_stats(stats)
    return text if args.decode else " ".join(map(str, ids)) + "\n"


def tokenize_main(argv: Sequence[str] | None = None) -> int:
    args = _tokenize_parser().parse_args(argv)

    def body() -> int:
        output = _tokenize(args)
        if args.output:
            from pipeline.atomic import atomic_write_text

            atomic_write_text(Path(args.output), output)
        else:
            sys.stdout.write(output)
        return EXIT_OK

    return run_tool("cllm_tokenize", body, quiet=1)


# --- cllm_vocab_build -----------------------------------------------------------------------


def _vocab_parser() -> argparse.ArgumentParser:
    default = TokenizeConfig()
    p = argparse.ArgumentParser(
        prog="cllm_vocab_build",
        description="Train a byte-level BPE tokenizer on text files and write tokenizer.json.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="text files or folders")
    p.add_argument("-o", "--output", metavar="FILE", default="tokenizer.json",
                   help="where to write the tokenizer (default: ./tokenizer.json)")
    p.add_argument("-s", "--size", type=int, default=default.vocab_size, metavar="N",
                   help=f"vocabulary size (default {default.vocab_size})")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument("-e", "--ext", action="append", default=[], metavar="EXT",
                   help="only files with this extension in folders (repeatable, or a,b,c); "
                        "default: every file that is not binary")
    p.add_argument("-v", "--verbose", action="store_true", help="list the files as they are read")
    return p


@dataclass(slots=True)
class _Corpus:
    """What the training read: counts for the summary, and the files it passed over."""

    files: int = 0
    chars: int = 0
    skipped: list[str] = field(default_factory=list)


def _wanted_extensions(values: Sequence[str]) -> set[str]:
    return {e.strip().lower().lstrip(".") for v in values for e in v.split(",") if e.strip()}


def find_text_files(paths: Sequence[Path], recursive: bool, exts: set[str],
                    corpus: _Corpus) -> Iterator[Path]:
    """Files named on the command line, and files in named folders (sorted)."""
    for top in paths:
        if top.is_file():
            yield top
        elif top.is_dir():
            found = top.rglob("*") if recursive else top.iterdir()
            for path in sorted(p for p in found if p.is_file()):
                if not exts or path.suffix.lower().lstrip(".") in exts:
                    yield path
        else:
            corpus.skipped.append(f"{top}: no such file or folder")


def _read_text(path: Path, corpus: _Corpus) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as e:
        corpus.skipped.append(f"{path}: {e.strerror or e}")
        return None
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        corpus.skipped.append(f"{path}: binary")
        return None
    text = data.decode("utf-8", errors="replace")
    if "\ufffd" in text and b"\xef\xbf\xbd" not in data:
        log.warning("%s is not valid UTF-8: undecodable bytes were replaced", path)
    return text


def corpus_texts(files: Iterator[Path], corpus: _Corpus, segment_chars: int,
                 verbose: bool) -> Iterator[str]:
    """Each file's text in segments, one file at a time (never the whole corpus in memory)."""
    from pipeline.encoders import segment_text
    from pipeline.filters import normalize_text

    for path in files:
        text = _read_text(path, corpus)
        if text is None:
            continue
        text = normalize_text(text)
        corpus.files += 1
        corpus.chars += len(text)
        if verbose:
            print(f"{path}: {len(text)} chars", file=sys.stderr)
        yield from segment_text(text, segment_chars)


def vocab_build_main(argv: Sequence[str] | None = None) -> int:
    parser = _vocab_parser()
    args = parser.parse_args(argv)
    if not 256 < args.size <= 1 << 20:
        parser.error(f"--size must be in 257..1048576, got {args.size}")
    return run_tool("cllm_vocab_build", lambda: _build_vocab(args),
                    quiet=0 if args.verbose else 1)


def _build_vocab(args: argparse.Namespace) -> int:
    from pipeline.encoders import set_threads
    from pipeline.tokenizer import save_tokenizer, train_bpe

    default = TokenizeConfig()
    set_threads(default.threads)
    corpus = _Corpus()
    files = find_text_files([Path(p) for p in args.paths], args.recursive,
                            _wanted_extensions(args.ext), corpus)
    tok = train_bpe(corpus_texts(files, corpus, default.segment_chars, args.verbose),
                    vocab_size=args.size, min_frequency=default.min_frequency,
                    eos_token=default.eos_token)
    for line in corpus.skipped:
        print(f"cllm_vocab_build: skipped {line}", file=sys.stderr)
    if corpus.chars == 0:
        print("cllm_vocab_build: no text found in the given paths", file=sys.stderr)
        return EXIT_FAILED
    sha = save_tokenizer(tok, Path(args.output))
    print(f"{args.output}: {tok.get_vocab_size()} tokens from {corpus.files} files "
          f"({corpus.chars} chars), sha256 {sha}")
    return EXIT_OK
