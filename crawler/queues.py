"""Scheduler queue for JOBDIR: requests held in memory while the crawl runs, written to disk
when Scrapy closes the queue (a stop: Ctrl-C, SIGTERM) and read back by the next run.

Scrapy's disk queue writes every request as it is scheduled and, as a priority level runs dry
and fills again (every page, breadth first), removes and makes its folder again: on a
re-crawl that was most of the run's time. Those writes buy nothing here: a killed crawl's
queue files cannot be trusted and are dropped (crawler/job.py rebuilds the frontier from the
seeds and fetched.txt), so the queue on disk only ever matters after a clean close, which
is when this one writes it. A level holds at most MEMORY_REQUESTS in memory: beyond that, and
until it has run dry again, new requests go to a spill file behind them (appended, read back
in order), so a big site's frontier does not grow the crawl's memory (a request is 2-3 kB as
an object, 0.3 kB pickled).
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

MEMORY_REQUESTS = 1000  # per priority level; the rest wait in the level's spill file


class FifoSavedQueue:
    """One priority level of the scheduler's queue (the interface of Scrapy's disk queues)."""

    def __init__(self, crawler: Any, key: str) -> None:
        self.spider = crawler.spider
        self.path = Path(key)
        self._names: dict[Any, str | None] = {}
        self._requests: deque[Request] = deque()
        self._spill: _DiskFile | None = None  # requests behind those in memory, in order
        self._spilled = 0
        if (self.path / "info.json").is_file():  # saved by the run that was stopped
            self._load()

    @classmethod
    def from_crawler(cls, crawler: Any, key: str, *args: Any, **kwargs: Any) -> FifoSavedQueue:
        return cls(crawler, key)

    def push(self, request: Request) -> None:
        if self._spilled or len(self._requests) >= MEMORY_REQUESTS:
            self._push_spill(request)
        else:
            self._requests.append(request)

    def pop(self) -> Request | None:
        if not self._requests:
            self._refill()
        return self._requests.popleft() if self._requests else None

    def peek(self) -> Request | None:
        if not self._requests:
            self._refill()
        return self._requests[0] if self._requests else None

    def __len__(self) -> int:
        return len(self._requests) + self._spilled

    def close(self) -> None:
        if self._spilled:
            self._refill(everything=True)
        if self._requests:
            self._save()
        self._drop_spill()

    # --- on disk ------------------------------------------------------------------------

    def _spill_path(self) -> str:
        return f"{self.path}.spill"

    def _push_spill(self, request: Request) -> None:
        try:
            data = pickle.dumps(self._to_dict(request), protocol=4)
        except (pickle.PicklingError, TypeError, AttributeError, ValueError):
            self._requests.append(request)  # cannot be pickled: it waits in memory instead
            return
        if self._spill is None:
            shutil.rmtree(self._spill_path(), ignore_errors=True)  # a killed run's
            self._spill = _DiskFile(self._spill_path())
        self._spill.push(data)
        self._spilled += 1

    def _refill(self, everything: bool = False) -> None:
        """Requests from the spill file into memory: up to MEMORY_REQUESTS, or all of them."""
        while self._spill is not None and self._spilled and (
                everything or len(self._requests) < MEMORY_REQUESTS):
            data = self._spill.pop()
            if data is None:
                break
            self._spilled -= 1
            self._requests.append(request_from_dict(pickle.loads(data), spider=self.spider))
        if not self._spilled:
            self._drop_spill()

    def _drop_spill(self) -> None:
        if self._spill is not None:
            self._spill.close()  # queuelib removes an empty queue's files and folder
            self._spill = None
        self._spilled = 0
        shutil.rmtree(self._spill_path(), ignore_errors=True)

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
