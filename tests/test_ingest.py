"""Local ingest: sniffing by content, storing each content once, idempotent re-runs, failures."""

from __future__ import annotations

import io
import os
import pwd
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest
from conftest import VENV_BIN, skip_unless_ci
from docsite import DocSite, build_docsite

from pipeline.config import Config, replace
from pipeline.failures import FailureLog
from pipeline.ingest import ingest_paths
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore, sha256_bytes
from pipeline.sniff import ASSET_SUFFIXES, sniff_bytes, static_asset


def _pdf_bytes(text: str) -> bytes:
    import pymupdf

    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), text)
    return doc.tobytes()


def _image_bytes(fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "white").save(buf, format=fmt)  # larger than an icon
    return buf.getvalue()


def _epub_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        zf.writestr("META-INF/container.xml", "<container/>")
    return buf.getvalue()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    top = tmp_path / "corpus"
    (top / "docs" / "deep").mkdir(parents=True)
    (top / "img").mkdir()
    files = {
        "docs/report.pdf": _pdf_bytes("quarterly report"),
        "docs/deep/notes.txt": "plain notes, café\n".encode(),
        "docs/readme.md": b"# Title\n\nSome *markdown*.\n",
        "docs/page.html": b"<!DOCTYPE html><html><title>t</title><p>hi</p></html>",
        "docs/copy-of-notes.txt": "plain notes, café\n".encode(),
        "docs/book.epub": _epub_bytes(),
        "img/scan.png": _image_bytes("PNG"),
        "img/photo.jpg": _image_bytes("JPEG"),
        "img/fax.tiff": _image_bytes("TIFF"),
        "docs/lying.pdf": b"<html><body>not a pdf at all</body></html>",
        "docs/blob.bin": bytes(range(256)) * 4,
        "docs/empty.txt": b"",
    }
    for name, data in files.items():
        (top / name).write_bytes(data)
    (top / "docs" / "deep" / "loop").symlink_to(top / "docs")
    (top / "docs" / "dangling").symlink_to(top / "nowhere")
    (top / ".git").mkdir()
    (top / ".git" / "config").write_text("excluded by default")
    return top


def _rows(root: DataRoot) -> dict[str, tuple[str, str]]:
    with RawStore(root) as store:
        return {Path(r.source).name: (r.status, r.mime) for r in store.iter_sources()}


def test_sniff_goes_by_content_not_name() -> None:
    assert sniff_bytes(b"%PDF-1.7\n...", "x.txt").mime == "application/pdf"
    assert sniff_bytes(b"  <!doctype html><p>", "x.pdf").mime == "text/html"
    assert sniff_bytes(b"# hi\n", "notes.md").mime == "text/markdown"
    assert sniff_bytes(b"\x00\x01\x02binary", "x.txt").mime == "application/octet-stream"
    assert sniff_bytes(b"\xef\xbb\xbfplain", "x").mime == "text/plain"


def test_ingest_stores_each_content_once_and_records_failures(
        tree: Path, root: DataRoot, cfg: Config) -> None:
    stats = ingest_paths([tree], cfg, root, progress=False)

    rows = _rows(root)
    assert rows["report.pdf"] == ("stored", "application/pdf")
    assert rows["lying.pdf"] == ("stored", "text/html")  # by content, not by name
    assert rows["readme.md"][1] == "text/markdown"
    assert rows["book.epub"][1] == "application/epub+zip"
    assert {rows[n][1] for n in ("scan.png", "photo.jpg", "fax.tiff")} == {
        "image/png", "image/jpeg", "image/tiff"}
    notes = {rows["notes.txt"][0], rows["copy-of-notes.txt"][0]}
    assert notes == {"stored", "duplicate"}  # same bytes under two names: one blob
    assert "config" not in rows  # .git excluded

    with RawStore(root) as store:
        assert store.count_blobs() == 9
        blob = store.get_blob(sha256_bytes((tree / "docs/report.pdf").read_bytes()))
        assert blob is not None
        assert root.blob(blob.sha256, "pdf").read_bytes() == (tree / "docs/report.pdf").read_bytes()

    assert stats.kept == 9
    assert stats.skipped == {"duplicate_content": 1}
    assert stats.failed == {"unsupported": 1, "empty": 1, "unreadable": 2}
    failures = {Path(f.source).name: f for f in FailureLog(root.raw_failures).read()}
    assert set(failures) == {"blob.bin", "empty.txt", "loop", "dangling"}
    assert "symlink loop" in failures["loop"].message
    assert failures["empty.txt"].source == str(tree / "docs/empty.txt")
    assert (root.raw / "ingest.config.toml").is_file()


def test_second_run_stores_nothing_and_keeps_one_failure_row_each(
        tree: Path, root: DataRoot, cfg: Config) -> None:
    ingest_paths([tree], cfg, root, progress=False)
    before = sorted(p.name for p in root.raw.rglob("*") if p.is_file())
    again = ingest_paths([tree], cfg, root, progress=False)
    assert again.kept == 0
    assert again.skipped["unchanged"] == 10
    assert sorted(p.name for p in root.raw.rglob("*") if p.is_file()) == before
    assert len(FailureLog(root.raw_failures).read()) == 4


def test_changed_and_fixed_files_are_picked_up(tree: Path, root: DataRoot, cfg: Config) -> None:
    ingest_paths([tree], cfg, root, progress=False)
    (tree / "docs/deep/notes.txt").write_text("new notes")
    (tree / "docs/empty.txt").write_text("no longer empty")
    stats = ingest_paths([tree], cfg, root, progress=False)
    assert stats.kept == 2
    assert "empty.txt" not in {Path(f.source).name for f in FailureLog(root.raw_failures).read()}
    with RawStore(root) as store:
        row = store.get_source(str(tree / "docs/deep/notes.txt"))
        assert row is not None and row.sha256 == sha256_bytes(b"new notes")


def test_size_limit_and_single_file_and_missing_path(
        tree: Path, root: DataRoot, cfg: Config) -> None:
    small = replace(cfg, "ingest", max_bytes=100)
    stats = ingest_paths([tree / "docs/report.pdf", tree / "docs/readme.md", tree / "missing"],
                         small, root, progress=False)
    assert stats.kept == 1
    assert stats.failed == {"too_large": 1, "unreadable": 1}
    reasons = {Path(f.source).name: f.message for f in stats.failures}
    assert "over ingest.max_bytes=100" in reasons["report.pdf"]
    assert "not found" in reasons["missing"]


def _unprivileged(cmd: list[str]) -> list[str]:
    """`cmd` run as `nobody` when we are root (root reads files whatever their mode).

    setpriv (util-linux) rather than setuid in preexec_fn: it keeps root's capabilities
    for the exec alone, so an interpreter under /root (pyenv) still starts; the command
    then runs with nobody's rights and none of root's."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        skip_unless_ci("setpriv (util-linux) is needed to run a command as nobody")
    user = pwd.getpwnam("nobody")
    return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *cmd]


def test_unreadable_files_and_folders_are_failures() -> None:
    """`cllm ingest` run by an unprivileged user (root drops to nobody) over a file and a
    folder it may not read: each is one `unreadable` row, the readable file is stored."""
    nobody = pwd.getpwnam("nobody")
    # not under pytest's tmp_path, which only its owner may enter
    with tempfile.TemporaryDirectory(prefix="cllm-unreadable-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        tree, data = base / "tree", base / "data"
        (tree / "locked").mkdir(parents=True)
        (tree / "readable.txt").write_text("anyone may read this")
        (tree / "secret.txt").write_text("secret")
        (tree / "locked" / "inner.txt").write_text("behind a locked door")
        data.mkdir()
        if os.geteuid() == 0:
            os.chown(data, nobody.pw_uid, nobody.pw_gid)
        (tree / "secret.txt").chmod(0)
        (tree / "locked").chmod(0)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLLM_")}
        try:
            run = subprocess.run(_unprivileged([str(VENV_BIN / "cllm"), "--root", str(data),
                                                "-q", "ingest", str(tree)]),
                                 env={**env, "HOME": str(data)}, text=True,
                                 capture_output=True, timeout=120)
        finally:
            (tree / "locked").chmod(0o755)  # a non-root owner could not clean it up
        assert run.returncode == 0, run.stderr
        root = DataRoot.at(data)
        if os.geteuid() == 0:  # the stage ran as nobody: what it wrote is nobody's
            assert root.raw_index.stat().st_uid == nobody.pw_uid
        assert _rows(root) == {"readable.txt": ("stored", "text/plain")}
        failures = {Path(f.source).name: f for f in FailureLog(root.raw_failures).read()}
        assert set(failures) == {"secret.txt", "locked"}
        assert {(f.error, f.message) for f in failures.values()} == {
            ("unreadable", "permission denied")}
        assert "2 failed (unreadable=2)" in run.stdout


# --- static web assets ---------------------------------------------------------------------


def _asset(name: str, data: bytes) -> str | None:
    return static_asset(name, sniff_bytes(data, name), data)


def test_static_assets_by_name_and_by_content() -> None:
    js = b"/*! jQuery v3.6.1 */\n(function(global){ 'use strict'; })(window);\n"
    assert _asset("jquery.js", js) == "script"  # text by content: the name makes it an asset
    assert _asset("searchindex.js", b'Search.setIndex({"docnames": []})') == "script"
    assert _asset("Theme.MIN.CSS", b"body{margin:0}") == "style sheet"
    assert _asset("app.js.map", b'{"version":3,"sources":[]}') == "source map"
    assert _asset("glossary.json", b'{"term": "a definition in words"}') == "data file"
    assert _asset("objects.inv", b"# Sphinx inventory version 2\n\x78\x9c\x00\x01") \
        == "Sphinx inventory"
    assert _asset(".buildinfo", b"# Sphinx build info version 1\n") == "Sphinx build info"
    assert _asset("empty.css", b"") == "style sheet"
    # the content proves a font or an icon whatever the name
    assert _asset("lato", b"wOF2\x00\x01\x00\x00" + bytes(64)) == "font"
    assert _asset("glyphs.bin", b"\x00\x01\x00\x00\x00\x0c\x00\x80" + bytes(64)) == "font"
    assert _asset("plus.png", _png(11, 11)) == "icon"
    # ... and a document format whatever the name
    assert _asset("page.xml", b'<?xml version="1.0"?>\n<html><body><p>x</p></body></html>') \
        is None
    assert _asset("fable.xml", b'<?xml version="1.0"?><FictionBook xmlns="x">') is None
    assert _asset("report.json", b"%PDF-1.7\n") is None
    assert _asset("figure.png", _png(640, 480)) is None
    assert _asset("notes.txt", b"plain notes") is None
    assert _asset("program.py", b"import os\nprint(os.getcwd())\n") is None


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height), 255).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def docsite(tmp_path: Path) -> DocSite:
    return build_docsite(tmp_path / "html")


def test_a_documentation_folder_stores_its_pages_and_skips_its_assets(
        docsite: DocSite, root: DataRoot, cfg: Config) -> None:
    stats = ingest_paths([docsite.top], cfg, root, progress=False)
    assert stats.kept == len(docsite.pages)
    assert stats.skipped == {"static_asset": len(docsite.assets)}  # counted, with the reason
    assert stats.failed == {} and FailureLog(root.raw_failures).read() == []  # no bad input
    with RawStore(root) as store:
        rows = {str(Path(r.source).relative_to(docsite.top)): r.mime
                for r in store.iter_sources()}
        assert store.count_blobs() == len(docsite.pages)
    assert rows == dict.fromkeys(docsite.pages, "text/html")
    again = ingest_paths([docsite.top], cfg, root, progress=False)
    assert again.skipped == {"unchanged": len(docsite.pages),
                             "static_asset": len(docsite.assets)}


def test_ingest_include_lets_named_assets_in(docsite: DocSite, root: DataRoot,
                                             cfg: Config) -> None:
    stats = ingest_paths([docsite.top], replace(cfg, "ingest", include=["*.json"]), root,
                         progress=False)
    assert stats.kept == len(docsite.pages) + 1
    assert stats.skipped == {"static_asset": len(docsite.assets) - 1}
    with RawStore(root) as store:
        row = store.get_source(str(docsite.top / "_static/glossary.json"))
        assert row is not None and (row.status, row.mime) == ("stored", "text/plain")


def test_the_crawler_refuses_links_to_the_same_assets() -> None:
    from crawler.urls import url_kind_by_suffix

    for suffix in sorted(ASSET_SUFFIXES):
        assert url_kind_by_suffix(f"/_static/x.{suffix}") == "", suffix  # refused unfetched
