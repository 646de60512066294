"""Scheduler queue for JOBDIR: requests held in memory while the crawl runs, written to disk
when Scrapy closes the queue (a stop: Ctrl-C, SIGTERM) and read back by the next run.

Scrapy's disk queue writes every request as it is scheduled and, as a priority level runs dry
and fills again (every page, breadth first), removes and makes its folder again: on a
re-crawl that was most of the run's time. Those writes buy nothing here: a killed crawl's
queue files cannot be trusted and are dropped (crawler/job.py rebuilds the frontier from the
seeds and fetched.txt), so the queue on disk only ever matters after a clean close, which
is when this one writes it. Memory stays bounded by the page budget: a link is queued only
with room reserved for it (crawler/budget.py), and the others wait in memory already.
"""

from __future__ import annotations

import logging
import pickle
import shutil
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from queuelib.queue import FifoDiskQueue as _DiskFile
from scrapy import Request
from scrapy.http.request import _find_method
from scrapy.utils.request import request_from_dict

log = logging.getLogger(__name__)


class FifoSavedQueue:
    """One priority level of the scheduler's queue (the interface of Scrapy's disk queues)."""

    def __init__(self, crawler: Any, key: str) -> None:
        self.spider = crawler.spider
        self.path = Path(key)
        self._names: dict[Any, str | None] = {}
        self._requests: deque[Request] = deque()
        if (self.path / "info.json").is_file():  # saved by the run that was stopped
            self._load()

    @classmethod
    def from_crawler(cls, crawler: Any, key: str, *args: Any, **kwargs: Any) -> FifoSavedQueue:
        return cls(crawler, key)

    def push(self, request: Request) -> None:
        self._requests.append(request)

    def pop(self) -> Request | None:
        return self._requests.popleft() if self._requests else None

    def peek(self) -> Request | None:
        return self._requests[0] if self._requests else None

    def __len__(self) -> int:
        return len(self._requests)

    def close(self) -> None:
        if self._requests:
            self._save()

    # --- on disk ------------------------------------------------------------------------

    def _load(self) -> None:
        saved = _DiskFile(str(self.path))
        while (data := saved.pop()) is not None:
            self._requests.append(request_from_dict(pickle.loads(data), spider=self.spider))
        saved.close()  # empty now: queuelib removes its files and folder

    def _save(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        saved = _DiskFile(str(self.path))
        lost = 0
        for request in self._requests:
            try:
                saved.push(pickle.dumps(self._to_dict(request), protocol=4))
            except (pickle.PicklingError, TypeError, AttributeError, ValueError):
                lost += 1  # something in its meta cannot be pickled: Scrapy would drop it too
        saved.close()
        if lost:
            log.warning("crawl: %d queued requests could not be saved for the next run", lost)

    def _name(self, func: Callable[..., Any] | None) -> str | None:
        # Scrapy's Request.to_dict finds the callback's name by listing every method of the
        # spider (inspect.getmembers) for each request: here each name is looked up once
        if not callable(func):
            return func
        key = getattr(func, "__func__", func)
        if key not in self._names:
            self._names[key] = _find_method(self.spider, func)
        return self._names[key]

    def _to_dict(self, request: Request) -> dict[str, Any]:
        data: dict[str, Any] = {"url": request.url, "callback": self._name(request.callback),
                                "errback": self._name(request.errback),
                                "headers": dict(request.headers)}
        for attr in request.attributes:
            data.setdefault(attr, getattr(request, attr))
        if type(request) is not Request:
            data["_class"] = f"{type(request).__module__}.{type(request).__name__}"
        return data
