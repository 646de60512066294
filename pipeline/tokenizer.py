"""The byte-level BPE (Hugging Face `tokenizers`): train, save, load, decode (lossless), and
the data root's tokenizer, trained once and then always the same one:

    tokenizer/tokenizer.json   the tokenizer the shards are made with
    tokenizer/train.json       how it was made (trained with which settings, or given), to
                               notice a config that no longer matches it

Encoding to ids is `pipeline.encoders`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from pipeline.config import Config
from pipeline.errors import ConfigError, EnvironmentProblem
from pipeline.layout import DataRoot
from pipeline.rawstore import sha256_file

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from pipeline.shards import Manifest, TokenizerInfo

log = logging.getLogger(__name__)

DEFAULT_EOS = "<|endoftext|>"
TOKENIZER_META = "train.json"


def train_bpe(texts: Iterable[str], *, vocab_size: int, min_frequency: int = 2,
              eos_token: str = DEFAULT_EOS, length: int | None = None) -> Tokenizer:
    """Train on an iterator of texts (streamed: the texts are never all in memory)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # add_prefix_space=False and no normaliser: decode(encode(x)) == x for any string
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[eos_token],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    return tok


def save_tokenizer(tok: Tokenizer, path: Path) -> str:
    """Write tokenizer.json atomically; returns its sha256."""
    atomic_write_text(path, tok.to_str(pretty=False))
    return sha256_file(Path(path))


def load_tokenizer(path: Path) -> Tokenizer:
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer at {path}: run `cllm tokenize` or set "
                                "tokenize.tokenizer to an existing tokenizer.json")
    return Tokenizer.from_file(str(path))


def eos_id(tok: Tokenizer, eos_token: str = DEFAULT_EOS) -> int:
    token_id = tok.token_to_id(eos_token)
    if token_id is None:
        raise ValueError(f"tokenizer has no end-of-text token {eos_token!r}")
    return token_id


def decode(tok: Tokenizer, ids: Sequence[int]) -> str:
    """The exact text of `ids` (special tokens included, as their text)."""
    return tok.decode(list(map(int, ids)), skip_special_tokens=False)


# --- the data root's tokenizer ------------------------------------------------------------


def _wanted_meta(cfg: Config) -> dict[str, Any]:
    t = cfg.tokenize
    return {"source": "trained", "vocab_size": t.vocab_size, "min_frequency": t.min_frequency,
            "eos_token": t.eos_token}


def _read_meta(root: DataRoot) -> dict[str, Any]:
    path = root.tokenizer_dir / TOKENIZER_META
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def _training_texts(root: DataRoot, names: list[str], max_chars: int, segment_chars: int,
                    counter: dict[str, int]) -> Iterator[str]:
    from pipeline.clean import iter_clean_documents
    from pipeline.encoders import segment_text

    for doc in iter_clean_documents(root, names):
        if max_chars and counter["chars"] >= max_chars:
            return
        counter["docs"] += 1
        counter["chars"] += len(doc.text)
        yield from segment_text(doc.text, segment_chars)


def _train_tokenizer(cfg: Config, root: DataRoot, names: list[str]) -> Tokenizer:
    t = cfg.tokenize
    counter = {"docs": 0, "chars": 0}
    started = time.monotonic()
    texts = _training_texts(root, names, t.train_max_mb * 1_000_000, t.segment_chars, counter)
    tok = train_bpe(texts, vocab_size=t.vocab_size, min_frequency=t.min_frequency,
                    eos_token=t.eos_token)
    sha = save_tokenizer(tok, root.tokenizer_json)
    meta = _wanted_meta(cfg) | {"sha256": sha, "docs": counter["docs"],
                                "chars": counter["chars"], "parts": len(names),
                                "actual_vocab_size": tok.get_vocab_size()}
    atomic_write_json(root.tokenizer_dir / TOKENIZER_META, meta)  # written last: the commit
    log.info("tokenize: trained a %d-token BPE on %d documents (%.1f MB) in %.1fs",
             tok.get_vocab_size(), counter["docs"], counter["chars"] / 1e6,
             time.monotonic() - started)
    return tok


def _load_tokenizer(path: Path) -> Tokenizer:
    try:
        return load_tokenizer(path)
    except FileNotFoundError:
        raise
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        raise ConfigError(f"{path} is not a tokenizers tokenizer.json: {e}") from None


def _use_given_tokenizer(cfg: Config, root: DataRoot, manifest: Manifest | None) -> None:
    given = Path(cfg.tokenize.tokenizer).expanduser()
    if not given.is_file():
        raise ConfigError(f"tokenize.tokenizer: no file at {given}")
    _load_tokenizer(given)  # refuse a file that is not a tokenizer before copying it
    sha = sha256_file(given)
    if manifest is not None and sha != manifest.tokenizer.sha256:
        raise ConfigError(
            f"tokenize.tokenizer {given} (sha256 {sha[:12]}) is not the tokenizer the shards in "
            f"{root.shards} were made with ({manifest.tokenizer.sha256[:12]}); use it with a "
            "new data root, or delete shards/ to tokenize everything again")
    target = root.tokenizer_json
    if not target.is_file() or sha256_file(target) != sha:
        atomic_write_bytes(target, given.read_bytes())
    atomic_write_json(root.tokenizer_dir / TOKENIZER_META,
                      {"source": "given", "path": str(given.absolute()), "sha256": sha})


def _check_existing_tokenizer(cfg: Config, root: DataRoot, manifest: Manifest) -> None:
    path = root.tokenizer_json
    if not path.is_file() or sha256_file(path) != manifest.tokenizer.sha256:
        raise EnvironmentProblem(
            f"{path} is missing or changed, but the shards in {root.shards} were made with "
            f"tokenizer sha256 {manifest.tokenizer.sha256}; restore that file, or delete "
            "shards/ to tokenize everything again")
    meta = _read_meta(root)
    wanted = _wanted_meta(cfg)
    if meta.get("source") == "trained":
        changed = [k for k in ("vocab_size", "min_frequency", "eos_token")
                   if meta.get(k) != wanted[k]]
        if changed:
            key = changed[0]
            raise ConfigError(
                f"tokenize.{key} is {wanted[key]!r} but the shards were made with a tokenizer "
                f"trained with {meta.get(key)!r}; keep the old value, or use a new data root "
                "(or delete shards/ and tokenizer/) to tokenize everything again")


def prepare_tokenizer(cfg: Config, root: DataRoot, manifest: Manifest | None,
                      train_on: list[str]) -> tuple[Tokenizer, TokenizerInfo, str]:
    """The tokenizer for this run, its manifest entry, and how it was obtained.

    Once shards exist they fix the tokenizer; before that a given tokenizer.json is copied
    into the data root, or a BPE is trained on the cleaned documents of `train_on`.
    """

    how = "loaded"
    if cfg.tokenize.tokenizer:
        _use_given_tokenizer(cfg, root, manifest)
        how = "given"
    elif manifest is not None:
        _check_existing_tokenizer(cfg, root, manifest)
    else:
        meta = _read_meta(root)
        current = root.tokenizer_json.is_file() and meta.get("sha256") == sha256_file(
            root.tokenizer_json)
        if not (current and all(meta.get(k) == v for k, v in _wanted_meta(cfg).items())):
            _train_tokenizer(cfg, root, train_on)
            how = "trained"
    tok, info = loaded_tokenizer(cfg, root)
    return tok, info, how


def loaded_tokenizer(cfg: Config, root: DataRoot) -> tuple[Tokenizer, TokenizerInfo]:
    """The data root's tokenizer.json and its manifest entry."""
    from pipeline.shards import TokenizerInfo

    tok = _load_tokenizer(root.tokenizer_json)
    try:
        eos = eos_id(tok, cfg.tokenize.eos_token)
    except ValueError:
        raise ConfigError(f"tokenizer {root.tokenizer_json} has no end-of-text token "
                          f"{cfg.tokenize.eos_token!r} (tokenize.eos_token)") from None
    info = TokenizerInfo(sha256=sha256_file(root.tokenizer_json),
                         vocab_size=tok.get_vocab_size(), eos_id=eos,
                         path=root.tokenizer_json.relative_to(root.path).as_posix())
    return tok, info
