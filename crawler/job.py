"""A crawl job on disk: `state/crawl/<job>/` holds job.json, Scrapy's JOBDIR, three logs and
the pages' notes.

A job is identified by its seeds (start URLs and sitemaps). Each full pass over them is a
*generation*. A generation that ended ("finished", page budget reached) makes the next run
start a new one: a fresh frontier, with conditional requests for the pages already stored
that are due (crawler/revisit.py).
A generation that was stopped (SIGINT/SIGTERM: Scrapy saved its queue) or killed (job.json
still says "running") is resumed: pages in `fetched.txt` are served from the raw store
instead of the network, so nothing stored is fetched twice.

`pages.txt` outlives generations: the pages the job keeps in the dataset, which its page
budget counts (crawler/budget.py); so does `notes.sqlite` (crawler/revisit.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from crawler.urls import host_of
from pipeline.atomic import atomic_write_json, atomic_write_text, remove_orphan_temps
from pipeline.layout import DataRoot
from pipeline.records import utc_now

JobStatus = Literal["running", "paused", "finished"]
JOB_FILE = "job.json"
SCRAPY_DIR = "scrapy"  # Scrapy's JOBDIR: its queue, seen fingerprints, spider state
FETCHED_LOG = "fetched.txt"  # URLs kept in this generation, one a line
PAGES_LOG = "pages.txt"  # URLs the job keeps in the dataset, all generations (PlaceLog)
REFUSED_LOG = "refused.jsonl"  # URLs refused in this generation, with the reason
NOTES_DB = "notes.sqlite"  # links and freshness of the pages kept, all generations (revisit.py)
FINISHED_REASONS = frozenset({"finished", "page_budget"})


def job_id(seeds: list[str]) -> str:
    """Stable name of the job for these seeds (order and duplicates do not matter)."""
    digest = hashlib.sha256("\n".join(sorted(set(seeds))).encode()).hexdigest()
    return digest[:16]


@dataclass(kw_only=True, slots=True)
class JobState:
    job: str
    start_urls: list[str]
    sitemaps: list[str] = field(default_factory=list)
    generation: int = 0
    started_at: str = ""  # when this generation started
    status: JobStatus = "running"
    reason: str = ""  # Scrapy's close reason of the last run
    runs: int = 0  # runs of this generation (1 + resumes)
    pid: int = 0  # the crawling process while status is "running"
    updated_at: str = ""


class JobDir:
    def __init__(self, root: DataRoot, job: str) -> None:
        self.path = root.crawl_jobs / job
        self.job = job

    @property
    def state_file(self) -> Path:
        return self.path / JOB_FILE

    @property
    def scrapy_dir(self) -> Path:
        return self.path / SCRAPY_DIR

    @property
    def fetched_log(self) -> Path:
        return self.path / FETCHED_LOG

    @property
    def refused_log(self) -> Path:
        return self.path / REFUSED_LOG

    @property
    def pages_log(self) -> Path:
        return self.path / PAGES_LOG

    @property
    def notes_db(self) -> Path:
        return self.path / NOTES_DB

    def load(self) -> JobState | None:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            return JobState(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            return None  # unreadable: treated as no job, a new generation starts

    def save(self, state: JobState) -> None:
        state.updated_at = utc_now()
        atomic_write_json(self.state_file, {f: getattr(state, f) for f in JobState.__slots__})

    def begin(self, start_urls: list[str], sitemaps: list[str], restart: bool = False
              ) -> tuple[JobState, bool]:
        """Open the job for a run; returns (state, resumed)."""
        self.path.mkdir(parents=True, exist_ok=True)
        remove_orphan_temps(self.path)  # a job.json save that a kill interrupted
        self._adopt_fetched()
        state = self.load()
        resumable = state is not None and state.status != "finished" and not restart
        if not resumable:
            generation = state.generation + 1 if state else 1
            self._clear()
            state = JobState(job=self.job, start_urls=start_urls, sitemaps=sitemaps,
                             generation=generation, started_at=utc_now())
        elif state.status == "running":
            # killed: Scrapy's queue files were not closed and cannot be trusted; the frontier
            # is rebuilt from the seeds, with stored pages read back from the raw store
            shutil.rmtree(self.scrapy_dir, ignore_errors=True)
        state.status = "running"
        state.runs += 1
        state.pid = os.getpid()
        self.save(state)
        return state, resumable

    def end(self, state: JobState, reason: str) -> None:
        state.reason = reason
        state.status = "finished" if reason in FINISHED_REASONS else "paused"
        state.pid = 0
        self.save(state)

    def _clear(self) -> None:
        shutil.rmtree(self.scrapy_dir, ignore_errors=True)
        for log in (self.fetched_log, self.refused_log):
            log.unlink(missing_ok=True)

    def _adopt_fetched(self) -> None:
        """A job crawled before pages.txt existed keeps the pages its last generation kept."""
        if self.pages_log.exists() or not self.fetched_log.is_file():
            return
        urls = _read_lines(self.fetched_log)
        atomic_write_text(self.pages_log, "".join(f"{u}\n" for u in dict.fromkeys(urls)))


def _read_lines(path: Path) -> list[str]:
    """The complete lines of a log (a torn last line, from a kill, is left out)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [line[:-1] for line in fh if line.endswith("\n") and len(line) > 1]


class FetchedLog:
    """URLs kept in this generation. Appended (and flushed) before a page is stored, so a
    page in the raw store from this generation is always listed here, even after a kill."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.urls: set[str] = set()
        self.per_host: Counter[str] = Counter()
        if path.is_file():
            for url in _read_lines(path):
                self._count(url)
        self._fh: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _count(self, url: str) -> bool:
        if not url or url in self.urls:
            return False
        self.urls.add(url)
        self.per_host[host_of(url)] += 1
        return True

    def add(self, url: str) -> None:
        if self._count(url):
            self._fh.write(url + "\n")
            self._fh.flush()

    def __contains__(self, url: str) -> bool:
        return url in self.urls

    def __len__(self) -> int:
        return len(self.urls)

    def close(self) -> None:
        self._fh.close()


class PlaceLog:
    """The pages a job keeps in the dataset, in the order they were first kept, across its
    generations: what its page budget counts. A URL a line; `-URL` gives a place up.

    Opened, the log is rewritten compactly with the first `max_pages` places (at most
    `per_host` a host), so a lowered budget or cap takes effect: the pages beyond it stay in
    the raw store but are no longer the crawl's to re-check. Each change is appended and
    flushed before the page is stored, like fetched.txt.
    """

    def __init__(self, path: Path, max_pages: int, per_host: int) -> None:
        self.path = path
        self.urls: dict[str, None] = {}  # ordered: the oldest places first
        self.per_host: Counter[str] = Counter()
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        for url in _replay(text):
            if len(self.urls) < max_pages and self.per_host[host_of(url)] < per_host:
                self._place(url)
        compact = "".join(f"{u}\n" for u in self.urls)
        if compact != text:  # places given up, over the budget, or a line torn by a kill
            atomic_write_text(path, compact)
        self._fh: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _place(self, url: str) -> None:
        self.urls[url] = None
        self.per_host[host_of(url)] += 1

    def _write(self, line: str) -> None:
        self._fh.write(line + "\n")
        self._fh.flush()

    def add(self, url: str) -> None:
        if url not in self.urls:
            self._write(url)
            self._place(url)

    def release(self, url: str) -> None:
        if url in self.urls:
            self._write("-" + url)
            del self.urls[url]
            self.per_host[host_of(url)] -= 1

    def __contains__(self, url: str) -> bool:
        return url in self.urls

    def __len__(self) -> int:
        return len(self.urls)

    def close(self) -> None:
        self._fh.close()


def _replay(text: str) -> dict[str, None]:
    """The places a log's complete lines leave, oldest first."""
    places: dict[str, None] = {}
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n") or len(line) < 2:
            continue  # a torn last line (a kill), or blank
        if line.startswith("-"):  # never a URL's first character: they are normalised http(s)
            places.pop(line[1:-1], None)
        else:
            places[line[:-1]] = None
    return places


def read_refused(path: Path) -> list[dict[str, object]]:
    """Rows of a refused.jsonl log (url, reason, detail, referrer, depth)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a torn last line after a kill
    return rows
