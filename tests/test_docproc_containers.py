"""Mail and archives: each message, attachment and member a document of its own (its source
naming its parent, its id the sha256 of its bytes), every archive guard a counted failure
kind, and the extract stage marking an archive done by its part's id record."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest
from formatkit import (
    PROSE,
    docx_bytes,
    mail,
    mbox_bytes,
    rtf_bytes,
    tar_bytes,
    tar_entry,
    zip_bytes,
)
from hostile import Member, zip_archive

from docproc.container import Extraction, extract_source
from docproc.extract import extract_all
from docproc.options import ExtractOptions
from flows.stages import STAGES
from pipeline.config import build_config
from pipeline.docstore import ids_path, iter_documents, list_parts
from pipeline.errors import EncryptedInput, InputError
from pipeline.failures import FailureLog
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore
from pipeline.sniff import sniff_file
from pipeline.status import data_root_status, status_lines

OPTS = ExtractOptions(ocr="never")
NOTE = b"Minutes of the harbour board: the survey is approved and will be printed.\n"


def extract(path: Path, data: bytes, opts: ExtractOptions = OPTS) -> Extraction:
    path.write_bytes(data)
    return extract_source(path, opts)


def by_source(got: Extraction) -> dict[str, str]:
    docs = ([got.doc] if got.doc else []) + got.members
    return {d.source.rsplit("/", 1)[-1] if "!" not in d.source else d.source.split("!", 1)[1]:
            d.text for d in docs}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_mail_is_its_body_and_metadata_and_each_attachment_a_document(tmp_path: Path) -> None:
    report = docx_bytes(sections=1)
    msg = mail(attachments=[("report.docx", report), ("minutes.txt", NOTE)])
    path = tmp_path / "survey.eml"
    got = extract(path, bytes(msg))
    body = got.doc
    assert body.mime == "message/rfc822" and body.text == PROSE
    assert body.title == "Quarterly survey" and body.id == sha(bytes(msg))
    assert body.meta["from"] == "Ann Example <ann@example.org>"
    assert body.meta["date"].startswith("Tue, 01 Dec 2026") and "MIME-Version" not in body.text
    members = {d.source: d for d in got.members}
    assert set(members) == {f"{path}/report.docx", f"{path}/minutes.txt"}
    assert members[f"{path}/report.docx"].id == sha(report)  # its own bytes
    assert "Section 1" in members[f"{path}/report.docx"].text
    assert all(d.meta["blob"] == body.id for d in got.members)
    assert not any("base64" in d.text or "Content-Type" in d.text for d in [body, *got.members])


def test_html_mail_and_an_mbox_of_messages(tmp_path: Path) -> None:
    html = f"<html><body><article><h1>Notice</h1><p>{PROSE}</p></article></body></html>"
    messages = [mail("First", attachments=[("minutes.txt", NOTE)]), mail("Second", html=html)]
    path = tmp_path / "board.mbox"
    got = extract(path, mbox_bytes(messages, tmp_path), ExtractOptions(ocr="never",
                                                                        format="markdown"))
    assert got.doc is None and sniff_file(path).mime == "application/mbox"
    sources = [d.source for d in got.members]
    assert sources == [f"{path}#1", f"{path}#1/minutes.txt", f"{path}#2"]
    assert got.members[2].text.startswith("# Notice") and PROSE in got.members[2].text


def test_an_encrypted_mail_is_refused(tmp_path: Path) -> None:
    msg = mail()
    msg.replace_header("Content-Type", 'application/pkcs7-mime; smime-type=enveloped-data; '
                                       'name="smime.p7m"')
    with pytest.raises(EncryptedInput, match="S/MIME"):
        extract(tmp_path / "secret.eml", bytes(msg))


def test_archive_members_nested_archives_and_their_sources(tmp_path: Path) -> None:
    inner = zip_bytes({"minutes.txt": NOTE, "note.rtf": rtf_bytes()})
    outer = tar_bytes({"docs/report.docx": docx_bytes(sections=1), "inner.zip": inner})
    path = tmp_path / "bundle.tar.gz"
    got = extract(path, outer)
    texts = by_source(got)
    assert set(texts) == {"docs/report.docx", "inner.zip!minutes.txt", "inner.zip!note.rtf"}
    assert texts["inner.zip!minutes.txt"] == NOTE.decode().strip()
    for mode, ext in (("w:bz2", "tar.bz2"), ("w:xz", "tar.xz"), ("w", "tar")):
        plain = extract(tmp_path / f"b.{ext}", tar_bytes({"minutes.txt": NOTE}, mode))
        assert [d.source.split("!")[1] for d in plain.members] == ["minutes.txt"]
        assert sniff_file(tmp_path / f"b.{ext}").ext == ext


def _kinds(got: Extraction) -> dict[str, str]:
    return {f.source.split("!", 1)[1]: f.error for f in got.failures}


def test_each_member_guard_is_a_counted_failure_and_the_rest_is_kept(tmp_path: Path) -> None:
    bomb = Member("bomb.txt", unit=b" " * 65536, times=64)  # 4 MB from a few KB
    evil = zip_archive([Member("minutes.txt", NOTE), Member("../escape.txt", NOTE),
                        Member("/etc/passwd.txt", NOTE), bomb])
    got = extract(tmp_path / "evil.zip", evil, ExtractOptions(ocr="never",
                                                              max_compression_ratio=100))
    assert by_source(got) == {"minutes.txt": NOTE.decode().strip()}
    assert _kinds(got) == {"../escape.txt": "unsafe_path", "/etc/passwd.txt": "unsafe_path",
                           "bomb.txt": "compression_ratio"}
    specials = [tar_entry("link.txt", tarfile.SYMTYPE, "/etc/passwd"),
                tar_entry("hard.txt", tarfile.LNKTYPE, "minutes.txt"),
                tar_entry("tty", tarfile.CHRTYPE), tar_entry("pipe", tarfile.FIFOTYPE)]
    tarred = extract(tmp_path / "specials.tar", tar_bytes({"minutes.txt": NOTE}, "w", specials))
    assert _kinds(tarred) == {"link.txt": "link", "hard.txt": "link", "tty": "device",
                              "pipe": "device"}
    assert len(tarred.members) == 1


def test_archive_wide_guards_fail_the_archive(tmp_path: Path) -> None:
    many = zip_bytes({f"n{i}.txt": NOTE for i in range(12)})
    with pytest.raises(InputError, match="12 members is over extract.max_members=10") as e:
        extract(tmp_path / "many.zip", many, ExtractOptions(ocr="never", max_members=10))
    assert e.value.kind == "too_many_members"
    big = zip_bytes({f"n{i}.txt": NOTE * 8000 for i in range(3)})  # 1.8 MB unpacked
    with pytest.raises(InputError, match="extract.max_unpacked_mb=1") as e:
        extract(tmp_path / "big.zip", big, ExtractOptions(ocr="never", max_unpacked_mb=1))
    assert e.value.kind == "too_large"
    deep = zip_bytes({"minutes.txt": NOTE})
    for level in range(4):
        deep = zip_bytes({f"level{level}.zip": deep, "top.txt": NOTE} if level == 3
                         else {f"level{level}.zip": deep})
    got = extract(tmp_path / "deep.zip", deep, ExtractOptions(ocr="never", max_nesting=3))
    assert [d.source.rsplit("!", 1)[1] for d in got.members] == ["top.txt"]
    assert [f.error for f in got.failures] == ["too_deep"]
    encrypted = zip_archive([Member("secret.txt", NOTE)]).replace(
        b"\x14\x00\x00\x00\x08\x00", b"\x14\x00\x01\x00\x08\x00")  # the encrypted flag
    with pytest.raises(InputError, match="no document in it: 1 failed .*encrypted ZIP") as e:
        extract(tmp_path / "secret.zip", encrypted)
    assert e.value.kind == "encrypted"


def _store(root: DataRoot, folder: Path) -> None:
    from pipeline.ingest import ingest_paths

    ingest_paths([folder], build_config([]), root, progress=False)


def test_the_stage_marks_an_archive_done_and_keeps_one_copy_of_a_member(tmp_path: Path
                                                                       ) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.zip").write_bytes(zip_bytes({"minutes.txt": NOTE, "note.rtf": rtf_bytes(),
                                              "bad.pdf": b"%PDF-1.4\n garbage"}))
    (folder / "b.zip").write_bytes(zip_bytes({"copy-of-minutes.txt": NOTE}))
    (folder / "minutes.txt").write_bytes(NOTE)
    root = DataRoot.at(tmp_path / "data")
    _store(root, folder)
    cfg = build_config([{"extract": {"workers": 1, "ocr": "never"}}])
    stats = extract_all(cfg, root, progress=False)
    docs = list(iter_documents(root.docs))
    assert sorted(d.id for d in docs) == sorted({sha(NOTE), sha(rtf_bytes())})  # once each
    assert stats.kept == 2 and stats.skipped["duplicate_member"] == 2 and stats.extra[
        "members"] >= 1
    assert dict(stats.failed) == {"corrupt": 1}
    (failure,) = FailureLog(root.doc_failures).read()
    assert failure.source == f"{folder}/a.zip!bad.pdf"
    with RawStore(root) as store:
        blobs = {Path(b.source).name: b.sha256 for b in store.iter_blobs()}
    ids = {i for part in list_parts(root.docs) for i in ids_path(part).read_text().split()}
    assert blobs["a.zip"] in ids  # the archive that gave documents is done
    assert blobs["b.zip"] in ids  # and the one whose only member was kept from another file
    again = extract_all(cfg, root, progress=False)
    assert again.kept == 0 and again.n_failed == 0
    assert dict(again.skipped) == {"already_extracted": 3}  # nothing read again
    # `cllm status` shows the stored types and the failures by kind
    lines = status_lines(data_root_status(root, STAGES))
    assert "raw: 3 sources, 3 stored files (zip 2, txt 1), 0 failures" in "\n".join(lines)
    assert "docs: 1 parts, 1 failures (corrupt 1)" in "\n".join(lines)


def test_a_duplicate_only_archive_last_in_a_run_is_not_read_again(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "minutes.txt").write_bytes(NOTE)
    root = DataRoot.at(tmp_path / "data")
    _store(root, folder)
    cfg = build_config([{"extract": {"workers": 1, "ocr": "never"}}])
    assert extract_all(cfg, root, progress=False).kept == 1
    # the next run's only file: an archive of what is already extracted
    (folder / "copy.zip").write_bytes(zip_bytes({"copy-of-minutes.txt": NOTE}))
    _store(root, folder)
    dup = extract_all(cfg, root, progress=False)
    assert dup.kept == 0 and dup.skipped["duplicate_member"] == 1
    again = extract_all(cfg, root, progress=False)
    assert dict(again.skipped) == {"already_extracted": 2}  # the archive is not read again
    assert [d.id for d in iter_documents(root.docs)] == [sha(NOTE)]  # no document twice
