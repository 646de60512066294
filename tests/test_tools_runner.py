"""Every installed command goes through one runner: `--help` answers, a bad input is one line
naming it with the documented exit code, Ctrl-C exits 130 with one line — never a traceback.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCRIPTS = sorted(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])

# a command line per tool whose input does not exist, and the exit code the README documents
MISSING = {
    "cllm": (["--root", "{tmp}/data", "ingest", "{tmp}/missing"], 1),
    "cllm_pdf_extract": (["{tmp}/missing.pdf"], 1),
    "cllm_ocr": (["{tmp}/missing.png"], 1),
    "cllm_pdf_ocr": (["{tmp}/missing.pdf"], 1),
    "cllm_crawler": (["--start-url", "not a url", "--data-dir", "{tmp}/data"], 2),
    "cllm_tokenize": (["-v", "{tmp}/missing.json", "hello"], 2),
    "cllm_vocab_build": (["-o", "{tmp}/tok.json", "{tmp}/missing"], 1),
    "train_model": (["{tmp}/missing"], 2),
    "cllm_inference": (["{tmp}/missing.pt"], 1),
}


def _run(script: str, args: list[str], tmp_path: Path, **kw: object
         ) -> subprocess.CompletedProcess[str]:
    args = [a.format(tmp=tmp_path) for a in args]
    return subprocess.run([str(BIN / script), *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, **kw)


def test_every_installed_command_is_covered() -> None:
    assert set(SCRIPTS) == set(MISSING)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_answers(script: str, tmp_path: Path) -> None:
    done = _run(script, ["--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_missing_input_is_one_line_naming_it(script: str, tmp_path: Path) -> None:
    args, code = MISSING[script]
    done = _run(script, args, tmp_path)
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    named = "not a url" if script == "cllm_crawler" else "missing"
    assert named in done.stderr, done.stderr


def _interrupted(command: list[str], tmp_path: Path, wait_s: float = 3.0
                 ) -> tuple[int, str]:
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    time.sleep(wait_s)  # long enough to be waiting on its input, not a speed test
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out + err


@pytest.mark.slow
def test_ctrl_c_while_a_tool_waits_is_one_line_and_130(tmp_path: Path) -> None:
    from pipeline.tokenizer import save_tokenizer, train_bpe

    tok = tmp_path / "tok.json"
    save_tokenizer(train_bpe(["some text to learn from"] * 20, vocab_size=300), tok)
    code, said = _interrupted([str(BIN / "cllm_tokenize"), "-v", str(tok)], tmp_path)
    assert code == 130, said
    assert "interrupted" in said and "Traceback" not in said
    assert len(said.strip().splitlines()) == 1
