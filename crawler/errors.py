"""Why a request ended without a page: a refusal (policy, counted) or a fetch failure.

Refusals are `IgnoreRequest`s carrying a `Reason`, so Scrapy drops the request quietly and
the spider's errback counts it. Everything else that reaches the errback is mapped onto a
failure kind by `failure_kind`.
"""

from __future__ import annotations

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
    StopDownload,
)
from twisted.internet import defer
from twisted.internet import error as twisted_error
from twisted.web._newclient import ResponseFailed

from crawler.urls import Reason
from pipeline.errors import InputError


class Refused(IgnoreRequest):
    """A request the crawl policy does not allow (offsite, private address, budget...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class PrivateAddressError(twisted_error.DNSLookupError):
    """A host name that resolves to an address the crawl may not contact."""


class RedirectFailed(IgnoreRequest):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class FetchError(InputError):
    """A URL that could not be fetched; `kind` is e.g. http_404, timeout, dns, too_large."""

    def __init__(self, source: str, kind: str, reason: str) -> None:
        super().__init__(source, reason)
        self.kind = kind


ROBOTS_MESSAGE = "Forbidden by robots.txt"
_KINDS: list[tuple[tuple[type[BaseException], ...], str]] = [
    ((DownloadTimeoutError, defer.TimeoutError, twisted_error.TimeoutError), "timeout"),
    ((CannotResolveHostError, twisted_error.DNSLookupError), "dns"),
    ((DownloadCancelledError, defer.CancelledError), "too_large"),
    ((ResponseDataLossError,), "data_loss"),
    ((DownloadConnectionRefusedError, DownloadFailedError, twisted_error.ConnectError,
      twisted_error.ConnectionLost, twisted_error.ConnectionDone, ResponseFailed),
     "connection"),
]


def refusal_of(exc: BaseException) -> tuple[str, str] | None:
    """(reason, detail) when `exc` means the request was refused rather than failed."""
    if isinstance(exc, Refused):
        return exc.reason, exc.detail
    cause = exc if isinstance(exc, PrivateAddressError) else exc.__cause__
    if isinstance(cause, PrivateAddressError):
        return Reason.PRIVATE, str(cause)
    if isinstance(exc, StopDownload):
        response = getattr(exc, "response", None)
        ctype = response.headers.get(b"Content-Type", b"") if response is not None else b""
        return Reason.FILE_TYPE, f"Content-Type {ctype.decode('latin-1') or '-'}"
    if isinstance(exc, IgnoreRequest) and str(exc) == ROBOTS_MESSAGE:
        return Reason.ROBOTS, "disallowed by robots.txt"
    return None


def failure_kind(exc: BaseException) -> tuple[str, str]:
    """(kind, message) of a fetch failure."""
    if isinstance(exc, RedirectFailed):
        return exc.kind, exc.detail
    if isinstance(exc, IgnoreRequest) and "DOWNLOAD_MAXSIZE" in str(exc):
        return "too_large", str(exc)  # over the limit once decompressed
    for types, kind in _KINDS:
        if isinstance(exc, types):
            return kind, str(exc) or type(exc).__name__
    return "error", f"{type(exc).__name__}: {exc}"
