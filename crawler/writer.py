"""The crawl's raw store writer: a process of its own (`python -m crawler.writer ROOT`).

The crawl process hands it each HTML page to scan (crawler.links.scan_html), and it answers
at once with the page's links and robots directives and keeps the body; then each page to
store, which it stores in RawStore batches (the batch's blobs made durable together, renamed
into place, its rows committed in one transaction), answering each with the row's status,
whether the page changed and the content's sha256, or the error that stopped it.

A process, not a thread: a writer thread shared the GIL with the crawl's reactor thread,
which waited whenever the writer ran Python, and the writer waited for the GIL after each
of its calls. The reactor thread is what bounds a crawl (Scrapy runs on it), so what else a
page costs is done here, beside it: the scan (0.16 ms of a docs page of 75 KB), the hash
(0.05 ms), the storing. A page goes over once, as a small pickle and its body, in one
writev(2) from the body's own buffer. The writer ends at the end of its stdin: when the
crawl closes it, or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from crawler.items import FetchedPage
from crawler.links import PageScan, scan_html
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore, sha256_bytes
from pipeline.records import SourceRow

MAX_BATCH = 64  # pages stored in one transaction, at most
PIPE_BYTES = 1 << 20  # each pipe's buffer, where Linux lets a process set it
HEADER = struct.Struct("<II")  # a message's pickle's size, and its body's (a page's)
Stored = tuple[str, bool, str]  # the row's status, whether the content changed, its sha256
Request = tuple[int, FetchedPage]  # key, the page
Answer = tuple[str, int, bool, Any]  # kind, key, ok, the result or the exception
# the messages to the writer, each (kind, key, ...) with a body or none:
SCAN = "scan"  # (SCAN, key, url, charset, agent) + an HTML body: its PageScan, and the body
# kept under the key for a STORE to come (or a DROP)
STORE = "store"  # (STORE, key, fields) + the body, or none if kept: the page stored
DROP = "drop"  # (DROP, key): a kept body not to be stored
PAGE_FIELDS = tuple(f.name for f in dataclasses.fields(FetchedPage)
                    if f.name not in ("body", "note", "body_key"))


def page_fields(page: FetchedPage) -> tuple[Any, ...]:
    """What a STORE sends of a page besides its body (its note stays in the crawl)."""
    return tuple(getattr(page, name) for name in PAGE_FIELDS)


def frame(message: object, body: bytes = b"") -> list[bytes]:
    """A message and the body that goes with it, as the buffers to write one after another
    (the body is not copied)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return [HEADER.pack(len(data), len(body)), data, body]


def unframe(buffer: bytearray) -> list[tuple[Any, bytes]]:
    """The whole messages at the front of `buffer`, with their bodies, taken out of it."""
    messages, pos = [], 0
    with memoryview(buffer) as view:
        while len(buffer) - pos >= HEADER.size:
            size, body_size = HEADER.unpack_from(buffer, pos)
            start = pos + HEADER.size
            end = start + size + body_size
            if len(buffer) < end:
                break
            messages.append((pickle.loads(view[start:start + size]),
                             view[start + size:end].tobytes()))
            pos = end
    del buffer[:pos]
    return messages


def write_all(fd: int, buffers: list[bytes]) -> None:
    """writev until all of `buffers` is written (to a blocking fd)."""
    views = [memoryview(b) for b in buffers if b]
    while views:
        sent = os.writev(fd, views)
        while views and sent >= len(views[0]):
            sent -= len(views.pop(0))
        if views:
            views[0] = views[0][sent:]


def _bigger_pipe(fd: int) -> None:
    with contextlib.suppress(ImportError, OSError, AttributeError):
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[attr-defined]


# --- the writer process --------------------------------------------------------------------


def store_page(store: RawStore, page: FetchedPage) -> Stored:
    """Store the page's content (if new) and its row; returns the row status, whether it
    replaced other content of the same URL (a page that changed), and the content's hash."""
    previous = store.get_source(page.source)
    if page.outcome == "unchanged":
        sha, status = page.sha256, "unchanged"
    else:
        sha, new = store.put_bytes(page.body, mime=page.mime, ext=page.ext,
                                   source=page.source, sha256=page.sha256)
        # a blob stored for this very page by a run that stopped before its row (killed,
        # disk full) is this page's own content, not a duplicate of another's
        blob = store.get_blob(sha) if not new and previous is None else None
        if new or (blob is not None and blob.source == page.source):
            status = "stored"
        elif previous is not None and previous.sha256 == sha:
            status = "unchanged"
        else:
            status = "duplicate"
    # a 304 answered without the stored copy (its links were in the job's notes) has no
    # body: the content, its size and validators are the previous row's
    same = previous if previous is not None and page.outcome == "unchanged" else None
    store.upsert_source(SourceRow(
        source=page.source, kind="web", status=status, sha256=sha, mime=page.mime,
        size=same.size if same else len(page.body), fetched_at=page.fetched_at,
        http_status=page.http_status, final_url=page.final_url, depth=page.depth,
        referrer=page.referrer, etag=page.etag or (same.etag if same else ""),
        last_modified=page.last_modified or (same.last_modified if same else ""),
    ))
    changed = previous is not None and bool(previous.sha256) and previous.sha256 != sha
    return status, changed, sha


def store_batch(store: RawStore, requests: list[Request]) -> list[Answer]:
    """The pages in one RawStore batch; if it fails, each alone, so a page that cannot be
    stored fails by itself and the others lose nothing."""
    try:
        for _, page in requests:  # hashed first: the blobs' rows are looked up all at once
            if not page.sha256:
                page.sha256 = sha256_bytes(page.body)
        with store.batch():
            store.look_up(sources=[page.source for _, page in requests],
                          blobs=[page.sha256 for _, page in requests])
            results = [store_page(store, page) for _, page in requests]
    except Exception as e:
        if len(requests) > 1:
            return [answer for request in requests for answer in store_batch(store, [request])]
        return [(STORE, requests[0][0], False, _sendable(e))]
    return [(STORE, key, True, result)
            for (key, _), result in zip(requests, results, strict=True)]


def _sendable(error: BaseException) -> BaseException:
    """The error itself where it survives a pickle (an OSError keeps its errno: a full disk
    is told from other errors), else a RuntimeError naming it."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any error's own pickling
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


class _Serving:
    """The writer's state: bytes read and not yet whole messages, the bodies kept for a
    STORE, and the pages waiting for a batch."""

    def __init__(self, fd_in: int, fd_out: int) -> None:
        self.fd_in, self.fd_out = fd_in, fd_out
        self.unread = bytearray()
        self.kept: dict[int, bytes] = {}
        self.waiting: list[Request] = []
        self.ended = False

    def read(self, block: bool) -> None:
        """What has come in (waiting for something if `block`), its scans answered at once:
        the crawl waits for those, not for batches."""
        if not block and not select.select([self.fd_in], [], [], 0)[0]:
            return
        chunk = os.read(self.fd_in, PIPE_BYTES)
        if not chunk:
            self.ended = True
            return
        self.unread.extend(chunk)
        scanned = []
        for message, body in unframe(self.unread):
            kind, key = message[0], message[1]
            if kind == SCAN:
                scanned.append(_scan(key, body, *message[2:]))
                self.kept[key] = body
            elif kind == STORE:
                page = FetchedPage(**dict(zip(PAGE_FIELDS, message[2], strict=True)),
                                   body=body or self.kept.pop(key, b""))
                self.waiting.append((key, page))
            else:
                self.kept.pop(key, None)
        if scanned:
            self.answer(scanned)

    def answer(self, answers: list[Answer]) -> None:
        write_all(self.fd_out, [part for a in answers for part in frame(a)])

    def take(self) -> list[Request]:
        """The next batch: the pages waiting, at most MAX_BATCH (waiting for one if none)."""
        self.read(block=False)
        while not self.waiting and not self.ended:
            self.read(block=True)
        batch = self.waiting[:MAX_BATCH]
        del self.waiting[:MAX_BATCH]
        return batch


def _scan(key: int, body: bytes, url: str, charset: str | None, agent: str) -> Answer:
    try:
        return SCAN, key, True, scan_html(body, url, charset, agent)
    except Exception as e:  # noqa: BLE001 - the crawl scans it itself, and says why if it fails
        return SCAN, key, False, _sendable(e)


def serve(root: str, fd_in: int = 0, fd_out: int = 1) -> None:
    """Scan and store what comes in until it ends; each batch is the pages waiting."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the crawl process decides when to stop
    serving = _Serving(fd_in, fd_out)
    try:
        store = RawStore(DataRoot.at(root))
    except Exception as e:  # the index cannot be opened: every page fails with why
        while batch := serving.take():
            serving.answer([(STORE, key, False, _sendable(e)) for key, _ in batch])
        return
    with store, contextlib.suppress(BrokenPipeError):  # the crawl is gone: nobody to tell
        while batch := serving.take():
            serving.answer(store_batch(store, batch))


# --- starting it ----------------------------------------------------------------------


def start(root: Path | str) -> subprocess.Popen[bytes]:
    """The writer process for the raw store under `root`, its pipes made as large as they may
    be. Started first thing in the crawl process, it is up by the first page."""
    proc = subprocess.Popen([sys.executable, "-P", "-m", "crawler.writer", str(root)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    for pipe in (proc.stdin, proc.stdout):
        _bigger_pipe(pipe.fileno())
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Close its input and wait for it (after what it was given is stored)."""
    assert proc.stdin is not None
    with contextlib.suppress(OSError):
        proc.stdin.close()
    proc.wait()


# --- the crawl process's end of it ---------------------------------------------------


class WriterStopped(RuntimeError):
    """The writer process ended with pages it had not answered."""


class StoreWriter:
    """The writer process and the pages it has not answered yet, on the reactor's loop."""

    def __init__(self, proc: subprocess.Popen[bytes], root: DataRoot,
                 loop: asyncio.AbstractEventLoop) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc, self.root, self.loop = proc, root, loop
        self._out, self._in = proc.stdin.fileno(), proc.stdout.fileno()
        for fd in (self._out, self._in):
            os.set_blocking(fd, False)
        self._keys = itertools.count()
        self._waiting: dict[tuple[str, int], asyncio.Future[Any]] = {}
        self._unsent = bytearray()
        self._received = bytearray()
        self._ended: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self._in, self._read)

    @property
    def running(self) -> bool:
        return not self._ended.done()

    def scan(self, body: bytes, url: str, charset: str | None, agent: str
             ) -> tuple[int, asyncio.Future[PageScan]]:
        """Have an HTML page scanned (crawler.links.scan_html) by the writer, beside this
        thread; the body is kept there, under the key returned, for a store() or a drop()."""
        return self._ask(SCAN, (url, charset, agent), body)

    def store(self, page: FetchedPage, key: int | None = None) -> asyncio.Future[Stored]:
        """Have the page stored: its body kept under `key` by a scan(), else sent now."""
        body = page.body if key is None else b""
        return self._ask(STORE, (page_fields(page),), body, key)[1]

    def drop(self, key: int) -> None:
        """The body kept under `key` is not to be stored."""
        if not self._ended.done():
            self._send(frame((DROP, key)))

    def _ask(self, kind: str, args: tuple[Any, ...], body: bytes, key: int | None = None
             ) -> tuple[int, asyncio.Future[Any]]:
        if self._ended.done():
            raise WriterStopped(self._why_stopped())
        key = next(self._keys) if key is None else key
        future: asyncio.Future[Any] = self.loop.create_future()
        self._waiting[kind, key] = future
        self._send(frame((kind, key, *args), body))
        return key, future

    async def close(self) -> None:
        """Let the writer store what it has, and wait for it to end."""
        while self._unsent and not self._ended.done():
            await asyncio.sleep(0.005)
        if self._unsent:
            self.loop.remove_writer(self._out)
        await asyncio.to_thread(stop, self.proc)
        await self._ended

    def _send(self, buffers: list[bytes]) -> None:
        if self._unsent:
            self._unsent.extend(b"".join(buffers))
            return
        size = sum(len(b) for b in buffers)
        try:
            sent = os.writev(self._out, [b for b in buffers if b])
        except BlockingIOError:
            sent = 0
        except BrokenPipeError:
            return  # it has ended: _read fails the pages it did not answer
        if sent < size:
            self._unsent.extend(b"".join(buffers)[sent:])
            self.loop.add_writer(self._out, self._write_unsent)

    def _write_unsent(self) -> None:
        try:
            sent = os.write(self._out, self._unsent)
        except BlockingIOError:
            return
        except BrokenPipeError:
            sent = len(self._unsent)
        del self._unsent[:sent]
        if not self._unsent:
            self.loop.remove_writer(self._out)

    def _read(self) -> None:
        try:
            chunk = os.read(self._in, PIPE_BYTES)
        except BlockingIOError:
            return
        if chunk:
            self._received += chunk
            for (kind, key, ok, result), _ in unframe(self._received):
                future = self._waiting.pop((kind, key))
                if not future.done():
                    if ok:
                        future.set_result(result)
                    else:
                        future.set_exception(result)
            return
        self.loop.remove_reader(self._in)
        self._fail_waiting()
        self._ended.set_result(None)

    def _fail_waiting(self) -> None:
        """The writer ended with pages unanswered: it was killed, or crashed."""
        if not self._waiting:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):  # its end closed the pipe: the
            self.proc.wait(timeout=1)  # exit code is a moment away
        error = WriterStopped(self._why_stopped())
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()

    def _why_stopped(self) -> str:
        code = self.proc.poll()
        return (f"the raw store writer (pid {self.proc.pid}) stopped"
                + (f" with exit code {code}" if code is not None else "")
                + f" before storing the pages it was given, in {self.root.raw}")


if __name__ == "__main__":
    serve(sys.argv[1])
