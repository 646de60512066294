"""Scrapy's downloader, with its per-domain limit made to hold.

Scrapy (2.13 and later) starts each download taken off a slot's queue as an asyncio task, and
the request counts as transferring only once that task runs. The loop that takes requests
off the queue runs first, sees the slot's room unchanged and takes them all: with
`crawl.concurrency` 16 and `crawl.per_domain_concurrency` 4, up to 16 requests go to one host
at once. Twisted's connection pool keeps only per-domain-concurrency idle connections per
host, so the extra ones are closed after each answer and opened again for the next: about
one new TCP connection every two requests. A server whose listen queue is short drops the
SYNs of such bursts, and each dropped SYN costs the kernel's one-second retransmit, with the
CPU idle — the stall that made raising the global concurrency slow a one-site crawl down.
Here a request counts as transferring from the moment it leaves the queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy.core.downloader import Downloader

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.core.downloader import Slot


class SlotLimitedDownloader(Downloader):
    def _wait_for_download(self, slot: Slot, request: Request, queue_dfd: Any) -> Any:
        # called (not awaited) inside the queue loop: counted before the loop looks again;
        # Scrapy's own add when the task starts is then a no-op, its remove still ends it
        slot.transferring.add(request)
        return super()._wait_for_download(slot, request, queue_dfd)  # type: ignore[misc]
