"""The revisit policy: which kept pages a re-run asks for again, and what the crawl remembers
of a page so that an unchanged one (a 304) costs neither a read of its stored copy nor a parse.

A kept page is *due* when it was last checked (its row's `fetched_at`) at least
`crawl.revisit_after_s` ago, or longer when the page said it stays fresh for longer
(Cache-Control max-age, or Expires), as Nutch's fetch interval and an HTTP cache do. Seeds and
sitemaps are always asked for: new pages linked from them are found on every run.

The notes (`notes.sqlite` in the job folder, kept over generations) hold, per URL, the links of
the content it was fetched with (its sha256) and its freshness. They are a cache: a note whose
sha256 is not the row's, or one lost to a kill before its commit, means the stored copy is read
and parsed as before.
"""

from __future__ import annotations

import email.utils
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

COMMIT_EVERY = 200  # notes written between commits: a kill loses at most these (a cache)
# a page claiming to stay fresh longer is still re-checked after this: a misconfigured or
# hostile server must not keep a page from ever being looked at again
MAX_FRESH_S = 30 * 86400.0
LIFETIME_HEADERS = ("Cache-Control", "Expires")  # what says how long a page stays fresh
FRESHNESS_HEADERS = (*LIFETIME_HEADERS, "Date")  # fresh_seconds' arguments, in order


@dataclass(frozen=True, slots=True)
class PageNote:
    sha256: str  # the content the links were found in
    links: tuple[str, ...]  # absolute links, before normalising (as the spider follows them)
    nofollow: bool  # the page (meta robots, X-Robots-Tag) said not to follow its links
    fresh_s: float = 0.0  # how long the page said it stays fresh; 0: it said nothing


def fresh_seconds(cache_control: str, expires: str, date: str) -> float:
    """How long a response says it stays fresh (RFC 9111: max-age, else Expires - Date);
    0 when it says nothing, or no-cache / no-store."""
    directives = [d.strip().lower() for d in cache_control.split(",") if d.strip()]
    if any(d in ("no-cache", "no-store") for d in directives):
        return 0.0
    for d in directives:
        name, _, value = d.partition("=")
        if name.strip() == "max-age":
            try:
                return min(max(float(value.strip().strip('"')), 0.0), MAX_FRESH_S)
            except ValueError:
                return 0.0
    if expires:
        until, now = _http_date(expires), _http_date(date)
        if now is None:  # no Date from the server: ours
            now = time.time()
        if until is not None:
            return min(max(until - now, 0.0), MAX_FRESH_S)
    return 0.0


def _http_date(value: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def checked_at(fetched_at: str) -> float | None:
    """Epoch seconds of a row's `fetched_at` (ISO 8601), or None if unreadable."""
    try:
        return datetime.fromisoformat(fetched_at).timestamp()
    except (TypeError, ValueError):
        return None


def is_due(fetched_at: str, fresh_s: float, revisit_after_s: float, now: float) -> bool:
    """Whether a page last checked at `fetched_at` is to be asked for again now."""
    then = checked_at(fetched_at)
    if then is None or then > now:  # unreadable, or a clock that went back: check it
        return True
    return now - then >= max(revisit_after_s, min(fresh_s, MAX_FRESH_S))


class PageNotes:
    """The notes of a job's pages, by URL. Used on the reactor thread only."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        # a cache checked against the raw store on every use: losing the last writes to a
        # crash costs a parse, so no fsync per commit
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE IF NOT EXISTS notes (url TEXT PRIMARY KEY, sha256 TEXT,"
                        " links TEXT, nofollow INTEGER, fresh_s REAL)")
        # the rows of the notes put since the last commit, written in one executemany when
        # COMMIT_EVERY are pending (a statement a page cost more than the rest of the note),
        # and the notes themselves for get(): a kill loses the same notes as an open
        # transaction would
        self._rows: list[tuple[str, str, str, int, float]] = []
        self._pending: dict[str, PageNote] = {}

    def get(self, url: str) -> PageNote | None:
        pending = self._pending.get(url)
        if pending is not None:
            return pending
        row = self.db.execute("SELECT sha256, links, nofollow, fresh_s FROM notes WHERE url = ?",
                              (url,)).fetchone()
        if row is None:
            return None
        sha, links, nofollow, fresh_s = row
        return PageNote(sha, tuple(orjson.loads(links)), bool(nofollow), fresh_s)

    def fresh_s(self) -> dict[str, tuple[str, float]]:
        """URL -> (sha256, freshness) of the pages whose content said it stays fresh."""
        self._commit()
        rows = self.db.execute("SELECT url, sha256, fresh_s FROM notes WHERE fresh_s > 0")
        return {url: (sha, fresh_s) for url, sha, fresh_s in rows}

    def put(self, url: str, note: PageNote) -> None:
        self._rows.append((url, note.sha256, orjson.dumps(note.links).decode(),
                           int(note.nofollow), note.fresh_s))
        self._pending[url] = note
        if len(self._rows) >= COMMIT_EVERY:
            self._commit()

    def _commit(self) -> None:
        if self._rows:
            with self.db:  # one transaction, the rows in the order they were put
                self.db.execute("BEGIN")
                self.db.executemany("INSERT OR REPLACE INTO notes VALUES (?, ?, ?, ?, ?)",
                                    self._rows)
            self._rows.clear()
            self._pending.clear()

    def close(self) -> None:
        self._commit()
        self.db.close()
