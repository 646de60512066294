"""What one crawl run is, as data: its seeds (which name its job), the task the parent hands
the crawl process, and the messages that come back.

Both sides import this module, and it imports neither (nor Scrapy): the parent
(crawler/run.py) never loads Scrapy, the child (crawler/child.py) starts no crawl process
(only the raw store's writer, crawler/writer.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from crawler.job import job_id
from crawler.urls import Normalizer
from pipeline.config import Config, CrawlConfig
from pipeline.errors import ConfigError, DiskFull, EnvironmentProblem
from pipeline.lock import LockedError

STAGE = "crawl"
# errors the child reports by name and the parent raises again as themselves (anything else
# is a "crawl process failed" RuntimeError carrying the child's traceback)
RAISED_IN_PARENT: dict[str, type[Exception]] = {
    "LockedError": LockedError, "ConfigError": ConfigError,
    "EnvironmentProblem": EnvironmentProblem, "DiskFull": DiskFull,
}
# The child's messages on its pipe: ("progress", StageStats dict without its failures),
# ("done", StageStats dict), ("error", name, text).
PROGRESS, DONE, ERROR = "progress", "done", "error"


@dataclass(frozen=True, slots=True)
class Seeds:
    start_urls: list[str]  # normalised, deduplicated, in the order given
    sitemaps: list[str]
    invalid: list[str]  # given URLs that are not http(s) URLs

    @property
    def job(self) -> str:
        return job_id(self.start_urls + [f"sitemap:{u}" for u in self.sitemaps])


def make_seeds(urls: Sequence[str], cfg: CrawlConfig) -> Seeds:
    normalize = Normalizer.from_config(cfg)
    start: list[str] = []
    sitemaps: list[str] = []
    invalid: list[str] = []
    for given, out in [(u, start) for u in urls] + [(u, sitemaps) for u in cfg.sitemaps]:
        url = normalize(given)
        if url is None:
            invalid.append(given)
        elif url not in out:
            out.append(url)
    return Seeds(start, sitemaps, invalid)


@dataclass(frozen=True, slots=True)
class CrawlTask:
    """Everything the child needs (pickled across the spawn)."""

    cfg: Config
    root: str
    start_urls: list[str]
    sitemaps: list[str]
    restart: bool = False
    log_level: int = logging.WARNING
    parent_pid: int = 0

    @property
    def seeds(self) -> Seeds:
        return Seeds(self.start_urls, self.sitemaps, [])
