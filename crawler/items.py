"""The item a spider hands to the raw store pipeline: one fetched page or document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pipeline.records import utc_now

if TYPE_CHECKING:
    from crawler.revisit import PageNote

Outcome = Literal["fetched", "unchanged"]  # a 200 with a body | a 304 answered from the store


@dataclass(kw_only=True, slots=True)
class FetchedPage:
    source: str  # the URL as requested (before redirects): the SourceRow key
    final_url: str  # after redirects
    http_status: int
    body: bytes = field(repr=False)
    mime: str
    ext: str
    outcome: Outcome = "fetched"
    sha256: str = ""  # of the content: known already for "unchanged", else the writer's
    etag: str = ""
    last_modified: str = ""
    depth: int = 0
    referrer: str = ""
    fetched_at: str = field(default_factory=utc_now)
    note: PageNote | None = None  # what a re-check needs, noted once the page is stored
    body_key: int | None = None  # the body is kept by the raw store's writer under this key
