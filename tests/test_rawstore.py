"""The raw store's batches, and the crawl's writer that stores pages in them."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import pytest

from crawler.items import FetchedPage
from crawler.pipelines import _Writer
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore
from pipeline.records import SourceRow


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

    async def store_all() -> list[object]:
        loop = asyncio.get_running_loop()
        # one batch of five pages, the third broken (its body is not bytes)
        batch = [(page(n, b"<p>%d</p>" % n if n != 2 else "not bytes"), loop.create_future())
                 for n in range(5)]
        RawStore(root).close()  # the index made (WAL), before two threads open it at once
        writer = _Writer(root, loop)

        def store_in_a_thread() -> None:
            with RawStore(root) as store:
                writer._store_batch(store, batch)

        await asyncio.to_thread(store_in_a_thread)
        results = await asyncio.gather(*(f for _, f in batch), return_exceptions=True)
        await writer.close()
        return results

    results = asyncio.run(store_all())
    assert [r for n, r in enumerate(results) if n != 2] == [("stored", False)] * 4
    assert isinstance(results[2], TypeError)
    with RawStore(root) as store:
        stored = {r.source.rsplit("/", 1)[1]: r.sha256 for r in store.iter_sources()}
    assert stored == {str(n): hashlib.sha256(b"<p>%d</p>" % n).hexdigest() for n in (0, 1, 3, 4)}


def test_a_writer_that_cannot_open_the_raw_store_fails_each_page_with_why(
        tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path)
    root.raw.parent.mkdir(parents=True, exist_ok=True)
    root.raw.write_text("a file where the raw store's folder should be")

    async def store_two() -> list[object]:
        writer = _Writer(root, asyncio.get_running_loop())
        futures = [writer.submit(page(n, b"<p>%d</p>" % n)) for n in range(2)]
        # each page is told, none waits for ever
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 10)
        await writer.close()
        return results

    results = asyncio.run(store_two())
    assert all(isinstance(r, OSError) and str(root.raw) in str(r) for r in results), results
