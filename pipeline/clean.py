"""The clean stage: quality filters and dedup over the docs parts not cleaned yet, in part order.

    state/clean/part-NNNNN.jsonl.zst   the kept documents of docs/part-NNNNN, text normalised
                                       (what tokenize reads)
    state/clean/failures.jsonl         unreadable parts and records
    state/dedup.sqlite                 each document's decision, the exact and near-dup
                                       index, and the docs parts that are cleaned (the commit)

Documents are deduplicated one after another in part order, so what is kept depends only on
the parts and the config, never on timing or worker count. A killed run redoes at most the
part it was in. Filtering and fingerprinting run in worker processes, part by part.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.atomic import remove_orphan_temps
from pipeline.config import CleanConfig, Config, save_resolved
from pipeline.decontam import REASON as CONTAMINATED
from pipeline.decontam import (
    Recheck,
    decontam_dir,
    load_index,
    persist_index,
    read_recheck,
    save_recheck,
    shared_ngrams,
)
from pipeline.dedup import DedupIndex, Fingerprint, PartRecord, fingerprint
from pipeline.docstore import PART_RE, list_parts, part_path, read_part, write_part
from pipeline.errors import CorruptInput, EnvironmentProblem, InputError
from pipeline.failures import FailureLog
from pipeline.filters import KEEP, Drop, Verdict, normalize_text, quality_verdict
from pipeline.langid import REASON as LANGUAGE
from pipeline.langid import drop_reason, identify_document
from pipeline.layout import DataRoot
from pipeline.lock import check_input_free, stage_lock
from pipeline.parallel import ordered_map
from pipeline.pii import scrub
from pipeline.progress import Progress
from pipeline.records import Document, Failure
from pipeline.stats import StageStats
from pipeline.text import utf8_length

log = logging.getLogger(__name__)

CLEAN_STAGE = "clean"
# Below this much (compressed) input, starting worker processes costs more than they save.
POOL_MIN_BYTES = 2_000_000


def clean_dir(root: DataRoot) -> Path:
    return root.state / "clean"


def part_number(path: Path | str) -> int:
    m = PART_RE.match(Path(path).name)
    if m is None:
        raise ValueError(f"{path} is not a docs part name")
    return int(m.group(1))


@dataclass(slots=True)
class _Cleaned:
    """One document after the filters: its normalised form, the verdict, its fingerprint."""

    doc: Document
    verdict: Verdict
    fp: Fingerprint | None  # only for documents the filters keep
    pii: Counter[str] | None = None  # placeholders put in, per kind (clean.pii = "replace")


@dataclass(slots=True)
class _PartResult:
    size: int
    items: list[_Cleaned] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)  # unreadable records
    error: Failure | None = None  # the whole part is unreadable


def clean_part(path: Path, cfg: CleanConfig, eval_ngrams: Path | None = None) -> _PartResult:
    """Normalise, filter and fingerprint the documents of one docs part (no shared state);
    `eval_ngrams`: the saved evaluation n-gram index (clean.decontaminate)."""
    result = _PartResult(size=path.stat().st_size)
    bad: list[CorruptInput] = []
    try:
        docs = list(read_part(path, bad))
    except InputError as e:
        result.error = Failure(source=e.source, stage=CLEAN_STAGE, error=e.kind,
                               message=e.reason)
        return result
    result.failures = [Failure(source=e.source, stage=CLEAN_STAGE, error=e.kind,
                               message=e.reason) for e in bad]
    index = load_index(eval_ngrams) if eval_ngrams is not None else None
    items = [_filter_document(doc, cfg, index) for doc in docs]
    # identified in one loop over the part: the model's tables (about 70 MB) stay in the CPU
    # caches from one document to the next (one at a time between the other steps: 0.6x)
    for item in items:
        if not isinstance(item.verdict, Drop):
            item.verdict = _language_verdict(item.doc, cfg)
    for item in items:
        if isinstance(item.verdict, Drop):
            item.doc.text = ""  # not needed any more: spare sending it back from the worker
        else:
            item.fp = fingerprint(item.doc.text, cfg)
    result.items = items
    return result


def _filter_document(doc: Document, cfg: CleanConfig, eval_ngrams: np.ndarray | None
                     ) -> _Cleaned:
    """Normalise, filter and scrub one document, in this order: decontamination before PII
    scrubbing (which would change words the evaluation text has); language identification and
    the fingerprint come after scrubbing (copies that differ in it are duplicates)."""
    doc.text = normalize_text(doc.text)
    verdict = quality_verdict(doc.text, cfg)
    if eval_ngrams is not None and not isinstance(verdict, Drop):
        shared = shared_ngrams(doc.text, eval_ngrams, cfg.decontaminate_n)
        verdict = Drop(CONTAMINATED, shared) if shared else verdict
    pii = None
    if cfg.pii == "replace" and not isinstance(verdict, Drop):
        doc.text, pii = scrub(doc.text)
    return _Cleaned(doc=doc, verdict=verdict, fp=None, pii=pii)


def _language_verdict(doc: Document, cfg: CleanConfig) -> Verdict:
    """Identify the document's language (and its pages') into `lang` and
    `stats["lang_score"]`, always; Drop it if clean.languages lists others."""
    code, score = identify_document(doc)
    doc.stats["lang_score"] = round(score, 4)
    why = drop_reason(code, score, cfg.languages, cfg.min_language_score)
    return Drop(LANGUAGE, why) if why else KEEP


def _eval_index(cfg: CleanConfig, root: DataRoot, index: DedupIndex, stats: StageStats
                ) -> Path | None:
    """The saved evaluation n-gram index (None without clean.decontaminate); when the
    evaluation files changed, the documents cleaned before are checked against them too."""
    if not cfg.decontaminate:
        return None
    folder = decontam_dir(root.state)
    path, state = persist_index(folder, cfg.decontaminate, cfg.decontaminate_n)
    ngrams = load_index(path)
    stats.extra["decontaminate_ngrams"] = int(ngrams.size)
    last = read_recheck(folder)
    if last is not None and last.get("eval") == state:
        return path  # the documents cleaned so far were checked against these files
    # a report even when nothing was cleaned before: it says against what the corpus is clean
    recheck = Recheck(eval=state)
    for name in sorted(index.done_parts(), key=part_number):
        for doc in iter_clean_documents(root, [name]):
            recheck.add(doc.id, doc.source, name,
                        shared_ngrams(doc.text, ngrams, cfg.decontaminate_n))
    save_recheck(folder, recheck)
    if recheck.checked:
        stats.extra["decontaminate_recheck"] = recheck.summary()
    if recheck.contaminated:
        log.warning("clean: %d of the %d documents cleaned before share %d-grams with the "
                    "evaluation text; they stay in state/clean/ and the shards until "
                    "`cllm tokenize --rebuild` leaves them out (%s)",
                    len(recheck.contaminated), recheck.checked, cfg.decontaminate_n,
                    folder / "recheck.json")
    return path


def _clean_workers(cfg: CleanConfig, todo: list[Path]) -> int:
    workers = cfg.workers or os.cpu_count() or 1
    if workers > 1 and sum(p.stat().st_size for p in todo) < POOL_MIN_BYTES:
        return 1
    return min(workers, len(todo))


class _SignPart:
    """The (id, MinHash signature) of each kept document of a cleaned part, picklable."""

    def __init__(self, cfg: CleanConfig, root: DataRoot) -> None:
        self.cfg, self.root = cfg, root

    def __call__(self, name: str) -> list[tuple[str, bytes]]:
        return [(doc.id, fingerprint(doc.text, self.cfg).sig)
                for doc in iter_clean_documents(self.root, [name])]


def _resign(index: DedupIndex, cfg: CleanConfig, root: DataRoot, stats: StageStats) -> None:
    """Sign the kept documents again when the index's signatures were made with other settings
    (clean.shingle_words, clean.minhash_perm, or an older version's defaults): the cleaned
    parts hold the kept text, so no document is cleaned again and no decision changes."""
    names = sorted(index.done_parts(), key=part_number)
    paths = [part_path(clean_dir(root), part_number(name)) for name in names]
    workers = _clean_workers(cfg, [p for p in paths if p.is_file()])  # a missing one: below
    signed = (pair for _, pairs in ordered_map(_SignPart(cfg, root), names, workers)
              for pair in pairs)
    stats.extra["resigned"] = index.resign(signed)


class _CleanPart:
    """`clean_part` with its config bound, picklable for the worker processes."""

    def __init__(self, cfg: CleanConfig, eval_ngrams: Path | None) -> None:
        self.cfg, self.eval_ngrams = cfg, eval_ngrams

    def __call__(self, path: Path) -> _PartResult:
        return clean_part(path, self.cfg, self.eval_ngrams)


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
    stats.bytes += utf8_length(doc.text)
    return True


def _count_pii(kept: list[_Cleaned], stats: StageStats) -> None:
    """Placeholders put into the kept documents, per kind: stats.extra["pii_replaced"]."""
    counts = Counter(stats.extra.get("pii_replaced", {}))
    for item in kept:
        counts.update(item.pii or {})
    if counts:
        stats.extra["pii_replaced"] = dict(sorted(counts.items()))


def _commit_part(index: DedupIndex, out: Path, path: Path, result: _PartResult,
                 stats: StageStats) -> None:
    """Decide every document of a part, write its kept documents, then commit the index."""
    index.begin_part()
    try:
        kept_items = [item for item in result.items if _decide(index, path.name, item, stats)]
        kept = [item.doc for item in kept_items]
        _count_pii(kept_items, stats)
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
        if index.stale:
            _resign(index, cfg.clean, root, stats)
        eval_ngrams = _eval_index(cfg.clean, root, index, stats)
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
                for path, result in ordered_map(_CleanPart(cfg.clean, eval_ngrams), todo,
                                                workers):
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
