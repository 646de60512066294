"""The records that cross stage boundaries, with a JSON round trip and a format version."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import orjson

# 2: PageInfo.lang and lang_score (the clean stage's per-page language); version 1 records
# read as before
FORMAT_VERSION = 2
VERSION_KEY = "v"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RecordFormatError(ValueError):
    """A JSON record this version cannot read."""


class _Record:
    """JSON round trip shared by all records: `to_dict`/`from_dict`, `to_json`/`from_json`."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        out = {VERSION_KEY: FORMAT_VERSION}
        out.update(dataclasses.asdict(self))  # type: ignore[call-overload]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        data = dict(data)
        version = data.pop(VERSION_KEY, FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise RecordFormatError(
                f"{cls.__name__} format version {version!r} is newer than this code reads "
                f"({FORMAT_VERSION}); upgrade cllm-pipeline"
            )
        unknown = data.keys() - _field_names(cls)
        if unknown:
            raise RecordFormatError(f"{cls.__name__} has no fields {sorted(unknown)}")
        nested = _nested_record_fields(cls)
        for name, item_cls in nested.items():
            if name in data and data[name] is not None:
                data[name] = [item_cls.from_dict(x) for x in data[name]]
        return cls(**data)

    @classmethod
    def from_json(cls, line: str | bytes) -> Self:
        return cls.from_dict(loads(line))


def loads(line: str | bytes) -> Any:
    """json.loads, by orjson (twice as fast on the documents a stage reads back); what orjson
    refuses and the standard module reads (NaN, integers over 64 bits) is read as before."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


@functools.cache  # from_dict runs once per record read
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


@functools.cache  # get_type_hints is slow, and from_dict runs once per record read
def _nested_record_fields(cls: type) -> dict[str, type]:
    """Fields typed list[<a record>], rebuilt from dicts on load."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            if isinstance(item, type) and issubclass(item, _Record):
                out[name] = item
    return out


@dataclass(kw_only=True, slots=True)
class PageInfo(_Record):
    """What extraction did with one page (1-based `number`)."""

    number: int
    chars: int  # characters of text kept for this page
    ocr: bool  # True when the text came from Tesseract
    reason: str  # why OCR was or was not used, e.g. "no_text_layer", "has_text"
    confidence: float | None = None  # mean Tesseract word confidence (0-100) when OCRed
    lang: str = ""  # ISO 639-1 code the clean stage identified for this page ("" if too little)
    lang_score: float | None = None  # its score (0..1): low on pages of code, tables, figures


@dataclass(kw_only=True, slots=True)
class Document(_Record):
    """One extracted document: the unit that cleaning, dedup and tokenization see."""

    id: str  # sha256 of the source bytes
    source: str  # URL or path it came from
    mime: str
    text: str
    title: str = ""
    pages: int = 0  # page count (0 for formats without pages)
    ocr_pages: list[int] = field(default_factory=list)  # 1-based pages whose text is OCR
    page_info: list[PageInfo] = field(default_factory=list)
    lang: str = ""
    extractor: str = ""  # name and version, e.g. "pymupdf 1.24.10"
    stats: dict[str, float] = field(default_factory=dict)  # chars, words, alpha_ratio, ...
    created_at: str = field(default_factory=utc_now)
    # what the format says beyond the text (a mail's subject, from, to, date) and, for a
    # document that came out of another (an archive member, an attachment), "blob": the
    # sha256 of the raw file it came out of
    meta: dict[str, str] = field(default_factory=dict)


def page_ends(page_chars: list[int], text_chars: int) -> list[float]:
    """Where each page ends in a document's text, its pages of `page_chars` characters having
    been joined by blank lines when extracted; scaled to the length of the text now (cleaning
    changes it a little): an estimate, exact at the document's ends."""
    ends = list(itertools.accumulate(chars + 2 for chars in page_chars))
    scale = text_chars / ends[-1] if ends and ends[-1] else 0.0
    return [end * scale for end in ends]


MEMBER_OF = "blob"  # Document.meta key: the raw blob an archive member or attachment is from


@dataclass(kw_only=True, slots=True)
class SourceRow(_Record):
    """One source (a path or URL) and the content it had when last fetched or read."""

    source: str  # absolute path or URL as requested
    kind: str  # "file" | "web"
    status: str  # "stored" (new content) | "unchanged" | "duplicate" | "failed" | ...
    sha256: str = ""
    mime: str = ""
    size: int = 0
    fetched_at: str = field(default_factory=utc_now)
    http_status: int | None = None
    final_url: str = ""  # after redirects
    depth: int | None = None
    referrer: str = ""
    etag: str = ""
    last_modified: str = ""
    mtime_ns: int | None = None  # local files: lets a re-run skip unchanged files unread


@dataclass(kw_only=True, slots=True)
class Failure(_Record):
    """An input that a stage could not use, and why."""

    source: str
    stage: str  # "ingest" | "crawl" | "extract" | ...
    error: str  # kind of error: "corrupt", "encrypted", "empty", "too_large", "timeout", ...
    message: str
    sha256: str = ""
    at: str = field(default_factory=utc_now)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.stage, self.source, self.sha256)
