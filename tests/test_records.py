"""Records round-trip through JSON and refuse what they cannot read."""

from __future__ import annotations

import pytest

from pipeline.records import (
    FORMAT_VERSION,
    Document,
    Failure,
    PageInfo,
    RecordFormatError,
    SourceRow,
)


def test_document_round_trip_keeps_every_field() -> None:
    doc = Document(
        id="ab" * 32, source="https://example.org/a.pdf", mime="application/pdf",
        text="Zürich ☃\n\npara two", title="T", pages=2, ocr_pages=[2],
        page_info=[PageInfo(number=1, chars=10, ocr=False, reason="has_text"),
                   PageInfo(number=2, chars=5, ocr=True, reason="no_text_layer", confidence=91.5)],
        lang="eng", extractor="pymupdf 1.24", stats={"chars": 20.0, "alpha_ratio": 0.8},
    )
    line = doc.to_json()
    assert "\n" not in line and f'"v":{FORMAT_VERSION}' in line
    back = Document.from_json(line)
    assert back == doc
    assert isinstance(back.page_info[1], PageInfo) and back.page_info[1].confidence == 91.5


def test_source_row_and_failure_round_trip() -> None:
    row = SourceRow(source="/x/a.txt", kind="file", status="stored", sha256="0" * 64,
                    mime="text/plain", size=3, mtime_ns=12345, http_status=None)
    assert SourceRow.from_json(row.to_json()) == row
    failure = Failure(source="/x/b.pdf", stage="extract", error="encrypted", message="password")
    assert Failure.from_json(failure.to_json()) == failure
    assert failure.key == ("extract", "/x/b.pdf", "")


def test_newer_format_and_unknown_fields_are_refused() -> None:
    data = Failure(source="s", stage="x", error="e", message="m").to_dict()
    with pytest.raises(RecordFormatError, match="newer than this code reads"):
        Failure.from_dict({**data, "v": FORMAT_VERSION + 1})
    with pytest.raises(RecordFormatError, match=r"no fields \['bogus'\]"):
        Failure.from_dict({**data, "bogus": 1})


def test_records_are_slotted() -> None:
    doc = Document(id="x", source="s", mime="text/plain", text="t")
    with pytest.raises(AttributeError):
        doc.not_a_field = 1  # type: ignore[attr-defined]
