"""The dataset stages: clean (quality filters and dedup) and tokenize (tokenizer and shards).

Besides the hand-offs of DESIGN.md they keep, under the data root:

    state/dedup.sqlite              each document's decision, the exact and near-dup index,
                                    and the docs parts that are cleaned (the clean commit point)
    state/clean/part-NNNNN.jsonl.zst  kept documents of docs/part-NNNNN, text normalised
    state/clean/failures.jsonl      unreadable parts and records
    state/tokenize/part-NNNNN.*     encoded parts not yet in shards (train/val .bin/.idx + .json)
    tokenizer/train.json            how tokenizer.json was made, to notice config changes

Both stages work incrementally, docs part by docs part, in part order. What ends up in the
shards depends only on the parts, the config and the tokenizer, never on timing or worker
count: documents are deduplicated one after another in part order, encoded parts are spooled
whole, and shards are cut from the spools in part order. A killed run redoes at most the part
it was in and then writes the same shards an uninterrupted run would have written. The shard
manifest is the commit point of tokenize: shards it does not list are replaced on the next run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from pipeline.atomic import atomic_write, atomic_write_bytes, atomic_write_json, remove_orphan_temps
from pipeline.clean import Drop, Verdict, normalize_text, quality_verdict
from pipeline.config import CleanConfig, Config, save_resolved
from pipeline.dedup import DedupIndex, Fingerprint, PartRecord, fingerprint
from pipeline.docstore import PART_RE, list_parts, part_path, read_part, write_part
from pipeline.errors import ConfigError, CorruptInput, EnvironmentProblem, InputError
from pipeline.failures import FailureLog
from pipeline.layout import DataRoot
from pipeline.lock import check_input_free, stage_lock
from pipeline.progress import Progress, StageStats
from pipeline.rawstore import sha256_file
from pipeline.records import Document, Failure
from pipeline.shards import (
    IDX_DTYPE,
    SPLITS,
    Manifest,
    ShardInfo,
    ShardWriter,
    Split,
    TokenizerInfo,
    dtype_for_vocab,
    is_val,
    read_manifest,
    write_manifest,
)

if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Tokenizer

    from pipeline.tokenizer import TextEncoder

log = logging.getLogger(__name__)

CLEAN_STAGE = "clean"
TOKENIZE_STAGE = "tokenize"
TOKENIZER_META = "train.json"
BATCH_MAX_CHARS = 4_000_000  # an encode batch also ends at this many characters
# Below this much (compressed) input, starting worker processes costs more than they save.
POOL_MIN_BYTES = 2_000_000
T = TypeVar("T")
R = TypeVar("R")


def clean_dir(root: DataRoot) -> Path:
    return root.state / "clean"


def spool_dir(root: DataRoot) -> Path:
    return root.state / "tokenize"


def part_number(path: Path | str) -> int:
    m = PART_RE.match(Path(path).name)
    if m is None:
        raise ValueError(f"{path} is not a docs part name")
    return int(m.group(1))


# --- clean: per part, in worker processes ---------------------------------------------------


@dataclass(slots=True)
class _Cleaned:
    """One document after the filters: its normalised form, the verdict, its fingerprint."""

    doc: Document
    verdict: Verdict
    fp: Fingerprint | None  # only for documents the filters keep


@dataclass(slots=True)
class _PartResult:
    size: int
    items: list[_Cleaned] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)  # unreadable records
    error: Failure | None = None  # the whole part is unreadable


def _read_docs(path: Path) -> tuple[list[Document], list[Failure]]:
    """The Document records of a part; bad records become Failures, a bad part raises."""
    import zstandard

    docs: list[Document] = []
    failures: list[Failure] = []
    try:
        with open(path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as zr:
            for n, line in enumerate(io.TextIOWrapper(zr, encoding="utf-8"), 1):
                if not line.strip():
                    continue
                try:
                    doc = Document.from_json(line)
                    if not (isinstance(doc.id, str) and doc.id and isinstance(doc.text, str)):
                        raise TypeError("id and text must be strings")
                except (ValueError, TypeError, KeyError) as e:
                    failures.append(Failure(source=f"{path}:{n}", stage=CLEAN_STAGE,
                                            error="corrupt",
                                            message=f"not a Document record: {e}"))
                    continue
                docs.append(doc)
    except (zstandard.ZstdError, UnicodeDecodeError, EOFError) as e:
        raise CorruptInput(str(path), f"cannot read docs part: {e}") from None
    except OSError as e:
        raise CorruptInput(str(path), f"cannot read docs part: {e.strerror or e}") from None
    return docs, failures


def clean_part(path: Path, cfg: CleanConfig) -> _PartResult:
    """Normalise, filter and fingerprint the documents of one docs part (no shared state)."""
    result = _PartResult(size=path.stat().st_size)
    try:
        docs, result.failures = _read_docs(path)
    except InputError as e:
        result.error = Failure(source=e.source, stage=CLEAN_STAGE, error=e.kind,
                               message=e.reason)
        return result
    for doc in docs:
        doc.text = normalize_text(doc.text)
        verdict = quality_verdict(doc.text, cfg)
        fp = None
        if isinstance(verdict, Drop):
            doc.text = ""  # not needed any more: spare sending it back from the worker
        else:
            fp = fingerprint(doc.text, cfg)
        result.items.append(_Cleaned(doc=doc, verdict=verdict, fp=fp))
    return result


def _ordered_map(fn: Callable[[T], R], items: list[T], workers: int) -> Iterator[tuple[T, R]]:
    """(item, fn(item)) in input order; fn runs in up to `workers` processes, with a bounded
    number of results waiting so that memory does not grow with the number of items.

    If the worker processes die or cannot start, the remaining items run in this process.
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield item, fn(item)
        return
    # forkserver: forking a process that already runs threads (tokenizers, Prefect) can hang
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
    done = 0
    try:
        it = iter(items)
        pending: deque[tuple[T, Future[R]]] = deque(
            (item, pool.submit(fn, item)) for item in islice(it, 2 * workers))
        while pending:
            item, future = pending.popleft()
            result = future.result()
            for nxt in islice(it, 1):
                pending.append((nxt, pool.submit(fn, nxt)))
            done += 1
            yield item, result
    except BrokenProcessPool as e:
        log.warning("worker processes failed (%s); going on in this process", e)
        for item in items[done:]:
            yield item, fn(item)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _clean_workers(cfg: CleanConfig, todo: list[Path]) -> int:
    workers = cfg.workers or os.cpu_count() or 1
    if workers > 1 and sum(p.stat().st_size for p in todo) < POOL_MIN_BYTES:
        return 1
    return min(workers, len(todo))


class _CleanPart:
    """`clean_part` with its config bound, picklable for the worker processes."""

    def __init__(self, cfg: CleanConfig) -> None:
        self.cfg = cfg

    def __call__(self, path: Path) -> _PartResult:
        return clean_part(path, self.cfg)


# --- clean: the stage -----------------------------------------------------------------------


def _decide(index: DedupIndex, part: str, item: _Cleaned, stats: StageStats) -> bool:
    """Record the document's decision in the index; True when it is kept."""
    doc = item.doc
    if index.decision(doc.id) is not None:
        stats.drop("duplicate_id")  # the same source extracted twice: already decided
        return False
    drop = item.verdict if isinstance(item.verdict, Drop) else index.find_duplicate(item.fp)
    if drop is not None:
        index.add_dropped(doc.id, part, drop)
        stats.drop(drop.reason)
        return False
    index.add_kept(doc.id, part, item.fp)
    stats.keep()
    stats.bytes += len(doc.text.encode("utf-8"))
    return True


def _commit_part(index: DedupIndex, out: Path, path: Path, result: _PartResult,
                 stats: StageStats) -> None:
    """Decide every document of a part, write its kept documents, then commit the index."""
    index.begin_part()
    try:
        kept = [item.doc for item in result.items if _decide(index, path.name, item, stats)]
        write_part(out, kept, number=part_number(path))
        index.commit_part(PartRecord(name=path.name, size=result.size,
                                     docs=len(result.items), kept=len(kept)))
    except BaseException:
        index.rollback_part()
        raise


def clean_documents(cfg: Config, root: DataRoot, progress: bool = True) -> StageStats:
    """Filter and deduplicate the docs parts not cleaned yet, in part order."""
    stats = StageStats(stage=CLEAN_STAGE)
    out = clean_dir(root)
    out.mkdir(parents=True, exist_ok=True)
    failure_log = FailureLog(out / "failures.jsonl")
    failures: list[Failure] = []
    succeeded: list[str] = []
    check_input_free(root.docs, CLEAN_STAGE)
    with stage_lock(root.state, CLEAN_STAGE), DedupIndex(root.dedup_index, cfg.clean) as index:
        remove_orphan_temps(out)
        save_resolved(cfg, out)
        done = index.done_parts()
        todo = []
        for path in list_parts(root.docs):
            record = done.get(path.name)
            if record is None:
                todo.append(path)
                continue
            stats.skip("already_cleaned", record.docs)
            if path.stat().st_size != record.size:
                log.warning("clean: %s changed after it was cleaned; it is not cleaned again "
                            "(docs parts are append-only)", path)
        workers = _clean_workers(cfg.clean, todo)
        try:
            with Progress(stats, total=len(todo), unit="part", enabled=progress) as bar:
                for path, result in _ordered_map(_CleanPart(cfg.clean), todo, workers):
                    for failure in result.failures:
                        stats.fail(failure)
                    failures.extend(result.failures)
                    if result.error is not None:
                        stats.fail(result.error)
                        failures.append(result.error)
                        log.warning("clean: %s: %s", result.error.source, result.error.message)
                        continue
                    _commit_part(index, out, path, result, stats)
                    succeeded.append(str(path))
                    bar.update(kept=stats.kept)
        finally:
            failure_log.clear(CLEAN_STAGE, succeeded)
            failure_log.record(failures)
        stats.extra["parts_cleaned"] = len(succeeded)
        stats.extra["workers"] = workers
        stats.extra["dataset"] = index.counts()
    return stats.finish()  # the caller reports it (the CLI, a flow, or tokenize_dataset)


def cleaned_parts(root: DataRoot, cfg: Config) -> list[PartRecord]:
    """The docs parts the clean stage has finished, in part order."""
    if not root.dedup_index.is_file():
        return []
    with DedupIndex(root.dedup_index, cfg.clean) as index:
        records = list(index.done_parts().values())
    return sorted(records, key=lambda r: part_number(r.name))


def iter_clean_documents(root: DataRoot, names: Iterable[str]) -> Iterator[Document]:
    """The kept, normalised documents of the given (cleaned) docs parts, in order."""
    for name in names:
        path = part_path(clean_dir(root), part_number(name))
        if not path.is_file():
            raise EnvironmentProblem(
                f"{path} is missing although {root.dedup_index} lists {name} as cleaned; "
                "delete state/dedup.sqlite and state/clean/ to clean everything again")
        yield from read_part(path)


# --- tokenizer: train once, then always the same one --------------------------------------


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
    from pipeline.tokenizer import segment_text

    for doc in iter_clean_documents(root, names):
        if max_chars and counter["chars"] >= max_chars:
            return
        counter["docs"] += 1
        counter["chars"] += len(doc.text)
        yield from segment_text(doc.text, segment_chars)


def _train_tokenizer(cfg: Config, root: DataRoot, names: list[str]) -> Tokenizer:
    from pipeline.tokenizer import save_tokenizer, train_bpe

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
    from pipeline.tokenizer import load_tokenizer

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
    tok, info = _loaded_tokenizer(cfg, root)
    return tok, info, how


def _loaded_tokenizer(cfg: Config, root: DataRoot) -> tuple[Tokenizer, TokenizerInfo]:
    """The data root's tokenizer.json and its manifest entry."""
    from pipeline.tokenizer import eos_id

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


# --- tokenize: encode each part into a spool, then cut shards from the spools ---------------


@dataclass(slots=True)
class _Spool:
    """One docs part, encoded: per split the tokens (EOS after each document) and end offsets."""

    name: str
    docs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    chars: int = 0
    text_bytes: int = 0  # UTF-8 bytes of the documents' text


def _spool_key(info: TokenizerInfo, cfg: Config, dtype: np.dtype) -> dict[str, Any]:
    """What a spool's contents depend on; a spool made under other values is redone."""
    return {"tokenizer_sha256": info.sha256, "val_fraction": cfg.shards.val_fraction,
            "dtype": dtype.name}


def _spool_files(folder: Path, name: str, split: Split) -> tuple[Path, Path]:
    stem = Path(name).name.split(".")[0]
    return folder / f"{stem}.{split}.bin", folder / f"{stem}.{split}.idx"


def _marker(folder: Path, name: str) -> Path:
    return folder / f"{Path(name).name.split('.')[0]}.json"


def _load_spool(folder: Path, name: str, key: dict[str, Any]) -> _Spool | None:
    """A part's spool from an earlier (interrupted) run, if it is complete and still valid."""
    try:
        data = json.loads(_marker(folder, name).read_text(encoding="utf-8"))
        files = {path.name: sha256_file(path) for split in SPLITS
                 for path in _spool_files(folder, name, split)}
    except (FileNotFoundError, ValueError):
        return None
    if data.get("key") != key or data.get("sha256") != files:
        return None  # other settings, or files an OS crash left incomplete (not fsynced)
    return _Spool(name=name, docs=data["docs"], tokens=data["tokens"], chars=data["chars"],
                  text_bytes=data["text_bytes"])


def _batches(docs: Iterable[Document], max_docs: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    chars = 0
    for doc in docs:
        batch.append(doc)
        chars += len(doc.text)
        if len(batch) >= max_docs or chars >= BATCH_MAX_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


@dataclass(slots=True)
class _SpoolWriter:
    """Appends encoded documents to a part's train and val spool files."""

    spool: _Spool
    bins: dict[str, IO[bytes]]
    eos_id: int
    dtype: np.dtype
    val_fraction: float
    ends: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    sha256: dict[str, Any] = field(default_factory=lambda: {s: hashlib.sha256() for s in SPLITS})

    def write(self, batch: list[Document], ids: list[list[int]]) -> int:
        """Append one encoded batch; returns its tokens (EOS included)."""
        import numpy as np

        eos = np.array([self.eos_id], dtype=self.dtype)
        pieces: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
        spool = self.spool
        for doc, doc_ids in zip(batch, ids, strict=True):
            split = "val" if is_val(doc.id, self.val_fraction) else "train"
            pieces[split] += (np.array(doc_ids, dtype=self.dtype), eos)
            spool.tokens[split] += len(doc_ids) + 1
            spool.docs[split] += 1
            self.ends[split].append(spool.tokens[split])
            spool.chars += len(doc.text)
            spool.text_bytes += len(doc.text.encode("utf-8"))
        for split in SPLITS:
            if pieces[split]:
                data = np.concatenate(pieces[split]).tobytes()
                self.bins[split].write(data)
                self.sha256[split].update(data)
        return sum(len(x) for x in ids) + len(batch)


def _encode_part(root: DataRoot, name: str, encoder: TextEncoder, cfg: Config,
                 info: TokenizerInfo, bar: Progress) -> _Spool:
    """Encode one cleaned part into its spool files; the marker, written last, commits it.

    The encoder works on the next batch (in its own threads, without the GIL) while this
    thread reads documents and writes the batch before. Spools are scratch: written without
    fsync (a few ms per file), their marker holds checksums that a resumed run verifies.
    """
    import numpy as np

    from pipeline.tokenizer import encode_texts

    folder = spool_dir(root)
    dtype = dtype_for_vocab(info.vocab_size)
    spool = _Spool(name=name)
    with ExitStack() as stack:
        bins = {split: stack.enter_context(atomic_write(_spool_files(folder, name, split)[0],
                                                        durable=False))
                for split in SPLITS}
        writer = _SpoolWriter(spool=spool, bins=bins, eos_id=info.eos_id, dtype=dtype,
                              val_fraction=cfg.shards.val_fraction)
        pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="encode"))
        previous: tuple[list[Document], Future[list[list[int]]]] | None = None
        for batch in _batches(iter_clean_documents(root, [name]), cfg.tokenize.batch_docs):
            future = pool.submit(encode_texts, encoder, [d.text for d in batch],
                                 cfg.tokenize.segment_chars)
            if previous is not None:
                bar.update(len(previous[0]), tokens=writer.write(previous[0],
                                                                 previous[1].result()))
            previous = (batch, future)
        if previous is not None:
            bar.update(len(previous[0]), tokens=writer.write(previous[0], previous[1].result()))
    sha256 = {}
    for split in SPLITS:
        bin_path, idx_path = _spool_files(folder, name, split)
        idx = np.array(writer.ends[split], dtype=IDX_DTYPE).tobytes()
        atomic_write_bytes(idx_path, idx, durable=False)
        sha256[bin_path.name] = writer.sha256[split].hexdigest()
        sha256[idx_path.name] = hashlib.sha256(idx).hexdigest()
    marker = {"key": _spool_key(info, cfg, dtype), "docs": spool.docs, "tokens": spool.tokens,
              "chars": spool.chars, "text_bytes": spool.text_bytes, "sha256": sha256}
    with atomic_write(_marker(folder, name), "w", durable=False) as fh:
        json.dump(marker, fh)
    return spool


def _open_spool(folder: Path, name: str, split: Split, dtype: np.dtype
                ) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    bin_path, idx_path = _spool_files(folder, name, split)
    if idx_path.stat().st_size == 0:
        return np.empty(0, dtype=dtype), np.empty(0, dtype=IDX_DTYPE)
    return (np.memmap(bin_path, dtype=dtype, mode="r"),
            np.memmap(idx_path, dtype=IDX_DTYPE, mode="r"))


def _remove_unlisted_shards(folder: Path, manifest: Manifest | None) -> None:
    """Shard files a killed run wrote but never listed: the next shards reuse their names."""
    listed = {s.name for s in manifest.shards} if manifest else set()
    for path in list(folder.glob("*-[0-9]*.bin")) + list(folder.glob("*-[0-9]*.idx")):
        if path.stem.split("-")[0] in SPLITS and path.stem not in listed:
            path.unlink()


def _assemble(root: DataRoot, names: list[str], manifest: Manifest | None, cfg: Config,
              info: TokenizerInfo) -> list[ShardInfo]:
    """Cut the spools of `names`, in order, into new shards after the existing ones."""
    dtype = dtype_for_vocab(info.vocab_size)
    _remove_unlisted_shards(root.shards, manifest)
    new: list[ShardInfo] = []
    for split in SPLITS:
        with ShardWriter(root.shards, split, dtype=dtype.name, eos_id=info.eos_id,
                         shard_tokens=cfg.shards.shard_tokens,
                         first_number=manifest.next_number(split) if manifest else 0) as writer:
            for name in names:
                tokens, ends = _open_spool(spool_dir(root), name, split, dtype)
                if len(ends):
                    new.extend(writer.add_encoded(tokens, ends))
            last = writer.flush()
        if last is not None:
            new.append(last)
    return new


def _remove_spools(root: DataRoot, names: Iterable[str]) -> None:
    folder = spool_dir(root)
    for name in names:
        for split in SPLITS:
            for path in _spool_files(folder, name, split):
                path.unlink(missing_ok=True)
        _marker(folder, name).unlink(missing_ok=True)


def _remove_committed_spools(root: DataRoot, in_shards: set[str]) -> None:
    """Spools of parts the manifest already lists: a run killed between its commit and their
    removal leaves them, and no later run would look at them again (they are as large as the
    shards they became)."""
    left = {path.name.split(".")[0] for path in spool_dir(root).iterdir()}
    _remove_spools(root, [name for name in in_shards if Path(name).name.split(".")[0] in left])


def _check_split_rule(cfg: Config, manifest: Manifest | None) -> None:
    if manifest is not None and manifest.val_fraction != cfg.shards.val_fraction:
        raise ConfigError(
            f"shards.val_fraction is {cfg.shards.val_fraction} but the existing shards were "
            f"split with {manifest.val_fraction}; a document's split must never change, so "
            "keep the old value or start a new data root")


def _read_manifest_or_none(root: DataRoot) -> Manifest | None:
    return read_manifest(root.manifest) if root.manifest.is_file() else None


def _carry_clean(clean: StageStats, stats: StageStats) -> None:
    """Clean failures count in tokenize's result too (so --strict sees them)."""
    log.info("%s", clean.summary())
    stats.failed.update(clean.failed)
    stats.failures.extend(clean.failures)
    stats.extra["clean"] = {"kept": clean.kept, "dropped": dict(clean.dropped),
                            "failed": dict(clean.failed), "seconds": round(clean.seconds, 3),
                            "workers": clean.extra.get("workers", 0)}


def tokenize_dataset(cfg: Config, root: DataRoot, progress: bool = True) -> StageStats:
    """Clean new documents, train or load the tokenizer, and append their shards."""
    from pipeline.tokenizer import UnsupportedTokenizer, make_encoder, set_threads

    stats = StageStats(stage=TOKENIZE_STAGE, unit_name="tokens")
    root.shards.mkdir(parents=True, exist_ok=True)
    spool_dir(root).mkdir(parents=True, exist_ok=True)
    set_threads(cfg.tokenize.threads)  # before the first use of tokenizers, training included
    with stage_lock(root.shards, TOKENIZE_STAGE):
        manifest = _read_manifest_or_none(root)
        _check_split_rule(cfg, manifest)
        _carry_clean(clean_documents(cfg, root, progress), stats)
        for folder in (root.shards, spool_dir(root), root.tokenizer_dir):
            remove_orphan_temps(folder)
        parts = cleaned_parts(root, cfg)
        in_shards = set(manifest.parts) if manifest else set()
        _remove_committed_spools(root, in_shards)
        pending = [p for p in parts if p.name not in in_shards]
        for p in parts:
            if p.name in in_shards:
                stats.skip("already_in_shards", p.kept)
        if manifest is None and not any(p.kept for p in pending):
            log.info("tokenize: no kept documents yet; nothing to tokenize")
            return _finish(stats)
        started = time.monotonic()
        tok, info, how = prepare_tokenizer(cfg, root, manifest, [p.name for p in parts])
        stats.extra.update(tokenizer=how, tokenizer_sha256=info.sha256,
                           tokenizer_seconds=round(time.monotonic() - started, 3))
        if not pending:
            return _finish(stats)
        try:
            choice = make_encoder(tok, cfg.tokenize.encoder, cfg.tokenize.threads)
        except UnsupportedTokenizer as e:
            raise ConfigError(f"tokenize.encoder = tiktoken, but {e}") from None
        stats.extra.update(encoder=choice.encoder.name, encoder_reason=choice.reason)
        started = time.monotonic()
        _encode_pending(root, pending, choice.encoder, cfg, info, stats, progress)
        stats.extra["encode_seconds"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        new = _assemble(root, [p.name for p in pending], manifest, cfg, info)
        # before the commit: a run killed after it has nothing left to do, so would not write it
        save_resolved(cfg, root.shards, TOKENIZE_STAGE)
        manifest = _commit(root, cfg, manifest, info, new, [p.name for p in pending])
        _remove_spools(root, [p.name for p in pending])
        stats.extra.update(assemble_seconds=round(time.monotonic() - started, 3),
                           shards_written=[s.name for s in new],
                           manifest_version=manifest.version, totals=manifest.totals())
    return _finish(stats)


def prepare_encoding(cfg: Config, root: DataRoot, progress: bool = True) -> list[str]:
    """Fan-out, step 1 (under the stage lock): clean new documents and make sure the tokenizer
    exists. Returns the cleaned parts still to encode (step 2: `encode_parts`, in parallel
    over disjoint lists; step 3: `tokenize_dataset`, which finds their spools and only cuts
    the shards)."""
    with stage_lock(root.shards, TOKENIZE_STAGE):
        manifest = _read_manifest_or_none(root)
        _check_split_rule(cfg, manifest)
        clean_documents(cfg, root, progress)
        parts = cleaned_parts(root, cfg)
        in_shards = set(manifest.parts) if manifest else set()
        pending = [p for p in parts if p.name not in in_shards]
        if manifest is None and not any(p.kept for p in pending):
            return []
        prepare_tokenizer(cfg, root, manifest, [p.name for p in parts])
    return [p.name for p in pending]


def encode_parts(cfg: Config, root: DataRoot, names: list[str]) -> StageStats:
    """Fan-out, step 2: encode cleaned parts into spools (each part's spool is its own set of
    files, committed by its marker, so tasks with disjoint `names` run side by side)."""
    import numpy as np

    from pipeline.tokenizer import make_encoder, set_threads

    stats = StageStats(stage="encode", unit_name="tokens")
    set_threads(cfg.tokenize.threads)
    tok, info = _loaded_tokenizer(cfg, root)
    encoder = make_encoder(tok, cfg.tokenize.encoder, cfg.tokenize.threads).encoder
    key = _spool_key(info, cfg, np.dtype(dtype_for_vocab(info.vocab_size)))
    spool_dir(root).mkdir(parents=True, exist_ok=True)
    with Progress(stats, unit="doc", enabled=False) as bar:
        for name in names:
            spool = _load_spool(spool_dir(root), name, key)
            if spool is None:
                spool = _encode_part(root, name, encoder, cfg, info, bar)
            else:
                stats.skip("already_encoded")
            stats.keep(sum(spool.docs.values()))
            stats.units += sum(spool.tokens.values())
    return _finish(stats)


def _finish(stats: StageStats) -> StageStats:
    return stats.finish()  # the caller reports it (the CLI or a flow)


def _encode_pending(root: DataRoot, pending: list[PartRecord], encoder: TextEncoder,
                    cfg: Config, info: TokenizerInfo, stats: StageStats, progress: bool) -> None:
    import numpy as np

    key = _spool_key(info, cfg, np.dtype(dtype_for_vocab(info.vocab_size)))
    resumed = 0
    with Progress(stats, total=sum(p.kept for p in pending), unit="doc",
                  enabled=progress) as bar:
        for part in pending:
            spool = _load_spool(spool_dir(root), part.name, key)
            if spool is None:
                spool = _encode_part(root, part.name, encoder, cfg, info, bar)
            else:
                resumed += 1
                bar.update(sum(spool.docs.values()))
            stats.keep(sum(spool.docs.values()))
            stats.units += sum(spool.tokens.values())
            stats.bytes += spool.text_bytes
            stats.extra["chars"] = stats.extra.get("chars", 0) + spool.chars
            for split in SPLITS:
                stats.extra.setdefault(f"{split}_docs", 0)
                stats.extra[f"{split}_docs"] += spool.docs[split]
    stats.extra["parts"] = len(pending)
    stats.extra["parts_resumed"] = resumed


def _commit(root: DataRoot, cfg: Config, manifest: Manifest | None, info: TokenizerInfo,
            new: list[ShardInfo], names: list[str]) -> Manifest:
    """List the new shards in the manifest: from here on readers see them."""
    if manifest is None:
        manifest = Manifest(tokenizer=info, dtype=dtype_for_vocab(info.vocab_size).name,
                            val_fraction=cfg.shards.val_fraction, version=0)
    manifest.tokenizer = info
    manifest.shards = manifest.shards + new
    manifest.parts = manifest.parts + names
    manifest.config = cfg.to_dict()
    if new or manifest.version == 0:
        manifest.version += 1
    write_manifest(root.manifest, manifest)
    return manifest


# --- CLI -----------------------------------------------------------------------------------


def cli_clean(args, ctx) -> StageStats:  # noqa: ANN001 - argparse namespace and cli.Context
    return clean_documents(ctx.cfg, ctx.root, progress=ctx.progress)


def cli_tokenize(args, ctx) -> StageStats:  # noqa: ANN001 - argparse namespace and cli.Context
    return tokenize_dataset(ctx.cfg, ctx.root, progress=ctx.progress)
