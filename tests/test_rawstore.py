"""The raw store's batches, and the crawl's writer that stores pages in them."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from crawler import writer
from crawler.items import FetchedPage
from crawler.links import scan_html
from crawler.writer import StoreWriter, WriterStopped, store_batch
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore
from pipeline.records import SourceRow

T = TypeVar("T")


def row(source: str, sha: str) -> SourceRow:
    return SourceRow(source=source, kind="web", status="stored", sha256=sha, mime="text/html")


def test_a_batch_places_its_blobs_then_commits_its_rows_together(tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path)
    with RawStore(root) as store, RawStore(root) as reader:
        with store.batch():
            blobs = []
            for n in range(3):
                sha, new = store.put_bytes(b"page %d" % n, mime="text/html", ext="html",
                                           source=f"u{n}")
                store.upsert_source(row(f"u{n}", sha))
                blobs.append(root.blob(sha, "html"))
                assert new and not blobs[-1].exists()  # written beside it, not in place yet
            # the same content twice in one batch: stored once, the second not new
            assert store.put_bytes(b"page 0", mime="text/html", ext="html",
                                   source="again")[1] is False
            assert reader.count_sources() == 0 and reader.count_blobs() == 0
        assert [b.read_bytes() for b in blobs] == [b"page 0", b"page 1", b"page 2"]
        assert reader.count_sources() == 3 and reader.count_blobs() == 3
    assert [p.name for p in root.raw.rglob("*") if p.name.endswith(".tmp")] == []


def test_reads_in_a_batch_see_the_index_and_its_own_rows_and_ask_the_index_once(
        tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path)
    with RawStore(root) as store:
        old, _ = store.put_bytes(b"old", mime="text/html", ext="html", source="u0")
        store.upsert_source(row("u0", old))
        # rows go in as runs that fit one statement's variables: make the runs short
        store.db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 20)
        assert store.get_sources(["nope", "u0", "u0"]) == {"u0": row("u0", old)}
        queries: list[str] = []
        store.db.set_trace_callback(queries.append)
        shas = {n: hashlib.sha256(b"page %d" % n).hexdigest() for n in range(1, 30)}
        with store.batch():
            store.look_up(sources=[f"u{n}" for n in range(30)],
                          blobs=[old, "0" * 64, *shas.values()])
            asked = len(queries)
            assert store.get_source("u0") == row("u0", old) and store.get_source("u5") is None
            assert store.has_blob(old) and not store.has_blob("0" * 64)
            assert len(queries) == asked  # answered from what look_up read
            for n in range(1, 30):
                _, new = store.put_bytes(b"page %d" % n, mime="text/html", ext="html",
                                         source=f"u{n}", sha256=shas[n])
                store.upsert_source(row(f"u{n}", shas[n]))
                assert new and store.get_source(f"u{n}") == row(f"u{n}", shas[n])
            assert store.put_bytes(b"old", mime="text/html", ext="html", source="u9")[1] is False
            assert len(queries) == asked  # nothing asked or written until the batch commits
        store.db.set_trace_callback(None)
        assert store.count_sources() == 30 and store.count_blobs() == 30
        assert [store.get_source(f"u{n}") for n in range(1, 30)] == \
            [row(f"u{n}", shas[n]) for n in range(1, 30)]
        assert store.get_blob(shas[29]).source == "u29"  # type: ignore[union-attr]
        assert root.blob(shas[29], "html").read_bytes() == b"page 29"


def test_an_error_inside_a_batch_leaves_no_row_blob_or_temp_file(tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path)
    with RawStore(root) as store:
        with pytest.raises(RuntimeError, match="stopped"), store.batch():
            sha, _ = store.put_bytes(b"not kept", mime="text/html", ext="html", source="u")
            store.upsert_source(row("u", sha))
            raise RuntimeError("stopped")
        assert store.count_sources() == 0 and store.count_blobs() == 0
        assert [p for p in root.raw.rglob("*") if p.is_file() and p.name != "index.sqlite"
                and not p.name.startswith("index.sqlite-")] == []
        with store.batch():  # and the store takes it again as new
            assert store.put_bytes(b"not kept", mime="text/html", ext="html",
                                   source="u") == (sha, True)
        assert root.blob(sha, "html").read_bytes() == b"not kept"


def page(n: int, body: bytes | str) -> FetchedPage:
    return FetchedPage(source=f"http://127.0.0.1:9/{n}", final_url=f"http://127.0.0.1:9/{n}",
                       http_status=200, body=body, mime="text/html", ext="html")  # type: ignore[arg-type]


def test_one_page_that_cannot_be_stored_costs_the_others_in_its_batch_nothing(
        tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path)
    # one batch of five pages, the third broken (its body is not bytes)
    requests = [(n, page(n, b"<p>%d</p>" % n if n != 2 else "not bytes")) for n in range(5)]
    with RawStore(root) as store:
        answers = store_batch(store, requests)
    assert [(key, ok, result) for _, key, ok, result in answers if key != 2] == \
        [(n, True, ("stored", False, hashlib.sha256(b"<p>%d</p>" % n).hexdigest()))
         for n in (0, 1, 3, 4)]
    assert [(ok, type(result)) for _, key, ok, result in answers if key == 2] == \
        [(False, TypeError)]
    with RawStore(root) as store:
        stored = {r.source.rsplit("/", 1)[1]: r.sha256 for r in store.iter_sources()}
    assert stored == {str(n): hashlib.sha256(b"<p>%d</p>" % n).hexdigest() for n in (0, 1, 3, 4)}


async def _with_writer(root: DataRoot, use: Callable[[StoreWriter], Awaitable[T]]) -> T:
    """`use` a real writer process on `root`; closed after, and waited for (10 s at most)."""
    store = StoreWriter(writer.start(root.path), root, asyncio.get_running_loop())
    try:
        return await asyncio.wait_for(use(store), 10)
    finally:
        await asyncio.wait_for(store.close(), 10)


def test_the_writer_scans_keeps_the_body_and_stores_it_or_drops_it(tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path)
    html = b'<meta name="robots" content="nofollow"><a href="/next">n</a><a href="b">b</a>'

    async def scan_then_store(w: StoreWriter) -> tuple[object, ...]:
        key, scanned = w.scan(html, "http://127.0.0.1:9/a/1", None, "cllm")
        kept_out, dropped_out = w.scan(b"<p>refused</p>", "http://127.0.0.1:9/2", None, "")
        scan = await scanned
        await dropped_out
        w.drop(kept_out)  # refused after its scan: never stored
        stored = await w.store(replace(page(1, html), sha256=""), key)  # its body not re-sent
        sent = await w.store(page(3, b"<p>3</p>"))  # one not scanned: its body sent with it
        return scan, stored, sent

    scan, stored, sent = asyncio.run(_with_writer(root, scan_then_store))
    assert scan == scan_html(html, "http://127.0.0.1:9/a/1", None, "cllm")
    assert scan.links == ["http://127.0.0.1:9/next", "http://127.0.0.1:9/a/b"] and scan.nofollow
    assert stored == ("stored", False, hashlib.sha256(html).hexdigest())  # hashed by the writer
    assert sent == ("stored", False, hashlib.sha256(b"<p>3</p>").hexdigest())
    with RawStore(root) as store:
        assert root.blob(stored[2], "html").read_bytes() == html
        assert sorted(r.source for r in store.iter_sources()) == \
            ["http://127.0.0.1:9/1", "http://127.0.0.1:9/3"]


def test_a_writer_that_cannot_open_the_raw_store_fails_each_page_with_why(
        tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path)
    root.raw.parent.mkdir(parents=True, exist_ok=True)
    root.raw.write_text("a file where the raw store's folder should be")

    async def store_two(w: StoreWriter) -> list[object]:
        # each page is told, none waits for ever
        return await asyncio.gather(*(w.store(page(n, b"<p>%d</p>" % n)) for n in range(2)),
                                    return_exceptions=True)

    results = asyncio.run(_with_writer(root, store_two))
    assert all(isinstance(r, OSError) and str(root.raw) in str(r) for r in results), results


def test_a_writer_that_dies_fails_the_pages_it_had_and_refuses_more(tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path)

    async def kill_then_store(w: StoreWriter) -> tuple[object, object]:
        assert await w.store(page(0, b"<p>0</p>")) == \
            ("stored", False, hashlib.sha256(b"<p>0</p>").hexdigest())
        w.proc.kill()
        lost = await asyncio.gather(w.store(page(1, b"<p>1</p>")), return_exceptions=True)
        with pytest.raises(WriterStopped, match="exit code -9"):
            w.store(page(2, b"<p>2</p>"))
        return lost[0], w.running

    lost, running = asyncio.run(_with_writer(root, kill_then_store))
    assert isinstance(lost, WriterStopped) and str(root.raw) in str(lost) and not running
