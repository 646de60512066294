"""The extract stage over a real raw store: parts, failures, re-runs, workers, timeouts, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pymupdf
import pytest
from test_docproc_samples import (
    bomb_png,
    mixed_pdf_bytes,
    page_image,
    page_texts,
    scanned_pdf_bytes,
    text_pdf_bytes,
)

from docproc.extract import extract_all
from docproc.options import ExtractOptions
from docproc.pool import Task, WorkerPool
from pipeline.config import Config, replace
from pipeline.docstore import iter_documents, list_parts
from pipeline.errors import EnvironmentProblem
from pipeline.failures import FailureLog
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore

LOW_DPI = 100  # OCR in these tests is about the plumbing, not the quality


def _cfg(cfg: Config, **changes: object) -> Config:
    base = {"dpi": LOW_DPI, "workers": 2}
    base.update(changes)
    return replace(cfg, "extract", **base)


def _put(root: DataRoot, data: bytes, source: str, mime: str, ext: str) -> str:
    with RawStore(root) as store:
        sha, _ = store.put_bytes(data, mime=mime, ext=ext, source=source)
    return sha


def _locked_pdf() -> bytes:
    doc = pymupdf.open(stream=text_pdf_bytes(page_texts(1)), filetype="pdf")
    return doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="pw", owner_pw="o")


def _restricted_pdf() -> bytes:
    doc = pymupdf.open(stream=text_pdf_bytes(page_texts(1, seed=50)), filetype="pdf")
    return doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", permissions=0)


def _thousand_page_pdf(n: int) -> bytes:
    doc = pymupdf.open()
    for _ in range(n):
        doc.new_page()
    return doc.tobytes()


@pytest.fixture
def bad_and_good(root: DataRoot) -> dict[str, str]:
    """A raw store with good documents and every kind of bad input; source -> expected."""
    truncated = text_pdf_bytes(page_texts(6, seed=9))
    items = {
        "good.pdf": (text_pdf_bytes(page_texts(2, seed=1)), "application/pdf", "pdf", "ok"),
        "mixed.pdf": (mixed_pdf_bytes(page_texts(2, words=40, seed=2), {2}, dpi=LOW_DPI),
                      "application/pdf", "pdf", "ok"),
        "restricted.pdf": (_restricted_pdf(), "application/pdf", "pdf", "ok"),
        "notes.txt": ("Crème brûlée recipe: sugar, cream and a torch.".encode("cp1252"),
                      "text/plain", "txt", "ok"),
        "locked.pdf": (_locked_pdf(), "application/pdf", "pdf", "encrypted"),
        "truncated.pdf": (truncated[: len(truncated) * 6 // 10], "application/pdf", "pdf",
                          "corrupt"),
        "corrupt.pdf": (b"%PDF-1.4\n" + os.urandom(3000), "application/pdf", "pdf", "corrupt"),
        "empty.pdf": (b"", "application/pdf", "pdf", "empty"),
        "login.pdf": (b"<!DOCTYPE html><html><body><form>Sign in</form></body></html>",
                      "application/pdf", "pdf", "corrupt"),
        # 2100 pages is no longer too many (extract.max_pages is a guard, 100000): read, and
        # found blank
        "huge.pdf": (_thousand_page_pdf(2100), "application/pdf", "pdf", "empty"),
        "bomb.png": (bomb_png(12_000), "image/png", "png", "too_large"),
        # NULs and control bytes: no charset decodes it (random bytes sometimes do)
        "binary.txt": (bytes(range(256)) * 8, "text/plain", "txt", "corrupt"),
    }
    expected = {}
    for name, (data, mime, ext, outcome) in items.items():
        source = f"http://127.0.0.1/files/{name}"
        if data:
            _put(root, data, source, mime, ext)
        else:  # the raw store never holds empty content; write the blob as a crawler might
            sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            root.blob(sha, ext).parent.mkdir(parents=True, exist_ok=True)
            root.blob(sha, ext).write_bytes(b"")
            with RawStore(root) as store:
                store.db.execute("INSERT INTO blobs VALUES (?, ?, ?, 0, ?, '')",
                                 (sha, ext, mime, source))
        expected[source] = outcome
    return expected


@pytest.mark.slow
def test_stage_extracts_good_inputs_and_records_every_bad_one(
        root: DataRoot, cfg: Config, bad_and_good: dict[str, str]) -> None:
    stats = extract_all(_cfg(cfg), root, progress=False)
    docs = {d.source: d for d in iter_documents(root.docs)}
    failures = {f.source: f for f in FailureLog(root.doc_failures).read()}
    assert {s for s, o in bad_and_good.items() if o == "ok"} == set(docs)
    assert {s: f.error for s, f in failures.items()} == {
        s: o for s, o in bad_and_good.items() if o != "ok"}
    for f in failures.values():
        assert f.stage == "extract" and f.sha256 and f.message
    assert "password" in failures["http://127.0.0.1/files/locked.pdf"].message
    assert "HTML" in failures["http://127.0.0.1/files/login.pdf"].message
    assert "2100 pages" in failures["http://127.0.0.1/files/huge.pdf"].message
    assert "decompression bomb" in failures["http://127.0.0.1/files/bomb.png"].message
    assert str(root.raw) not in failures["http://127.0.0.1/files/corrupt.pdf"].message

    mixed = docs["http://127.0.0.1/files/mixed.pdf"]
    assert mixed.ocr_pages == [2] and mixed.page_info[1].reason == "no_text_layer"
    assert mixed.page_info[1].confidence is not None
    assert docs["http://127.0.0.1/files/notes.txt"].text.startswith("Crème brûlée")
    assert stats.kept == 4 and stats.n_failed == 8 and stats.units == 5  # text has no pages
    assert stats.extra["ocr_pages"] == 1 and stats.extra["page_reasons"] == {
        "has_text": 4, "no_text_layer": 1}
    assert (root.docs / "config.toml").is_file()

    # a re-run does nothing new and never duplicates a record
    again = extract_all(_cfg(cfg), root, progress=False)
    assert again.kept == 0 and again.n_failed == 0
    assert dict(again.skipped) == {"already_extracted": 4, "failed_before": 8}
    assert len(list(iter_documents(root.docs))) == 4 and len(list_parts(root.docs)) == 1

    # retry_failed tries the failures again; they fail again, still one row each
    retried = extract_all(_cfg(cfg, retry_failed=True), root, progress=False)
    assert retried.n_failed == 8 and len(FailureLog(root.doc_failures).read()) == 8


def test_new_blobs_go_to_a_new_part_and_old_failures_clear_when_they_succeed(
        root: DataRoot, cfg: Config) -> None:
    _put(root, b"First document text, long enough to be a document.", "a.txt", "text/plain",
         "txt")
    _put(root, bytes(range(256)) * 8, "b.txt", "text/plain", "txt")
    first = extract_all(_cfg(cfg, workers=1, part_docs=1), root, progress=False)
    assert first.kept == 1 and first.n_failed == 1
    _put(root, "Second document, ünïcödé.".encode(), "c.md", "text/markdown", "md")
    second = extract_all(_cfg(cfg, workers=1), root, progress=False)
    assert second.kept == 1 and len(list_parts(root.docs)) == 2
    # the failed source is fixed at its origin: a new content under the same name succeeds
    log = FailureLog(root.doc_failures)
    assert [f.source for f in log.read()] == ["b.txt"]
    _put(root, b"Now it is text.", "b.txt", "text/plain", "txt")
    extract_all(_cfg(cfg, workers=1), root, progress=False)
    assert log.read() == []


def test_missing_tesseract_stops_the_stage_before_any_work(
        root: DataRoot, cfg: Config, missing_tesseract: Path) -> None:
    _put(root, scanned_pdf_bytes(text_pdf_bytes(page_texts(1)), dpi=50), "scan.pdf",
         "application/pdf", "pdf")
    with pytest.raises(EnvironmentProblem, match="apt-get install tesseract-ocr"):
        extract_all(_cfg(cfg), root, progress=False)
    assert list_parts(root.docs) == [] and FailureLog(root.doc_failures).read() == []
    # with OCR off nothing needs Tesseract: the page is recorded as not OCRed, doc empty
    stats = extract_all(_cfg(cfg, ocr="never"), root, progress=False)
    assert stats.failed == {"empty": 1}


def _slow_tasks(tmp_path: Path, n: int) -> list[Task]:
    """Scanned pages that take Tesseract a second or so each at 300 dpi."""
    data = scanned_pdf_bytes(text_pdf_bytes(page_texts(1, words=200)), dpi=200)
    tasks = []
    for i in range(n):
        path = tmp_path / f"scan{i}.pdf"
        path.write_bytes(data + b"\n%" + str(i).encode())  # distinct bytes, same pages
        tasks.append(Task(path=str(path), source=path.name))
    return tasks


def _signal_worker(pool: WorkerPool, signum: int) -> None:
    """Send `signum` to the pool's first worker once it is busy with its first document."""
    deadline = time.monotonic() + 30
    while not pool.worker_pids() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into the OCR of the page (about a second of work)
    os.kill(pool.worker_pids()[0], signum)


@pytest.mark.slow
def test_a_hung_worker_is_killed_and_a_crashed_one_replaced(tmp_path: Path) -> None:
    tasks = _slow_tasks(tmp_path, 3)
    pool = WorkerPool(ExtractOptions(dpi=300), workers=1, timeout_s=30, tasks_per_worker=10,
                      kill_grace_s=0.5)
    pool.timeout_s = 2.0  # the hung worker below is stopped after 2.5 s

    threading.Thread(target=_signal_worker, args=(pool, signal.SIGSTOP)).start()  # a hang
    outcomes = list(pool.run(tasks[:1]))
    assert pool.start_method == "forkserver"  # a thread was running, as under Prefect
    assert [o.error for o in outcomes] == ["timeout"]
    assert "extract.timeout_s=2s" in outcomes[0].message

    pool.timeout_s = 60.0

    threading.Thread(target=_signal_worker, args=(pool, signal.SIGKILL)).start()  # OOM killer
    outcomes = list(pool.run(tasks[1:]))
    assert sorted(o.error for o in outcomes) == ["", "crash"]
    crashed = next(o for o in outcomes if o.error)
    assert "SIGKILL" in crashed.message
    assert next(o for o in outcomes if not o.error).doc.ocr_pages == [1]


@pytest.mark.slow
def test_a_document_over_its_time_becomes_a_timeout_failure(root: DataRoot, cfg: Config,
                                                            tmp_path: Path) -> None:
    for task in _slow_tasks(tmp_path, 1):
        _put(root, Path(task.path).read_bytes(), "slow.pdf", "application/pdf", "pdf")
    _put(root, b"A quick text document.", "quick.txt", "text/plain", "txt")
    # no per-page allowance: the page's OCR (a second or so) is over the 0.3 s limit on any machine
    stats = extract_all(_cfg(cfg, dpi=300, timeout_s=0.3, timeout_per_page_s=0.0, workers=1),
                        root, progress=False)
    assert stats.kept == 1 and dict(stats.failed) == {"timeout": 1}
    assert "slow.pdf" in FailureLog(root.doc_failures).sources()


def _text_tasks(tmp_path: Path, n: int) -> list[Task]:
    tasks = []
    for i in range(n):
        path = tmp_path / f"{i:03d}.txt"
        path.write_text(f"document number {i:03d}")
        tasks.append(Task(path=str(path), source=path.name))
    return tasks


def test_workers_are_recycled_after_their_task_count(tmp_path: Path) -> None:
    pool = WorkerPool(ExtractOptions(), workers=1, timeout_s=30, tasks_per_worker=2)
    outcomes = list(pool.run(_text_tasks(tmp_path, 5)))
    assert sorted(o.doc.text for o in outcomes) == [f"document number {i:03d}" for i in range(5)]
    assert pool.started == 3  # 2 + 2 + 1 documents


def test_recycling_never_loses_a_result_in_flight(tmp_path: Path) -> None:
    # a worker that sends its last result and exits must not be taken for a crashed one
    from docproc.pool import _other_threads

    # plain fork from a single-threaded caller; a test before this one in the same pytest
    # worker (Prefect's harness) may have left threads behind, and then it is a forkserver
    expected = "forkserver" if _other_threads() else "fork"
    pool = WorkerPool(ExtractOptions(), workers=2, timeout_s=30, tasks_per_worker=2)
    outcomes = list(pool.run(_text_tasks(tmp_path, 60)))
    assert [o.error for o in outcomes if o.error] == []
    assert len({o.doc.text for o in outcomes}) == 60 and pool.started >= 30
    assert pool.start_method == expected


def _ingested(tmp_path: Path, cli_env: dict[str, str],
              files: dict[str, bytes]) -> tuple[Path, list[str]]:
    """A data root holding `files` (ingested with the real CLI); (root, cllm command)."""
    data_root = tmp_path / "data"
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, data in files.items():
        (inputs / name).write_bytes(data)
    cllm = [sys.executable, "-m", "flows.shell.cllm", "--root", str(data_root)]
    subprocess.run([*cllm, "ingest", str(inputs)], env=cli_env, check=True, capture_output=True)
    return data_root, cllm


@pytest.mark.slow
def test_cli_extract_runs_the_stage_and_maps_missing_tesseract_to_exit_3(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    data_root, cllm = _ingested(tmp_path, cli_env, {
        "a.pdf": text_pdf_bytes(page_texts(1)),
        "b.png": page_image("Hello from an image file.", dpi=100)})

    env = dict(cli_env, TESSERACT_CMD=str(tmp_path / "none" / "tesseract"))
    missing = subprocess.run([*cllm, "extract"], env=env, capture_output=True, text=True)
    assert missing.returncode == 3
    assert "apt-get install tesseract-ocr" in missing.stderr

    done = subprocess.run([*cllm, "extract", "--workers", "2", "--dpi", "100", "--strict"],
                          env=cli_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "extract: 2 seen, 2 kept" in done.stdout
    texts = {Path(d.source).name: d for d in iter_documents(data_root / "docs")}
    assert texts["b.png"].text == "Hello from an image file."
    resolved = (data_root / "docs" / "config.toml").read_text()
    assert "dpi = 100" in resolved and "workers = 2" in resolved


@pytest.mark.slow
def test_killed_run_leaves_no_workers_and_a_rerun_completes_without_duplicates(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    import psutil

    scan = scanned_pdf_bytes(text_pdf_bytes(page_texts(1, words=120)), dpi=150)
    data_root, cllm = _ingested(tmp_path, cli_env, {
        f"scan{i}.pdf": scan + b"\n%" + str(i).encode() for i in range(6)})
    extract = [*cllm, "-q", "extract", "--workers", "2", "--dpi", "150",
               "--set", "extract.part_docs=1"]

    proc = subprocess.Popen(extract, env=cli_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list_parts(data_root / "docs") and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    proc.wait()
    assert list_parts(data_root / "docs"), "no part was written before the kill"
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []

    done_before = len(list(iter_documents(data_root / "docs")))
    rerun = subprocess.run(extract, env=cli_env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    ids = [d.id for d in iter_documents(data_root / "docs")]
    assert len(ids) == len(set(ids)) == 6
    assert f"{done_before} skipped (already_extracted={done_before})" in rerun.stdout
