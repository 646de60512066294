"""The legacy console scripts cllm_pdf_extract, cllm_ocr and cllm_pdf_ocr, run as commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pymupdf
import pytest
from test_docproc_samples import (
    mixed_pdf_bytes,
    page_image,
    page_texts,
    scanned_pdf_bytes,
    text_pdf_bytes,
    write,
)

from pipeline.records import Document

VENV_BIN = Path(sys.executable).parent
LOW_DPI = "100"


def run(tool: str, *args: str | Path, env: dict[str, str], cwd: Path | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / tool), *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def pdfs(tmp_path: Path) -> dict[str, Path]:
    texts = page_texts(2, words=50, seed=4)
    meta_doc = pymupdf.open(stream=text_pdf_bytes(texts), filetype="pdf")
    meta_doc.set_metadata({"title": "Sample Manual", "author": "Ada"})
    return {
        "text": write(tmp_path / "text.pdf", meta_doc.tobytes()),
        "scan": write(tmp_path / "scan.pdf", scanned_pdf_bytes(text_pdf_bytes(texts[:1]),
                                                               dpi=100)),
        "mixed": write(tmp_path / "mixed.pdf", mixed_pdf_bytes(texts, {2}, dpi=100)),
        "fake": write(tmp_path / "fake.pdf", b"<html><body>Not found</body></html>"),
    }


@pytest.mark.slow
def test_pdf_extract_type_page_metadata_and_failures(pdfs: dict[str, Path],
                                                     cli_env: dict[str, str]) -> None:
    types = run("cllm_pdf_extract", "-t", pdfs["text"], pdfs["scan"], pdfs["mixed"],
                pdfs["fake"], env=cli_env)
    assert types.returncode == 1
    assert types.stdout.splitlines() == [f"{pdfs['text']}: text", f"{pdfs['scan']}: image",
                                         f"{pdfs['mixed']}: mixed"]
    assert f"{pdfs['fake']}: corrupt:" in types.stderr

    page2 = run("cllm_pdf_extract", "-p", "2", "-m", pdfs["text"], env=cli_env)
    assert page2.returncode == 0, page2.stderr
    assert "title: Sample Manual\nauthor: Ada\n" in page2.stdout
    expected = _flat(page_texts(2, words=50, seed=4)[1])
    assert _flat(page2.stdout).endswith(expected)
    assert page_texts(2, words=50, seed=4)[0].split()[3] not in page2.stdout.split("pages: 2")[1]

    no_ocr = run("cllm_pdf_extract", pdfs["scan"], env=cli_env)
    assert no_ocr.returncode == 1 and "no text found" in no_ocr.stderr

    # in parallel, records still come out in the order of the inputs
    order = [pdfs["mixed"], pdfs["text"], pdfs["mixed"].with_name("copy.pdf")]
    order[2].write_bytes(pdfs["text"].read_bytes())
    jsonl = run("cllm_pdf_extract", "--jsonl", "--workers", "2", *order, env=cli_env)
    assert jsonl.returncode == 0, jsonl.stderr
    assert [Document.from_json(line).source for line in jsonl.stdout.splitlines()] == [
        str(p) for p in order]


@pytest.mark.slow
def test_several_inputs_write_one_file_each_and_name_the_failure(
        pdfs: dict[str, Path], tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "out"
    result = run("cllm_pdf_extract", "-r", "-d", LOW_DPI, "--workers", "2", "-o", out,
                 pdfs["text"], pdfs["fake"], pdfs["scan"], env=cli_env)
    assert result.returncode == 1
    assert f"cllm_pdf_extract: {pdfs['fake']}: corrupt: named or declared PDF" in result.stderr
    assert "1 of 3 inputs failed" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["scan.txt", "text.txt"]
    first_words = page_texts(1, words=50, seed=4)[0].split()[:5]
    assert _flat(" ".join(first_words)).lower() in _flat((out / "scan.txt").read_text()).lower()


def test_a_folder_of_outputs_is_written_whole_and_a_blocked_file_is_one_error(
        pdfs: dict[str, Path], tmp_path: Path, cli_env: dict[str, str]) -> None:
    # each file is renamed into place when written and all are fsynced at the end: all are
    # there, none is left half done, and a file that cannot be written is the run's error,
    # in one line
    inputs = [write(tmp_path / f"doc{i}.pdf", pdfs["text"].read_bytes()) for i in range(4)]
    out = tmp_path / "out"
    result = run("cllm_pdf_extract", "--workers", "1", "-o", out, *inputs, env=cli_env)
    assert result.returncode == 0, result.stderr
    texts = [(out / f"doc{i}.txt").read_text() for i in range(4)]
    assert len(texts[0]) > 100 and texts == [texts[0]] * 4
    assert sorted(p.name for p in out.iterdir()) == [f"doc{i}.txt" for i in range(4)]

    (out / "doc1.txt").unlink()
    (out / "doc1.txt").mkdir()  # a folder where the second file must go
    blocked = run("cllm_pdf_extract", "--workers", "1", "-o", out, *inputs, env=cli_env)
    assert blocked.returncode == 1 and "Traceback" not in blocked.stderr
    assert blocked.stderr.count("\n") == 1 and "doc1.txt" in blocked.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"doc{i}.txt" for i in range(4)]


@pytest.mark.slow
def test_pdf_ocr_reports_decisions_and_forces_ocr(pdfs: dict[str, Path], tmp_path: Path,
                                                  cli_env: dict[str, str]) -> None:
    auto = run("cllm_pdf_ocr", "-v", "-d", LOW_DPI, "--jsonl", pdfs["mixed"], env=cli_env)
    assert auto.returncode == 0, auto.stderr
    doc = Document.from_json(auto.stdout.strip())
    assert doc.ocr_pages == [2] and doc.page_info[1].reason == "no_text_layer"
    assert "page 2: OCR (no_text_layer)" in auto.stderr and "page 1: text (has_text)" in auto.stderr

    out = tmp_path / "forced.txt"
    forced = run("cllm_pdf_ocr", "-f", "-d", LOW_DPI, "-o", out, pdfs["text"], env=cli_env)
    assert forced.returncode == 0, forced.stderr
    conf = forced.stdout.strip()
    assert conf.startswith(f"{pdfs['text']}: confidence ") and conf.endswith(f"-> {out}")
    assert "85.0%" not in conf and out.read_text().strip()

    german = run("cllm_pdf_ocr", "-l", "deu", pdfs["scan"], env=cli_env)
    assert german.returncode == 3 and "tesseract-ocr-deu" in german.stderr


@pytest.mark.slow
def test_ocr_tool_prints_real_confidence_and_checks_tesseract(tmp_path: Path,
                                                              cli_env: dict[str, str]) -> None:
    image = write(tmp_path / "note.png", page_image("Meet me at the river at noon.", dpi=120))
    out = tmp_path / "note.txt"
    result = run("cllm_ocr", "-o", out, "-p", "6", image, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert out.read_text().strip() == "Meet me at the river at noon."
    confidence = float(result.stdout.split("confidence ")[1].split("%")[0])
    assert 70 < confidence <= 100

    jsonl = run("cllm_ocr", "--jsonl", "-n", image, env=cli_env)
    record = json.loads(jsonl.stdout)
    assert record["page_info"][0]["confidence"] > 70 and record["ocr_pages"] == [1]

    langs = run("cllm_ocr", "-L", env=cli_env)
    assert "eng" in langs.stdout.split()
    assert run("cllm_ocr", "-c", env=cli_env).returncode == 0
    broken = dict(cli_env, TESSERACT_CMD=str(tmp_path / "missing"))
    check = run("cllm_ocr", "-c", env=broken)
    assert check.returncode == 3 and "apt-get install tesseract-ocr" in check.stderr
    usage = run("cllm_ocr", env=cli_env)
    assert usage.returncode == 2 and "no input files" in usage.stderr


@pytest.mark.slow
def test_ctrl_c_and_an_unwritable_output_are_one_line_each(pdfs: dict[str, Path],
                                                           tmp_path: Path,
                                                           cli_env: dict[str, str]) -> None:
    import signal
    import time

    scans = [write(tmp_path / f"scan{i}.pdf", pdfs["scan"].read_bytes()) for i in range(6)]
    for workers in ("1", "2"):
        proc = subprocess.Popen(
            [str(VENV_BIN / "cllm_pdf_ocr"), "-f", "--workers", workers, *map(str, scans)],
            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(1.5)  # OCR under way
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert (proc.returncode, err) == (130, "cllm_pdf_ocr: interrupted\n")

    blocker = write(tmp_path / "blocker", b"a file, not a folder")
    unwritable = run("cllm_pdf_extract", "-o", blocker / "out.txt", pdfs["text"], env=cli_env)
    assert unwritable.returncode == 1 and "Traceback" not in unwritable.stderr
    assert unwritable.stderr.count("\n") == 1 and str(blocker) in unwritable.stderr
