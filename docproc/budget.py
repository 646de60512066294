"""A document's time limit: a base plus a budget for each page, granted as pages are counted.

A big manual is no hostile file: its limit grows with its pages (extract.timeout_s +
extract.timeout_per_page_s x pages), while a one-page content bomb still ends at the base.
The worker tells its parent of each grant (`notify`), so the parent's watchdog, which stops a
worker that hangs inside a library call, moves its deadline too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.errors import InputTimeout


@dataclass(slots=True)
class TimeBudget:
    base_s: float
    per_page_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    pages: int = 0  # pages granted so far (a container's members add theirs)
    notify: Callable[[int], None] | None = None  # told of each grant (the worker's pipe)

    def grant(self, pages: int) -> None:
        """Add `pages` pages' worth of time (a document opened and counted)."""
        if pages <= 0:
            return
        self.pages += pages
        if self.notify is not None:
            self.notify(pages)

    @property
    def deadline(self) -> float:
        return self.started + limit_s(self.base_s, self.per_page_s, self.pages)

    def check(self, source: str, where: str) -> None:
        """InputTimeout naming `where` ("page 3 of 40") when the time is up."""
        if time.monotonic() > self.deadline:
            limit = describe(self.base_s, self.per_page_s, self.pages)
            raise InputTimeout(source, f"out of time at {where} ({limit})")


@dataclass(frozen=True, slots=True)
class Granted:
    """A worker's word to its parent that its current document has `pages` more pages."""

    pages: int


def limit_s(base_s: float, per_page_s: float, pages: int) -> float:
    return base_s + per_page_s * pages


def describe(base_s: float, per_page_s: float, pages: int) -> str:
    """The limit as the keys that make it, e.g. "extract.timeout_s=300s + 40 pages x
    extract.timeout_per_page_s=2s"."""
    text = f"extract.timeout_s={base_s:g}s"
    if pages and per_page_s:
        text += f" + {pages} pages x extract.timeout_per_page_s={per_page_s:g}s"
    return text
