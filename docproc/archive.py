"""ZIP and TAR (plain, .gz, .bz2, .xz) archives: each member unpacked to a scratch file, under
guards that are each a counted failure reason.

Of the whole archive: more than extract.max_members members (`too_many_members`), more than
extract.max_unpacked_mb in all (`too_large`), a compressed tar whose stream unpacks to more
than extract.max_compression_ratio times its size (`compression_ratio`). Of one member (the
others are still read): a ZIP member packed tighter than that (`compression_ratio`), an
absolute or `..` name (`unsafe_path`), a link (`link`) or device, FIFO (`device`) in a tar,
an encrypted ZIP member (`encrypted`). Names are only ever used in the members' source
names (`archive!member`): a member is written to a scratch file named by its number, never
to a path it names.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from docproc.options import ExtractOptions
from pipeline.errors import CorruptInput, EncryptedInput, InputError, TooLargeInput

MB = 1024 * 1024
RATIO_MIN_BYTES = 1 * MB  # smaller members are never called bombs: tiny files pack oddly
COPY_CHUNK = 1 << 20


class GuardFailure(InputError):
    """An archive guard refused a member or the archive; `kind` names the guard."""

    def __init__(self, source: str, reason: str, kind: str) -> None:
        super().__init__(source, reason)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Member:
    name: str  # as the archive names it
    path: Path | None = None  # the unpacked bytes (None when refused)
    refused: InputError | None = None  # the guard or damage that refused it


@dataclass(slots=True)
class _Tally:
    """Bytes unpacked so far from one archive, against extract.max_unpacked_mb."""

    source: str
    limit: int
    unpacked: int = 0

    def take(self, size: int) -> None:
        self.unpacked += size
        if self.unpacked > self.limit:
            raise TooLargeInput(self.source, f"members unpack to over extract.max_unpacked_mb="
                                             f"{self.limit // MB} (archive bomb?)")


def unsafe_name(name: str) -> str:
    """Why a member name is unsafe to unpack ("" when it is not): absolute, or climbing out."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "a path with '..'"
    return ""


def _copy(src: IO[bytes], dest: Path, tally: _Tally, declared: int) -> None:
    """Copy a member's bytes, counting them; never more than it declared (zip/tar check the
    rest, but a lying size must not let more through)."""
    written = 0
    with open(dest, "wb") as out:
        while chunk := src.read(COPY_CHUNK):
            written += len(chunk)
            if written > declared:
                raise CorruptInput(tally.source, "a member holds more bytes than it declares")
            tally.take(len(chunk))
            out.write(chunk)


def _check_count(source: str, count: int, opts: ExtractOptions) -> None:
    if count > opts.max_members:
        raise GuardFailure(source, f"{count} members is over extract.max_members="
                                   f"{opts.max_members}", "too_many_members")


def _zip_refusal(info: zipfile.ZipInfo, where: str, opts: ExtractOptions) -> InputError | None:
    why = unsafe_name(info.filename)
    if why:
        return GuardFailure(where, f"member name is {why}", "unsafe_path")
    if info.flag_bits & 0x1:
        return EncryptedInput(where, "encrypted ZIP member: a password is needed to read it")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > RATIO_MIN_BYTES and ratio > opts.max_compression_ratio:
        return GuardFailure(where, f"unpacks to {info.file_size / MB:.0f} MB from "
                                   f"{info.compress_size / MB:.2f} MB ({ratio:.0f}:1 is over "
                                   f"extract.max_compression_ratio="
                                   f"{opts.max_compression_ratio}; zip bomb?)",
                            "compression_ratio")
    return None


def iter_zip(path: Path, source: str, opts: ExtractOptions, scratch: Path) -> Iterator[Member]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise CorruptInput(source, f"damaged or truncated ZIP: {e}") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        _check_count(source, len(infos), opts)
        tally = _Tally(source, opts.max_unpacked_mb * MB)
        declared = sum(i.file_size for i in infos)
        if declared > tally.limit:
            raise TooLargeInput(source, f"members declare {declared / MB:.0f} MB, over "
                                        f"extract.max_unpacked_mb={opts.max_unpacked_mb}")
        for number, info in enumerate(infos):
            where = f"{source}!{info.filename}"
            refused = _zip_refusal(info, where, opts)
            if refused is not None:
                yield Member(info.filename, refused=refused)
                continue
            dest = scratch / f"{number}{_suffix(info.filename)}"
            try:
                with zf.open(info) as src:
                    _copy(src, dest, tally, info.file_size)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
                yield Member(info.filename, refused=CorruptInput(where, f"damaged member: {e}"))
                continue
            yield Member(info.filename, path=dest)


def _tar_refusal(info: tarfile.TarInfo, where: str) -> InputError | None:
    why = unsafe_name(info.name)
    if why:
        return GuardFailure(where, f"member name is {why}", "unsafe_path")
    if info.issym() or info.islnk():
        return GuardFailure(where, f"a {'symbolic' if info.issym() else 'hard'} link (to "
                                   f"{info.linkname!r}) is not unpacked", "link")
    if info.isdev() or info.isfifo():
        return GuardFailure(where, "a device or FIFO is not unpacked", "device")
    return None


def iter_tar(path: Path, source: str, opts: ExtractOptions, scratch: Path) -> Iterator[Member]:
    """Members in stream order ("r|*": one pass, so a compressed tar is read once)."""
    packed = path.stat().st_size
    tally = _Tally(source, opts.max_unpacked_mb * MB)
    try:
        with tarfile.open(path, "r|*") as tf:
            count = 0
            for info in tf:
                count += 1
                _check_count(source, count, opts)
                if info.isdir():
                    continue
                yield _tar_member(tf, info, source, opts, scratch, tally, packed, count)
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise CorruptInput(source, f"damaged or truncated tar: {e}") from None


def _tar_member(tf: tarfile.TarFile, info: tarfile.TarInfo, source: str, opts: ExtractOptions,
                scratch: Path, tally: _Tally, packed: int, number: int) -> Member:
    where = f"{source}!{info.name}"
    refused = _tar_refusal(info, where)
    if refused is not None:
        return Member(info.name, refused=refused)
    if tally.unpacked + info.size > tally.limit:
        tally.take(info.size)  # raises: the archive is over its limit
    ratio = (tally.unpacked + info.size) / max(packed, 1)
    if info.size > RATIO_MIN_BYTES and ratio > opts.max_compression_ratio:
        raise GuardFailure(source, f"unpacks to over {ratio:.0f} times its size (over "
                                   f"extract.max_compression_ratio="
                                   f"{opts.max_compression_ratio}; a compression bomb?)",
                           "compression_ratio")
    dest = scratch / f"{number}{_suffix(info.name)}"
    src = tf.extractfile(info)
    if src is None:
        return Member(info.name, refused=CorruptInput(where, "not a regular file"))
    with src:
        _copy(src, dest, tally, info.size)
    return Member(info.name, path=dest)


def _suffix(name: str) -> str:
    """The member's file name suffix (markdown is told from text by it), kept short."""
    suffix = PurePosixPath(name.replace("\\", "/")).suffix
    return suffix if suffix.isascii() and len(suffix) <= 10 else ""


def iter_members(path: Path, filetype: str, source: str, opts: ExtractOptions,
                 scratch: Path) -> Iterator[Member]:
    """The members of a ZIP (`filetype` "zip") or tar archive, each unpacked into `scratch`."""
    if filetype == "zip":
        return iter_zip(path, source, opts, scratch)
    return iter_tar(path, source, opts, scratch)


def remove(member: Member) -> None:
    """Free a member's scratch file once it is extracted."""
    if member.path is not None:
        if member.path.is_dir():
            shutil.rmtree(member.path, ignore_errors=True)
        else:
            member.path.unlink(missing_ok=True)
