"""Scheduler disk queue for JOBDIR: Scrapy's pickled FIFO queue, with cheaper serialisation.

Scrapy's `Request.to_dict` finds the callback's name by listing every method of the spider
(inspect.getmembers) for each request written to disk; here the names are looked up once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scrapy import Request
from scrapy.http.request import _find_method
from scrapy.squeues import PickleFifoDiskQueue


class FifoDiskQueue(PickleFifoDiskQueue):  # type: ignore[misc,valid-type]
    _names: dict[Any, str]

    def _name(self, func: Callable[..., Any] | None) -> str | None:
        if not callable(func):
            return func
        key = getattr(func, "__func__", func)
        names = self.__dict__.setdefault("_names", {})
        if key not in names:
            names[key] = _find_method(self.spider, func)
        return names[key]

    def push(self, request: Request) -> None:
        data: dict[str, Any] = {"url": request.url, "callback": self._name(request.callback),
                                "errback": self._name(request.errback),
                                "headers": dict(request.headers)}
        for attr in request.attributes:
            data.setdefault(attr, getattr(request, attr))
        if type(request) is not Request:
            data["_class"] = f"{type(request).__module__}.{type(request).__name__}"
        super(PickleFifoDiskQueue, self).push(data)  # the pickling layer below to_dict
