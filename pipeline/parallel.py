"""A map over worker processes that keeps the input order and a bounded number of results."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: list[T], workers: int) -> Iterator[tuple[T, R]]:
    """(item, fn(item)) in input order; fn runs in up to `workers` processes, with a bounded
    number of results waiting so that memory does not grow with the number of items.

    If the worker processes die or cannot start, the remaining items run in this process.
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield item, fn(item)
        return
    # forkserver: forking a process that already runs threads (tokenizers, Prefect) can hang
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
    done = 0
    try:
        it = iter(items)
        pending: deque[tuple[T, Future[R]]] = deque(
            (item, pool.submit(fn, item)) for item in islice(it, 2 * workers))
        while pending:
            item, future = pending.popleft()
            result = future.result()
            for nxt in islice(it, 1):
                pending.append((nxt, pool.submit(fn, nxt)))
            done += 1
            yield item, result
    except BrokenProcessPool as e:
        log.warning("worker processes failed (%s); going on in this process", e)
        for item in items[done:]:
            yield item, fn(item)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent dies, even by SIGKILL, so an
    orphan never keeps working or holds a lock it inherited (Linux only; elsewhere nothing)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
