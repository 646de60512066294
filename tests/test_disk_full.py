"""Disk full: ingest, extract, tokenize and crawl on a small file system.

Each stage, run as `cllm` with its data root on a nearly full file system, stops with exit
code 3 and a message that names the problem and the fix; what it wrote before is intact
(readable, checksums right, no half files); and once space is freed, running the same
command again completes to the outputs an uninterrupted run makes: the same raw store rows,
the same documents (by id and text), the same shards byte for byte.

The small file system is a tmpfs (mounting needs root), else a loop-mounted ext2 image:
a real ENOSPC, filled to leave a few hundred KB, so that each stage has written part of its
output when the space runs out (each test asserts it did). Where nothing can be mounted the
tests skip, except under CI=true, where they fail: CI runs as root. The neighbouring error,
a file over `ulimit -f` (EFBIG, no mount needed), is reported the same way: its own test.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import VENV_BIN, skip_unless_ci
from test_docproc_samples import sentences

from crawler.localsite import LocalSite, generated_site
from pipeline.atomic import is_temp_name
from pipeline.docstore import list_parts, read_part
from pipeline.failures import FailureLog
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore
from pipeline.shards import read_manifest, verify_shards

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # cllm subprocesses

DISK_MB = 32
DOCS = 12
TOKENIZE = ["tokenize", "--vocab-size", "512", "--set", "shards.shard_tokens=4096"]
EXTRACT = ["extract", "--workers", "1", "--set", "extract.part_docs=2"]
CRAWL_SETS = ["--set", "crawl.private_allowlist=127.0.0.1", "--set", "crawl.delay_s=0"]


# --- a small file system ------------------------------------------------------------------


def _run(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


@dataclass(slots=True)
class SmallDisk:
    """A folder on a small file system, filled up to a chosen point on demand."""

    path: Path
    mode: str  # "tmpfs" | "loop"
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def squeeze(self, leave: int) -> None:
        """Leave about `leave` bytes writable."""
        # fill it up (the file system's own bookkeeping included), then give `leave` back
        fd = os.open(self.path / "ballast", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            chunk, size = bytes(64 * 1024), 0
            with contextlib.suppress(OSError):
                while written := os.write(fd, chunk):
                    size += written
            os.ftruncate(fd, max(size - leave, 0))
        finally:
            os.close(fd)

    def release(self) -> None:
        (self.path / "ballast").unlink(missing_ok=True)


def _mount_tmpfs(folder: Path) -> SmallDisk | None:
    if not _run("mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0755", "tmpfs",
                str(folder)):
        return None
    return SmallDisk(folder, "tmpfs", cleanup=[lambda: _run("umount", "-l", str(folder))])


def _mount_loop(folder: Path) -> SmallDisk | None:
    image = folder.with_suffix(".img")
    with open(image, "wb") as fh:
        fh.truncate(DISK_MB * 1024 * 1024)
    # -m 0: no blocks kept for root, who we are, so "free" is all there is
    if not (shutil.which("mkfs.ext2") and _run("mkfs.ext2", "-q", "-F", "-m", "0", str(image))
            and _run("mount", "-o", "loop", str(image), str(folder))):
        image.unlink()
        return None
    return SmallDisk(folder, "loop", cleanup=[lambda: _run("umount", "-l", str(folder)),
                                              image.unlink])


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    folder = tmp_path / "disk"
    folder.mkdir()
    small = _mount_tmpfs(folder) or _mount_loop(folder)
    if small is None:
        skip_unless_ci("cannot mount a small file system (tmpfs or loop): run as root")
    try:
        yield small
    finally:
        for step in small.cleanup:
            with contextlib.suppress(OSError):
                step()


# --- running stages -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    code: int
    stdout: str
    stderr: str


def cllm(root: Path, *args: str, max_file_bytes: int = 0) -> Run:
    """`cllm --root root -q args`; `max_file_bytes`: its `ulimit -f` (EFBIG past it)."""
    def file_size_limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not death by SIGXFSZ
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLLM_")}
    proc = subprocess.run([str(VENV_BIN / "cllm"), "--root", str(root), "-q", *args], env=env,
                          capture_output=True, text=True, timeout=240,
                          preexec_fn=file_size_limit if max_file_bytes else None)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def assert_stopped_for_lack_of_space(run: Run, root: Path,
                                     says: str = "no space left on device") -> None:
    assert run.code == 3, (run.stdout, run.stderr)
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("cllm: "), run.stderr
    assert says in last, last
    assert str(root) in last and "run the same command again" in last
    assert "Traceback" not in run.stderr


def assert_no_half_files(root: Path) -> None:
    temps = [p for p in root.rglob("*") if is_temp_name(p.name)]
    assert temps == [], temps


def raw_rows(root: Path) -> dict[str, tuple[str, str, str, int]]:
    """source -> (sha256, status, mime, size), after checking each row's blob."""
    data = DataRoot.at(root)
    rows = {}
    with RawStore(data) as store:
        for row in store.iter_sources():
            blob = store.get_blob(row.sha256)
            assert blob is not None, row
            content = data.blob(blob.sha256, blob.ext).read_bytes()
            assert hashlib.sha256(content).hexdigest() == row.sha256, row.source
            rows[row.source] = (row.sha256, row.status, row.mime, row.size)
    return rows


def documents(root: Path) -> dict[str, str]:
    """id -> text, after checking every part reads whole and no id comes twice."""
    docs: dict[str, str] = {}
    for part in list_parts(DataRoot.at(root).docs):
        for doc in read_part(part):
            assert doc.id not in docs, f"{doc.id} twice"
            docs[doc.id] = doc.text
    return docs


def shard_files(root: Path) -> dict[str, bytes]:
    """name -> bytes of every listed shard file and the tokenizer, after verifying them."""
    data = DataRoot.at(root)
    manifest = read_manifest(data.manifest)
    report = verify_shards(data.shards, manifest, data.path / manifest.tokenizer.path)
    assert report.ok, report.problems
    files = {name: (data.shards / name).read_bytes() for info in manifest.shards
             for name in (f"{info.name}.bin", f"{info.name}.idx")}
    files["tokenizer.json"] = data.tokenizer_json.read_bytes()
    return files


# --- the reference: one uninterrupted run of every stage ----------------------------------


@dataclass(frozen=True, slots=True)
class Reference:
    corpus: Path
    root: Path
    rows: dict[str, tuple[str, str, str, int]]
    docs: dict[str, str]
    shards: dict[str, bytes]


@pytest.fixture(scope="module")
def reference() -> Iterator[Reference]:
    # not under pytest's tmp_path: tests mount file systems there, which must be on a real disk
    with tempfile.TemporaryDirectory(prefix="cllm-disk-full-") as tmp:
        corpus, root = Path(tmp) / "corpus", Path(tmp) / "ref"
        corpus.mkdir()
        for i in range(DOCS):  # about 60 KB of distinct prose each
            (corpus / f"doc{i:02d}.txt").write_text(f"Document {i}\n\n{sentences(i, 10_000)}\n")
        for args in (["ingest", str(corpus)], EXTRACT, TOKENIZE):
            run = cllm(root, *args)
            assert run.code == 0, run.stderr
        yield Reference(corpus, root, raw_rows(root), documents(root), shard_files(root))


def corpus_bytes(corpus: Path) -> int:
    return sum(p.stat().st_size for p in corpus.iterdir())


# --- the stages ---------------------------------------------------------------------------


def test_ingest_stops_cleanly_and_resumes_to_the_same_raw_store(disk: SmallDisk,
                                                                reference: Reference) -> None:
    root = disk.path / "data"
    disk.squeeze(corpus_bytes(reference.corpus) * 3 // 4)
    print(f"ingest: {corpus_bytes(reference.corpus) * 3 // 4 // 1024} KB left")
    full = cllm(root, "ingest", str(reference.corpus))
    assert_stopped_for_lack_of_space(full, root)
    before = raw_rows(root)  # every row written has its whole blob
    print(f"ingest ({disk.mode}): out of space after {len(before)} of {DOCS} files")
    assert 0 < len(before) < DOCS  # out of space mid-way: some files stored, not all
    assert FailureLog(DataRoot.at(root).raw_failures).read() == []  # no file was blamed
    assert_no_half_files(root)

    disk.release()
    again = cllm(root, "ingest", str(reference.corpus))
    assert again.code == 0, again.stderr
    assert raw_rows(root) == reference.rows
    assert f"{len(before)} skipped (unchanged={len(before)})" in again.stdout


def test_extract_stops_cleanly_and_resumes_to_the_same_documents(disk: SmallDisk,
                                                                 reference: Reference) -> None:
    root = disk.path / "data"
    assert cllm(root, "ingest", str(reference.corpus)).code == 0
    part = max(p.stat().st_size for p in list_parts(DataRoot.at(reference.root).docs))
    disk.squeeze(part * 3)
    print(f"extract: {part * 3 // 1024} KB left")
    full = cllm(root, *EXTRACT)
    assert_stopped_for_lack_of_space(full, root)
    before = documents(root)
    print(f"extract ({disk.mode}): out of space after {len(before)} of {DOCS} documents")
    assert 0 < len(before) < DOCS and set(before) <= set(reference.docs)
    assert FailureLog(DataRoot.at(root).doc_failures).read() == []  # no document was blamed
    assert_no_half_files(root)

    disk.release()
    again = cllm(root, *EXTRACT)
    assert again.code == 0, again.stderr
    assert documents(root) == reference.docs
    assert f"already_extracted={len(before)}" in again.stdout


def committed_work(root: Path) -> tuple[int, int]:
    """(cleaned parts, token spools) tokenize has committed, after reading each part whole."""
    state = DataRoot.at(root).state
    parts = list_parts(state / "clean")
    for part in parts:
        list(read_part(part))
    return len(parts), len(list((state / "tokenize").glob("part-*.json")))


# KB left: in the cleaning, after some cleaned parts are written (the dedup index fills it),
# and after the encoding, while the shards are written
@pytest.mark.parametrize(("leave_kb", "where"), [(320, "cleaning"), (900, "sharding")])
def test_tokenize_stops_cleanly_and_resumes_to_the_same_shards(disk: SmallDisk,
                                                               reference: Reference,
                                                               leave_kb: int, where: str) -> None:
    root = disk.path / "data"
    for args in (["ingest", str(reference.corpus)], EXTRACT):
        assert cllm(root, *args).code == 0
    disk.squeeze(leave_kb * 1024)
    full = cllm(root, *TOKENIZE)
    assert_stopped_for_lack_of_space(full, root)
    cleaned, spools = committed_work(root)
    print(f"tokenize ({disk.mode}, {leave_kb} KB free): {cleaned} parts cleaned, {spools} "
          f"spools encoded; {full.stderr.strip().splitlines()[-1]}")
    assert cleaned > 0  # out of space mid-way: part of the work was committed before
    assert (spools > 0) is (where == "sharding")
    assert documents(root) == reference.docs  # its input untouched
    assert not DataRoot.at(root).manifest.is_file()  # no shards committed: not done
    assert_no_half_files(root)

    disk.release()
    again = cllm(root, *TOKENIZE)
    assert again.code == 0, again.stderr
    assert shard_files(root) == reference.shards


def test_crawl_stops_cleanly_and_resumes_without_refetching(disk: SmallDisk,
                                                            tmp_path: Path) -> None:
    pages = generated_site(24, links_per_page=5, text_words=2500)  # about 17 KB a page

    def by_path(rows: dict[str, tuple[str, str, str, int]], site: LocalSite) -> dict:
        return {url.removeprefix(site.url("")): row for url, row in rows.items()}

    with LocalSite(pages) as site:
        ref = cllm(tmp_path / "ref", "crawl", site.url("/"), *CRAWL_SETS)
        assert ref.code == 0, ref.stderr
        expected = by_path(raw_rows(tmp_path / "ref"), site)
    root = disk.path / "data"
    with LocalSite(pages) as site:
        disk.squeeze(200 * 1024)
        full = cllm(root, "crawl", site.url("/"), *CRAWL_SETS)
        assert_stopped_for_lack_of_space(full, root)
        before = by_path(raw_rows(root), site)
        print(f"crawl ({disk.mode}): out of space after {len(before)} of {len(expected)} pages;"
              f" stderr: {full.stderr!r}")
        assert 0 < len(before) < len(expected)  # out of space mid-way
        assert FailureLog(DataRoot.at(root).raw_failures).read() == []  # no page was blamed
        assert_no_half_files(root)

        disk.release()
        again = cllm(root, "crawl", site.url("/"), *CRAWL_SETS)
        assert again.code == 0, again.stderr
        assert by_path(raw_rows(root), site) == expected
        refetched = [path for path in before if site.hits[path] > 1]
        assert refetched == []  # what was stored before the disk filled came from the store


def test_a_file_over_the_file_size_limit_stops_ingest_the_same_way(tmp_path: Path) -> None:
    corpus, root = tmp_path / "corpus", tmp_path / "data"
    corpus.mkdir()
    for i in range(3):  # small files first (ingest walks in sorted order), then a big one
        (corpus / f"a{i}.txt").write_text(f"Note {i}\n\n{sentences(i, 200)}\n")
    (corpus / "z-big.txt").write_text(sentences(9, 40_000))  # over the limit below
    full = cllm(root, "ingest", str(corpus), max_file_bytes=128 * 1024)
    assert_stopped_for_lack_of_space(full, root, says="file too large")
    assert sorted(Path(s).name for s in raw_rows(root)) == ["a0.txt", "a1.txt", "a2.txt"]
    assert_no_half_files(root)
    again = cllm(root, "ingest", str(corpus))
    assert again.code == 0, again.stderr
    assert len(raw_rows(root)) == 4
