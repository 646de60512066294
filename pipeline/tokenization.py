"""The tokenize stage: the cleaned documents (state/clean/, the clean stage's hand-off; what is
not cleaned yet is cleaned first) become token shards, in two named steps: encode each new
cleaned part into a spool (`pipeline.encode`), and cut the spools into shards after the
existing ones (`pipeline.assemble`), each spool as soon as it is written; then commit the
manifest.

    tokenizer/            trained on the first cleaned documents, or given (pipeline.tokenizer)
    state/tokenize/       spools of parts not yet in shards (scratch, checked on resume)
    shards/manifest.json  the commit point: shards it does not list are replaced next run

A killed run redoes at most the part it was encoding and then writes the same shards an
uninterrupted run would have. The flows fan the encode step out over tasks (`prepare`,
`encode_parts` per task on disjoint parts, then this stage, which finds every spool done).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.assemble import ShardAssembler, remove_unlisted_shards
from pipeline.atomic import remove_orphan_temps
from pipeline.chunks import val_split_warning
from pipeline.clean import clean_documents, cleaned_parts
from pipeline.config import Config, save_resolved
from pipeline.encode import (
    encode_parts,
    remove_committed_spools,
    remove_spools,
    spool_dir,
)
from pipeline.errors import ConfigError
from pipeline.layout import DataRoot
from pipeline.lock import stage_lock
from pipeline.shards import (
    MANIFEST_FORMAT,
    SPLIT_RULE,
    Manifest,
    ShardInfo,
    TokenizerInfo,
    dtype_for_vocab,
    read_manifest,
    write_manifest,
)
from pipeline.stats import StageStats

if TYPE_CHECKING:
    from pipeline.encoders import TextEncoder

log = logging.getLogger(__name__)

STAGE = "tokenize"


@dataclass(slots=True)
class Plan:
    """What a tokenize run has to do: the parts still to encode, with what."""

    manifest: Manifest | None
    pending: list[str]  # cleaned parts not yet in shards, in part order
    info: TokenizerInfo
    tok: Any = None  # the tokenizer, loaded (a tokenizers.Tokenizer)


def _check_split_rule(cfg: Config, manifest: Manifest | None) -> None:
    if manifest is None:
        return
    chunks = manifest.split_chunk_tokens or cfg.shards.split_chunk_tokens  # 0: formats 1, 2
    for key, theirs, ours in (("val_fraction", manifest.val_fraction, cfg.shards.val_fraction),
                              ("split_chunk_tokens", chunks, cfg.shards.split_chunk_tokens)):
        if theirs == ours:
            continue
        if not cfg.tokenize.rebuild:
            raise ConfigError(
                f"shards.{key} is {ours} but the existing shards were split with {theirs}; a "
                "chunk's split must never change, so keep the old value, start a new data "
                "root, or rebuild the shards (`cllm tokenize --rebuild`)")
        log.warning("tokenize: shards.%s changes from %s to %s in this rebuild: models trained "
                    "before have seen some of the new val text; train new ones from scratch",
                    key, theirs, ours)


def _read_manifest_or_none(root: DataRoot) -> Manifest | None:
    return read_manifest(root.manifest) if root.manifest.is_file() else None


def prepare(cfg: Config, root: DataRoot, stats: StageStats) -> Plan | None:
    """Under the stage lock: the parts to encode, the tokenizer trained or checked. None when
    there is nothing to tokenize yet."""
    from pipeline.encoders import set_threads
    from pipeline.tokenizer import prepare_tokenizer

    set_threads(cfg.tokenize.threads)  # before the first use of tokenizers, training included
    manifest = _read_manifest_or_none(root)
    _check_split_rule(cfg, manifest)
    for folder in (root.shards, spool_dir(root), root.tokenizer_dir):
        remove_orphan_temps(folder)
    if root.shards.is_dir():  # what a run killed after a rebuild's commit left
        remove_unlisted_shards(root.shards, manifest)
    parts = cleaned_parts(root, cfg)
    # a rebuild writes every cleaned part anew (and may find its spools from a killed try)
    in_shards = set(manifest.parts) if manifest and not cfg.tokenize.rebuild else set()
    remove_committed_spools(root, in_shards)
    pending = [p for p in parts if p.name not in in_shards]
    for p in parts:
        if p.name in in_shards:
            stats.skip("already_in_shards", p.kept)
    if manifest is None and not any(p.kept for p in pending):
        log.info("tokenize: no kept documents yet; nothing to tokenize")
        return None
    started = time.monotonic()
    tok, info, how = prepare_tokenizer(cfg, root, manifest, [p.name for p in parts])
    stats.extra.update(tokenizer=how, tokenizer_sha256=info.sha256,
                       tokenizer_seconds=round(time.monotonic() - started, 3))
    return Plan(manifest=manifest, pending=[p.name for p in pending], info=info, tok=tok)


def make_text_encoder(cfg: Config, root: DataRoot, stats: StageStats | None = None,
                      plan: Plan | None = None) -> tuple[TextEncoder, TokenizerInfo]:
    """The encoder for the data root's tokenizer (tiktoken when it reproduces it exactly);
    the tokenizer `plan` loaded, if given."""
    from pipeline.encoders import UnsupportedTokenizer, make_encoder, set_threads
    from pipeline.tokenizer import loaded_tokenizer

    set_threads(cfg.tokenize.threads)
    tok, info = (plan.tok, plan.info) if plan is not None else loaded_tokenizer(cfg, root)
    try:
        choice = make_encoder(tok, cfg.tokenize.encoder, cfg.tokenize.threads)
    except UnsupportedTokenizer as e:
        raise ConfigError(f"tokenize.encoder = tiktoken, but {e}") from None
    if stats is not None:
        stats.extra.update(encoder=choice.encoder.name, encoder_reason=choice.reason)
    return choice.encoder, info


def prepare_encoding(cfg: Config, root: DataRoot) -> list[str]:
    """The fan-out's first step: the cleaned parts still to encode (the tokenizer made);
    tasks then run `encode_parts` on disjoint lists, and the stage itself assembles."""
    with stage_lock(root.shards, STAGE):
        clean_documents(cfg, root, progress=False)
        plan = prepare(cfg, root, StageStats(stage=STAGE))
    return plan.pending if plan else []


def encode_task_parts(cfg: Config, root: DataRoot, names: list[str]) -> StageStats:
    """The fan-out's second step, one task's share: `encode_parts` on `names`."""
    stats = StageStats(stage="encode", unit_name="tokens")
    encoder, info = make_text_encoder(cfg, root)
    encode_parts(cfg, root, names, encoder, info, stats)
    return stats.finish()


def _commit(root: DataRoot, cfg: Config, manifest: Manifest | None, info: TokenizerInfo,
            new: list[ShardInfo], names: list[str]) -> Manifest:
    """List the new shards in the manifest: from here on readers see them."""
    if manifest is None:
        manifest = Manifest(tokenizer=info, dtype=dtype_for_vocab(info.vocab_size).name,
                            val_fraction=cfg.shards.val_fraction, version=0)
    rebuilt = cfg.tokenize.rebuild
    manifest.tokenizer = info
    manifest.shards = ([] if rebuilt else manifest.shards) + new
    manifest.parts = ([] if rebuilt else manifest.parts) + names
    manifest.config = cfg.to_dict()
    manifest.val_fraction = cfg.shards.val_fraction
    manifest.split_chunk_tokens = cfg.shards.split_chunk_tokens
    manifest.split_rule = SPLIT_RULE  # formats 1 and 2 split by whole document
    manifest.format_version = MANIFEST_FORMAT
    if new or manifest.version == 0:
        manifest.version += 1
    write_manifest(root.manifest, manifest)
    return manifest


def _carry_clean(clean: StageStats, stats: StageStats) -> None:
    """Clean failures count in tokenize's result too (so --strict sees them)."""
    log.info("%s", clean.summary())
    stats.failed.update(clean.failed)
    stats.failures.extend(clean.failures)
    stats.extra["clean"] = {"kept": clean.kept, "dropped": dict(clean.dropped),
                            "failed": dict(clean.failed), "seconds": round(clean.seconds, 3),
                            "workers": clean.extra.get("workers", 0)}


def _encode_and_assemble(cfg: Config, root: DataRoot, plan: Plan, encoder: TextEncoder,
                         info: TokenizerInfo, stats: StageStats, progress: bool
                         ) -> list[ShardInfo]:
    """Both steps in one pass: each spool is cut into shards as soon as it is written."""
    assembler = ShardAssembler(cfg, root, plan.manifest, info)
    try:
        encode_parts(cfg, root, plan.pending, encoder, info, stats, progress, assembler.add)
        return assembler.finish()
    except BaseException:
        assembler.abort()
        raise


def tokenize_dataset(cfg: Config, root: DataRoot, progress: bool = True) -> StageStats:
    """Clean what is not cleaned yet (the clean stage; a no-op after it ran), then encode the
    cleaned parts not yet in shards and append their shards (the tokenizer is trained on
    the first run)."""
    stats = StageStats(stage=STAGE, unit_name="tokens")
    root.shards.mkdir(parents=True, exist_ok=True)
    with stage_lock(root.shards, STAGE):
        _carry_clean(clean_documents(cfg, root, progress), stats)
        plan = prepare(cfg, root, stats)
        if plan is None or not plan.pending:
            if plan is not None and plan.manifest is not None:
                warn_about_val_split(cfg, plan.manifest, stats)
            return stats.finish()
        encoder, info = make_text_encoder(cfg, root, stats, plan)
        started = time.monotonic()
        new = _encode_and_assemble(cfg, root, plan, encoder, info, stats, progress)
        stats.extra["encode_seconds"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        # before the commit: a run killed after it has nothing left to do, so would not write it
        save_resolved(cfg, root.shards, STAGE)
        manifest = _commit(root, cfg, plan.manifest, info, new, plan.pending)
        remove_spools(root, plan.pending)
        remove_unlisted_shards(root.shards, manifest)  # what a rebuild replaced
        stats.extra.update(commit_seconds=round(time.monotonic() - started, 3),
                           shards_written=[s.name for s in new],
                           manifest_version=manifest.version, totals=manifest.totals())
        warn_about_val_split(cfg, manifest, stats)
    return stats.finish()


def warn_about_val_split(cfg: Config, manifest: Manifest, stats: StageStats | None = None
                         ) -> str:
    """Log (and note in `stats`) an empty or tiny val split and the setting to change."""
    warning = val_split_warning(manifest.totals(), manifest.val_fraction,
                                manifest.split_chunk_tokens,
                                cfg.train.batch_size * cfg.train.block_size)
    if warning:
        log.warning("tokenize: %s", warning)
        if stats is not None:
            stats.extra["val_warning"] = warning
    return warning
