"""One writer per stage output: a second process gets a clear error instead of racing."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class LockedError(RuntimeError):
    pass


@contextlib.contextmanager
def stage_lock(folder: Path, stage: str) -> Iterator[None]:
    """Hold `<folder>/.<stage>.lock` for the block. The kernel drops it if the process dies."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{stage}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise LockedError(
                f"{stage} is already running on {folder} (pid {holder}); wait for it or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def lock_holder(folder: Path, stage: str) -> str | None:
    """Who holds `<folder>/.<stage>.lock` now (the pid it wrote), or None when nobody does."""
    return _holder(folder / f".{stage}.lock")


def _holder(path: Path) -> str | None:
    """Tried for a shared lock, which a holder's exclusive one refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # none, or gone meanwhile: that holder has finished
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def check_input_free(folder: Path, reader: str) -> None:
    """Raise LockedError when a stage is writing `folder` now: a reader would see half of its
    output and report "nothing to do"."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(".*.lock")):
        holder = _holder(path)
        if holder is not None:
            writer = path.name[1:].removesuffix(".lock")
            raise LockedError(
                f"{reader} reads {folder}, which {writer} is writing now (pid {holder}); "
                f"run {reader} again when it has finished")
