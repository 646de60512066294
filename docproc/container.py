"""One raw file in, what it holds out: its own document, and for an archive or a mail the
documents of its members and attachments (nested ones too, to extract.max_nesting).

Ids: a document's id is the sha256 of its own bytes (a member's, an attachment's, an mbox
message's), so the same report in two archives, or alone and in a zip, is one document.
Each member document carries the raw blob it came out of (`meta["blob"]`), which the docs
part's id record lists: that is how the stage knows an archive is done, and all of one raw
file's documents are written in one part, so a kill never leaves half an archive behind.

Sources: `archive.zip!dir/report.pdf`, `mail.eml/report.pdf`, `box.mbox#3`,
`box.mbox#3/report.pdf`. A member that fails is a failure row of its own (its source names
it), unless nothing in the file gave a document: then the file fails as a whole, one row
whose reason lists what failed in it.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from docproc.budget import TimeBudget
from docproc.detect import Detected, Kind, detect
from docproc.document import build_document, extract_file
from docproc.options import ExtractOptions
from pipeline.errors import EmptyInput, InputError
from pipeline.rawstore import sha256_bytes, sha256_file
from pipeline.records import MEMBER_OF, Document, Failure

STAGE = "extract"
SHOWN_FAILURES = 3  # member failures quoted in the reason of a file that gave no document


class TooDeep(InputError):
    kind = "too_deep"


@dataclass(slots=True)
class Extraction:
    doc: Document | None = None  # the file's own document (a mail's body; not an archive)
    members: list[Document] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    cut: Counter[str] = field(default_factory=Counter)

    def add(self, other: Extraction) -> None:
        """Take in a member's extraction: its document and members, its failures."""
        self.members += ([other.doc] if other.doc else []) + other.members
        self.failures += other.failures

    @property
    def empty(self) -> bool:
        return self.doc is None and not self.members


@dataclass(frozen=True, slots=True)
class _Context:
    opts: ExtractOptions
    budget: TimeBudget | None
    blob: str  # the raw blob's sha256 (what member documents are from)
    depth: int = 0


def extract_source(path: Path, opts: ExtractOptions, *, source: str = "",
                   claimed_mime: str = "", sha256: str = "",
                   budget: TimeBudget | None = None) -> Extraction:
    """Everything the file at `path` holds; bad input raises an InputError naming it."""
    source = source or str(path)
    sha256 = sha256 or sha256_file(path)
    found = detect(path, source, claimed_mime)
    ctx = _Context(opts=opts, budget=budget, blob=sha256)
    return _extract(path, found, source, sha256, ctx)


def _extract(path: Path, found: Detected, source: str, sha256: str, ctx: _Context
             ) -> Extraction:
    if found.kind is Kind.ARCHIVE:
        return _finish(_archive(path, found, source, ctx), source)
    if found.kind is Kind.MAILBOX:
        return _finish(_mailbox(path, source, ctx), source)
    if found.kind is Kind.MAIL:
        return _finish(_mail(path.read_bytes(), found, source, sha256, ctx), source)
    doc = extract_file(path, ctx.opts, source=source, sha256=sha256, budget=ctx.budget,
                       found=found)
    return Extraction(doc=doc)


def _finish(got: Extraction, source: str) -> Extraction:
    """A container that gave no document fails as a whole, its reason naming what failed."""
    if not got.empty:
        return got
    if not got.failures:
        raise EmptyInput(source, "no documents in it")
    kinds = Counter(f.error for f in got.failures)
    shown = "; ".join(f"{f.source}: {f.message}" for f in got.failures[:SHOWN_FAILURES])
    more = len(got.failures) - SHOWN_FAILURES
    error = InputError(source, f"no document in it: {len(got.failures)} failed ({shown}"
                               f"{f'; {more} more' if more > 0 else ''})")
    error.kind = kinds.most_common(1)[0][0]  # what kind of failure the file as a whole is
    raise error


def _member(path: Path, source: str, ctx: _Context) -> Extraction:
    """A member or attachment, extracted as a document of its own (nested containers too);
    its failure a row of its own."""
    sha256 = sha256_file(path)
    try:
        found = detect(path, source)
        if found.kind in (Kind.ARCHIVE, Kind.MAILBOX, Kind.MAIL) and \
                ctx.depth + 1 > ctx.opts.max_nesting:
            raise TooDeep(source, f"nested deeper than extract.max_nesting="
                                  f"{ctx.opts.max_nesting}")
        inner = _Context(opts=ctx.opts, budget=ctx.budget, blob=ctx.blob, depth=ctx.depth + 1)
        got = _extract(path, found, source, sha256, inner)
    except InputError as e:
        # the reason names the member, never our scratch copy of it
        e.reason = e.reason.replace(str(path), PurePosixPath(source).name)
        return Extraction(failures=[_failure(e, sha256)])
    for doc in ([got.doc] if got.doc else []):
        doc.meta[MEMBER_OF] = ctx.blob
    return got


def _failure(e: InputError, sha256: str = "") -> Failure:
    return Failure(source=e.source, stage=STAGE, error=e.kind, message=e.reason, sha256=sha256)


def _archive(path: Path, found: Detected, source: str, ctx: _Context) -> Extraction:
    from docproc import archive

    got = Extraction()
    with tempfile.TemporaryDirectory(prefix="cllm-unpack-") as scratch:
        for member in archive.iter_members(path, found.filetype or "zip", source, ctx.opts,
                                           Path(scratch)):
            if ctx.budget is not None:
                ctx.budget.grant(1)  # each member its own time (and its pages theirs)
            if member.refused is not None:
                got.failures.append(_failure(member.refused))
                continue
            got.add(_member(member.path, f"{source}!{member.name}", ctx))
            archive.remove(member)
    return got


def _mail(data: bytes, found: Detected, source: str, sha256: str, ctx: _Context
          ) -> Extraction:
    from docproc import mail

    started = time.monotonic()
    message = mail.read_message(data, source, ctx.opts.format == "markdown")
    got = Extraction()
    try:
        got.doc = build_document(message.body, found, source=source, opts=ctx.opts,
                                 sha256=sha256)
        got.doc.stats["seconds"] = round(time.monotonic() - started, 3)  # as extract_file's
    except EmptyInput:
        pass  # a mail with attachments only: they are its documents
    if len(message.attachments) > ctx.opts.max_members:
        from docproc.archive import GuardFailure

        raise GuardFailure(source, f"{len(message.attachments)} attachments is over "
                                   f"extract.max_members={ctx.opts.max_members}",
                           "too_many_members")
    with tempfile.TemporaryDirectory(prefix="cllm-mail-") as scratch:
        for n, attachment in enumerate(message.attachments):
            if ctx.budget is not None:
                ctx.budget.grant(1)
            file = Path(scratch) / f"{n}{Path(attachment.name).suffix[:10]}"
            file.write_bytes(attachment.data)
            got.add(_member(file, f"{source}/{attachment.name}", ctx))
            file.unlink()
    if got.doc is not None and ctx.depth:
        got.doc.meta[MEMBER_OF] = ctx.blob
    return got


def _mailbox(path: Path, source: str, ctx: _Context) -> Extraction:
    from docproc import mail

    found = Detected(kind=Kind.MAIL, mime="message/rfc822", filetype=None)
    got = Extraction()
    for n, data in enumerate(mail.iter_mbox(path, source), 1):
        if n > ctx.opts.max_members:
            from docproc.archive import GuardFailure

            raise GuardFailure(source, f"over extract.max_members={ctx.opts.max_members} "
                                       "messages", "too_many_members")
        if ctx.budget is not None:
            ctx.budget.grant(1)
        where = f"{source}#{n}"
        inner = _Context(opts=ctx.opts, budget=ctx.budget, blob=ctx.blob, depth=ctx.depth)
        try:
            message = _mail(data, found, where, sha256_bytes(data), inner)
        except InputError as e:
            got.failures.append(_failure(e, sha256_bytes(data)))
            continue
        if message.empty and not message.failures:
            got.failures.append(_failure(EmptyInput(where, "no text and no attachments")))
        if message.doc is not None:
            message.doc.meta[MEMBER_OF] = ctx.blob
        got.add(message)
    return got
