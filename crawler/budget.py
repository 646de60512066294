"""The page budget: `crawl.max_pages` is the most pages one crawl (the same seeds) keeps in
the dataset, over all its runs, and `max_pages_per_domain` the most of one host.

A page takes a *place* the first time it is kept (stored, unchanged or duplicate content)
and keeps it: a re-crawl requests every placed page again, conditionally, and a changed page
is new content in its old place. New pages get the room left: the budget minus the places
held when the run started, minus those taken since. A page that is gone (404, 410) or that
the config now refuses gives its place up; the room it leaves is for the next run, so what
one run may add is known when it starts.

Concurrency cannot overshoot: a link is requested only with a reservation (room minus the
new pages in flight), links met while the room is reserved wait, and one goes out each time
a reserved page turns out not to be kept (a 404, a refusal). Places are taken on the
reactor thread when a page reaches the raw store pipeline, never beyond the budget.
With a shared frontier (Redis) the requests go to whichever worker takes them, so nothing is
reserved: each worker counts its own places, and gives back what it fetched over them.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import Any, Literal

from crawler.job import PlaceLog
from crawler.urls import Reason, host_of

GO: Literal["go"] = "go"  # request it now (reserved)
WAIT: Literal["wait"] = "wait"  # the room is reserved by pages in flight: ask again later
Offer = str  # GO, WAIT or the reason it is refused (Reason.PAGE_BUDGET, Reason.DOMAIN_CAP)


class PageBudget:
    def __init__(self, places: PlaceLog, max_pages: int, per_host: int, *,
                 fetched: Iterable[str] = (), shared: bool = False) -> None:
        self.places = places
        self.max_pages = max_pages
        self.per_host = per_host
        self.shared = shared
        self.held = list(places.urls)  # placed before this run: to be re-checked
        self._unchecked = set(self.held) - set(fetched)  # held, not yet re-checked this run
        self.new: set[str] = set()  # places taken in this run
        self.released: set[str] = set()  # places given up in this run
        self._released_hosts: Counter[str] = Counter()
        self._reserved: dict[str, str] = {}  # url -> host: new pages in flight
        self._reserved_hosts: Counter[str] = Counter()
        self.waiting: deque[tuple[str, Any]] = deque()  # (url, payload) until there is room

    # --- what may be requested, and kept ------------------------------------------------

    def _used(self, *, with_reserved: bool) -> int:
        # places given up in this run still count: the room they leave is the next run's
        used = len(self.places) + len(self.released)
        return used + len(self._reserved) if with_reserved else used

    def _full(self, url: str, *, with_reserved: bool) -> str | None:
        """Why no new place for `url`, or None."""
        host = host_of(url)
        host_used = self.places.per_host[host] + self._released_hosts[host]
        if with_reserved:
            host_used += self._reserved_hosts[host]
        if self._used(with_reserved=with_reserved) >= self.max_pages:
            return Reason.PAGE_BUDGET
        if host_used >= self.per_host:
            return Reason.DOMAIN_CAP
        return None

    def refusal(self, url: str) -> str | None:
        """Why `url` may not be kept even if it were fetched now (no place left), or None."""
        if url in self.places or url in self._reserved:
            return None
        return self._full(url, with_reserved=False)

    def offer(self, url: str) -> Offer:
        """A link met: GO (reserved: request it), WAIT, or the reason it is refused."""
        if url in self.places or url in self._reserved:
            return GO
        refused = self._full(url, with_reserved=False)
        if refused is not None or self.shared:
            return refused or GO
        if self._full(url, with_reserved=True) is not None:
            return WAIT
        self._reserve(url)
        return GO

    def _reserve(self, url: str) -> None:
        host = host_of(url)
        self._reserved[url] = host
        self._reserved_hosts[host] += 1

    def _unreserve(self, url: str) -> bool:
        host = self._reserved.pop(url, None)
        if host is None:
            return False
        self._reserved_hosts[host] -= 1
        return True

    def take(self, url: str) -> str | None:
        """Give `url` its place (a page about to be stored); returns why not, or None."""
        self._unchecked.discard(url)
        if url in self.places:
            return None
        self._unreserve(url)
        refused = self._full(url, with_reserved=False)
        if refused is None:
            self.places.add(url)
            self.new.add(url)
        return refused

    def settle(self, url: str, *, release: bool = False) -> bool:
        """`url` came to an end without a page to keep (failed, refused, dropped); `release`
        gives its place up. Returns True when that freed reserved room (links may go)."""
        self._unchecked.discard(url)
        if release and url in self.places:
            self.places.release(url)
            self.released.add(url)
            self._released_hosts[host_of(url)] += 1
        return self._unreserve(url)

    def drop(self, url: str) -> bool:
        """A request the scheduler dropped as seen before: its reservation is free again."""
        return self._unreserve(url)

    @property
    def full(self) -> bool:
        """No place left for a new page in this run."""
        return self._used(with_reserved=False) >= self.max_pages

    def checked(self, url: str) -> None:
        """A held page answered from the raw store (a resumed run): re-checked."""
        self._unchecked.discard(url)

    @property
    def spent(self) -> bool:
        """No room left and every held page re-checked: the run has nothing more to do."""
        return self.full and not self._unchecked

    # --- links waiting for room ---------------------------------------------------------

    def wait(self, url: str, payload: Any) -> None:
        self.waiting.append((url, payload))

    def admit_waiting(self, *, idle: bool = False) -> tuple[list[Any], list[tuple[Any, str]]]:
        """Waiting links that may go now (reserved), and those refused for good with their
        reason. `idle`: nothing is in flight, so no reservation can still be open."""
        if idle:
            self._reserved.clear()
            self._reserved_hosts.clear()
        go: list[Any] = []
        refused: list[tuple[Any, str]] = []
        still: deque[tuple[str, Any]] = deque()
        while self.waiting:
            if self._used(with_reserved=True) >= self.max_pages > self._used(with_reserved=False):
                break  # all the room is reserved: the rest would wait again
            url, payload = self.waiting.popleft()
            verdict = self.offer(url)
            if verdict == GO:
                go.append(payload)
            elif verdict == WAIT:
                still.append((url, payload))
            else:
                refused.append((payload, verdict))
        still.extend(self.waiting)  # those not looked at
        self.waiting = still
        return go, refused

    # --- figures ------------------------------------------------------------------------

    def figures(self) -> dict[str, int]:
        return {"max_pages": self.max_pages, "held_pages": len(self.places),
                "new_pages": len(self.new), "released_pages": len(self.released)}
