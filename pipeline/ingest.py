"""Local ingest: walk files and folders into the raw store, one SourceRow per path.

Idempotent: a file whose size and mtime match its row is skipped unread; a file whose content
is already stored is recorded without storing it again. Static web assets (a documentation
folder's scripts, style sheets, fonts, data files) are skipped and counted, not stored: they
are no bad input, but no document either, unless `ingest.include` names them.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config, IngestConfig, save_resolved
from pipeline.errors import EmptyInput, InputError, TooLargeInput, UnreadableInput, UnsupportedInput
from pipeline.failures import FailureLog
from pipeline.layout import DataRoot
from pipeline.lock import stage_lock
from pipeline.progress import Progress
from pipeline.rawstore import RawStore, sha256_file
from pipeline.records import Failure, SourceRow
from pipeline.sniff import UNSUPPORTED_NAMES, sniff_head, static_asset
from pipeline.stats import StageStats

log = logging.getLogger(__name__)

STAGE = "ingest"
DONE_STATUSES = frozenset({"stored", "unchanged", "duplicate"})
STATIC_ASSET = "static_asset"  # the skip reason counted for assets


@dataclass(frozen=True, slots=True)
class _Found:
    """A file found by the walk, or the error that stopped us reading a path."""

    path: str
    error: InputError | None = None


def _is_excluded(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, pat) for pat in patterns)


def _stat_error(path: str, err: OSError) -> InputError:
    if err.errno == errno.ELOOP:
        return UnreadableInput(path, "symlink loop (too many levels of symbolic links)")
    if err.errno == errno.ENOENT:
        return UnreadableInput(path, "not found (or a broken symlink)")
    if err.errno == errno.EACCES:
        return UnreadableInput(path, "permission denied")
    return UnreadableInput(path, f"cannot stat: {err.strerror or err}")


def walk_inputs(paths: Sequence[Path | str], cfg: IngestConfig) -> Iterator[_Found]:
    """Yield every file under `paths` in sorted order; loops and unreadable paths as errors."""
    for top in paths:
        top_str = os.path.abspath(top)
        try:
            st = os.stat(top_str) if cfg.follow_symlinks else os.lstat(top_str)
        except OSError as e:
            yield _Found(top_str, _stat_error(top_str, e))
            continue
        if os.path.isdir(top_str):
            yield from _walk_dir(top_str, cfg, ancestors={(st.st_dev, st.st_ino): top_str},
                                 seen=set())
        else:
            yield _Found(top_str)


def _walk_dir(folder: str, cfg: IngestConfig, ancestors: dict[tuple[int, int], str],
              seen: set[tuple[int, int]]) -> Iterator[_Found]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        yield _Found(folder, _stat_error(folder, e))
        return
    for entry in entries:
        if _is_excluded(entry.name, cfg.exclude):
            continue
        if entry.is_symlink() and not cfg.follow_symlinks:
            continue
        try:
            st = entry.stat(follow_symlinks=True)
        except OSError as e:
            yield _Found(entry.path, _stat_error(entry.path, e))
            continue
        if entry.is_dir(follow_symlinks=True):
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                yield _Found(entry.path, UnreadableInput(
                    entry.path, f"symlink loop: leads back to {ancestors[key]}"))
                continue
            if key in seen:  # the same folder reached twice without a loop: walk it once
                continue
            seen.add(key)
            yield from _walk_dir(entry.path, cfg, {**ancestors, key: entry.path}, seen)
        else:  # files, and FIFOs, devices, sockets, which _ingest_file refuses unread
            yield _Found(entry.path)


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _stored_for(store: RawStore, sha: str, source: str) -> bool:
    """Whether the blob was stored for `source` itself, by a run that stopped (killed, disk
    full) before writing its row: the resumed run's row says "stored", as one run's would."""
    blob = store.get_blob(sha)
    return blob is not None and blob.source == source


def _ingest_file(path: str, store: RawStore, cfg: IngestConfig, stats: StageStats) -> None:
    try:
        st = os.stat(path)
    except OSError as e:
        raise _stat_error(path, e) from None
    if not stat.S_ISREG(st.st_mode):
        # never opened: a FIFO blocks a reader forever, /dev/zero never ends
        raise UnsupportedInput(path, f"not a regular file but a {_file_kind(st.st_mode)}")
    previous = store.get_source(path)
    if (previous is not None and previous.status in DONE_STATUSES
            and previous.size == st.st_size and previous.mtime_ns == st.st_mtime_ns):
        stats.skip("unchanged")
        return
    try:
        kind, head = sniff_head(Path(path))  # the head only: a huge or empty asset is an asset
        name = os.path.basename(path)
        asset = None if _is_excluded(name, cfg.include) else static_asset(name, kind, head)
        if asset is not None:
            stats.skip(STATIC_ASSET)
            log.debug("ingest: %s skipped: a static web asset (%s); ingest.include lets it in",
                      path, asset)
            return
        if st.st_size == 0:
            raise EmptyInput(path, "empty file (0 bytes)")
        if st.st_size > cfg.max_bytes:
            raise TooLargeInput(path, f"{st.st_size} bytes is over "
                                      f"ingest.max_bytes={cfg.max_bytes}")
        if not kind.supported:
            what = UNSUPPORTED_NAMES.get(kind.mime, "no document format we read")
            raise UnsupportedInput(path, f"unsupported file type by its content ({what})")
        sha = sha256_file(Path(path))
        new = store.put_file(Path(path), sha256=sha, size=st.st_size, mime=kind.mime,
                             ext=kind.ext, source=path)
    except PermissionError:
        raise UnreadableInput(path, "permission denied") from None
    except FileNotFoundError:
        raise UnreadableInput(path, "vanished while being read") from None
    except IsADirectoryError:
        raise UnreadableInput(path, "is a directory") from None
    if new or (previous is None and _stored_for(store, sha, path)):
        status = "stored"
        stats.keep()
        stats.bytes += st.st_size
    elif previous is not None and previous.sha256 == sha:
        status = "unchanged"
        stats.skip("unchanged")
    else:
        status = "duplicate"
        stats.skip("duplicate_content")
    store.upsert_source(SourceRow(source=path, kind="file", status=status, sha256=sha,
                                  mime=kind.mime, size=st.st_size, mtime_ns=st.st_mtime_ns))


def ingest_paths(paths: Sequence[Path | str], cfg: Config, root: DataRoot,
                 progress: bool = True) -> StageStats:
    """Store every supported file under `paths` in the raw store; failures are recorded."""
    stats = StageStats(stage=STAGE)
    root.raw.mkdir(parents=True, exist_ok=True)
    failure_log = FailureLog(root.raw_failures)
    succeeded: list[str] = []
    failures: list[Failure] = []  # all of them; stats keeps only the first MAX_FAILURES_KEPT
    with stage_lock(root.raw, STAGE), RawStore(root) as store:
        store.remove_orphan_temps()
        save_resolved(cfg, root.raw, STAGE)
        try:
            with Progress(stats, unit="file", enabled=progress) as bar:
                for found in walk_inputs(paths, cfg.ingest):
                    try:
                        if found.error is not None:
                            raise found.error
                        _ingest_file(found.path, store, cfg.ingest, stats)
                        succeeded.append(found.path)
                    except InputError as e:
                        failure = Failure(source=e.source, stage=STAGE, error=e.kind,
                                          message=e.reason)
                        stats.fail(failure)
                        failures.append(failure)
                        log.warning("ingest: %s", e)
                    bar.update(stored=stats.kept)
        finally:
            failure_log.clear(STAGE, succeeded)
            failure_log.record(failures)
    stats.finish()
    if stats.kept == 0 and stats.n_failed == 0:
        log.info("ingest: nothing new to store (%d files already in the raw store)", stats.seen)
    return stats
