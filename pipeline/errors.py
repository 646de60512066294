"""Typed errors. Input errors name the input and are recorded per item; the others stop a stage."""

from __future__ import annotations


class InputError(Exception):
    """A bad input: recorded as a Failure for that input, the batch goes on."""

    kind = "input"

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason


class CorruptInput(InputError):
    kind = "corrupt"


class EncryptedInput(InputError):
    kind = "encrypted"


class EmptyInput(InputError):
    kind = "empty"


class TooLargeInput(InputError):
    kind = "too_large"


class UnsupportedInput(InputError):
    kind = "unsupported"


class UnreadableInput(InputError):
    """Permission denied, symlink loop, vanished file: the bytes cannot be read."""

    kind = "unreadable"


class InputTimeout(InputError):
    kind = "timeout"


class ConfigError(ValueError):
    """A bad config key or value; the message names the key and what is valid."""


class EnvironmentProblem(RuntimeError):
    """Something missing on the machine (e.g. Tesseract); the message says how to fix it."""


class DiskFull(EnvironmentProblem):
    """No space (or quota) left where a stage writes: free space, then run the stage again."""


# ENOSPC: no space left; EDQUOT: quota exceeded; EFBIG: over the file system's (or `ulimit
# -f`) largest file
DISK_FULL_ERRNOS = {28: "no space left on device", 122: "disk quota exceeded",
                    27: "file too large for the file system (or `ulimit -f`)"}
SQLITE_FULL = 13  # sqlite3.Error.sqlite_errorcode of "database or disk is full"


SQLITE_IOERR = 10  # "disk I/O error": what SQLite says when it cannot grow its -shm file
LOW_SPACE_BYTES = 1024 * 1024  # with less free, SQLite's I/O errors are taken as a full disk


def _free_bytes(folder: str) -> int | None:
    """Bytes free for us on the file system holding `folder` (or its nearest parent)."""
    import os

    while True:
        try:
            st = os.statvfs(folder)
            return st.f_bavail * st.f_frsize
        except FileNotFoundError:
            parent = os.path.dirname(folder)
            if parent == folder:
                return None
            folder = parent
        except OSError:
            return None


def _disk_full_cause(exc: BaseException, where: str) -> str | None:
    import errno
    import sqlite3

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        what = DISK_FULL_ERRNOS.get(exc.errno, exc.strerror or "disk full")
        return f"{what} (writing {exc.filename})" if exc.filename else what
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code == SQLITE_FULL or "database or disk is full" in str(exc):
        return "no space left on device (SQLite: database or disk is full)"
    if code is None or code & 0xFF != SQLITE_IOERR:
        return None
    # SQLite says only "disk I/O error" when a write fails for lack of room (growing its
    # -shm file, or a file over `ulimit -f`): take it so when that is the likely cause
    free = _free_bytes(where) if where else None
    if free is not None and free < LOW_SPACE_BYTES:
        return f"no space left on device (SQLite: {exc}, with {free // 1024} KB free)"
    limit = _file_size_limit()
    if limit is not None:
        return f"file size limit reached (SQLite: {exc}; `ulimit -f` is {limit} bytes)"
    return None


def _file_size_limit() -> int | None:
    """This process's largest file size (RLIMIT_FSIZE), or None when unlimited."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def disk_full_error(exc: BaseException, where: str = "") -> DiskFull | None:
    """A DiskFull when `exc`, or an error it arose from, means the disk is full; else None.

    `where` names the folder being written (the data root), for the message.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DiskFull):
            return current
        cause = _disk_full_cause(current, where)
        if cause is not None:
            place = f" on the device holding {where}" if where else ""
            return DiskFull(f"{cause}{place}: free some space and run the same command again; "
                            "what was written before is intact and the stage resumes from it")
        current = current.__cause__ or current.__context__
    return None
