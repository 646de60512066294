"""Atomic writes: a temp file in the same folder, fsync, rename. Readers never see half a file."""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"
TEMP_PREFIX = "."


def _default_file_mode() -> int:
    # outputs get the usual mode the umask gives (os.open applies the umask again: the same)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _default_file_mode()


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by its name (a file written with durable=False, later)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_TEMP_NUMBERS = itertools.count()


def _temp_file(path: Path) -> tuple[int, Path]:
    """A new temp file beside `path`, ".<name>.<pid>.<n>.tmp", with the mode the umask gives
    (FILE_MODE). One open(2) where mkstemp's fchmod after it made two calls; the folder is
    made only when the file cannot be created: most writes go to a folder that exists."""
    prefix, folder = f"{TEMP_PREFIX}{path.name}.{os.getpid()}.", path.parent
    made_folder = False
    while True:
        name = f"{prefix}{next(_TEMP_NUMBERS)}{TEMP_SUFFIX}"
        try:
            fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         FILE_MODE)
        except FileExistsError:  # left by a writer of the same pid, before a reboot
            continue
        except (FileNotFoundError, NotADirectoryError):
            if made_folder:
                raise
            folder.mkdir(parents=True, exist_ok=True)  # a file in its place: its error names it
            made_folder = True
            continue
        return fd, folder / name


@contextlib.contextmanager
def atomic_write(
    path: Path | str, mode: str = "wb", encoding: str | None = None, durable: bool = True,
    sync_folder: bool = True,
) -> Iterator[IO[Any]]:
    """Yield a file to write; on success it replaces `path` in one rename, on error it vanishes.

    durable=False skips the fsyncs: still atomic for readers and against a killed process,
    but an OS crash may lose the file; for scratch files the caller can verify or redo.
    sync_folder=False leaves the folder's fsync to the caller, who writes many files into one
    folder and calls `fsync_path` once after the last: each file is on disk before its rename,
    and the renames are once the folder is synced.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    fd, tmp = _temp_file(path)
    try:
        if mode == "w":
            fh: IO[Any] = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="")
        else:
            fh = os.fdopen(fd, "wb")
        with fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable and sync_folder:
        fsync_path(path.parent)


def write_beside(path: Path, content: bytes | Callable[[IO[bytes]], object]) -> Path:
    """A temp file beside `path` holding `content` (bytes, or what a function writes to the
    file), closed, neither fsynced nor renamed: for a caller that makes many such files
    durable at once (`sync_files`), then renames each into place, then syncs their folders.
    Gone again if the write fails. Bytes go in with write(2) alone, no file object (whose
    opening is an fstat more): each call is a wait for the GIL in a thread beside a busy one."""
    fd, tmp = _temp_file(path)
    try:
        if isinstance(content, bytes):
            try:
                _write_all(fd, content)
            finally:
                os.close(fd)
        else:
            with os.fdopen(fd, "wb") as fh:
                content(fh)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2): every write to one file system on disk, in one call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int]
    return call


_SYNCFS = _syncfs()


def sync_files(paths: Iterable[Path], device_of: Callable[[Path], int] | None = None) -> None:
    """Make the files or folders `paths` durable, as an fsync of each would: one syncfs of
    each file system they are on where Linux has it (many fsyncs in a row each wait for a
    journal commit of their own; a syncfs waits for one), else an fsync each. `device_of`:
    the st_dev of a path, for a caller that knows it without a stat of each."""
    paths = list(paths)
    if _SYNCFS is None:
        for path in paths:
            fsync_path(path)
        return
    device_of = device_of or (lambda path: os.stat(path).st_dev)
    folders: dict[int, Path] = {}
    for path in paths:
        folders.setdefault(device_of(path), path)
    for path in folders.values():
        fd = os.open(path, os.O_RDONLY)
        try:
            if _SYNCFS(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), str(path))
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes, durable: bool = True,
                       sync_folder: bool = True) -> None:
    with atomic_write(path, "wb", durable=durable, sync_folder=sync_folder) as fh:
        fh.write(data)


def atomic_write_text(path: Path | str, text: str, sync_folder: bool = True) -> None:
    """`text` as UTF-8, newlines as they are (encoded whole: a binary file has no text layer
    to go through)."""
    atomic_write_bytes(path, text.encode("utf-8"), sync_folder=sync_folder)


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def is_temp_name(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def _writer_alive(temp_name: str) -> bool:
    # Temp names carry the writer's pid (".<name>.<pid>.<random>.tmp"), so a resuming stage
    # removes only what dead writers left and never a live writer's file.
    parts = temp_name[len(TEMP_PREFIX) : -len(TEMP_SUFFIX)].split(".")
    pid = next((int(p) for p in reversed(parts[:-1]) if p.isdigit()), None)
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphan_temps(folder: Path | str, recursive: bool = False) -> int:
    """Delete temp files that killed writers left behind; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for p in _temp_names(folder, recursive):
        if p.is_file() and not _writer_alive(p.name):
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def _temp_names(folder: Path, recursive: bool) -> Iterator[Path]:
    """The paths in `folder` with temp names, by their names alone (os.walk: a raw store of
    20,000 blobs was a stat of each through Path.rglob, a fifth of a crawl's re-run)."""
    for parent, _, files in os.walk(folder):
        for name in files:
            if is_temp_name(name):
                yield Path(parent, name)
        if not recursive:
            return
