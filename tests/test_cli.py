"""The `cllm` command: instant help, options before or after the command, exit codes."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from flows.shell.cllm import main
from flows.shell.runner import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from pipeline.layout import DataRoot
from pipeline.lock import stage_lock

HEAVY = ("torch", "pymupdf", "scrapy", "twisted", "prefect", "tokenizers", "numpy", "pytesseract",
         "transformers", "gguf", "tensorboard")


def _cllm(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.shell.cllm", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_help_imports_no_heavy_library(cli_env: dict[str, str], tmp_path: Path) -> None:
    code = ("import sys; from flows.shell.cllm import build_parser; p = build_parser(); "
            "p.format_help(); [s.choices[c].format_help() for s in p._subparsers._group_actions "
            f"for c in s.choices]; print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=cli_env, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    helped = _cllm(["--help"], cli_env, tmp_path)
    assert helped.returncode == 0
    for word in ("--root", "--config", "--set", "--strict", "ingest", "extract", "train"):
        assert word in helped.stdout


def test_global_options_work_before_and_after_the_command(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("some text")
    before = tmp_path / "r1"
    after = tmp_path / "r2"
    assert main(["--root", str(before), "-q", "ingest", str(tmp_path / "a.txt")]) == EXIT_OK
    assert main(["ingest", str(tmp_path / "a.txt"), "--root", str(after), "-q",
                 "--set", "ingest.max_bytes=1000"]) == EXIT_OK
    assert DataRoot.at(before).raw_index.is_file()
    assert DataRoot.at(after).raw_index.is_file()
    resolved = tomllib.loads((after / "raw" / "ingest.config.toml").read_text())
    assert resolved["ingest"]["max_bytes"] == 1000


def test_flags_that_mirror_config_keys(tmp_path: Path, capsys) -> None:
    assert main(["--root", str(tmp_path), "config", "show", "--set", "train.lr=0.5"]) == 0
    shown = tomllib.loads(capsys.readouterr().out)
    assert shown["train"]["lr"] == 0.5


def test_exit_codes(tmp_path: Path, cli_env: dict[str, str]) -> None:
    good, empty = tmp_path / "good.txt", tmp_path / "empty.txt"
    good.write_text("fine")
    empty.write_text("")
    root = str(tmp_path / "data")

    ok = _cllm(["--root", root, "ingest", str(good), str(empty)], cli_env, tmp_path)
    assert ok.returncode == EXIT_OK, ok.stderr
    assert "1 kept" in ok.stdout and "failed (empty=1)" in ok.stdout
    assert "empty.txt" in ok.stderr

    strict = _cllm(["--root", root, "ingest", "--strict", str(empty)], cli_env, tmp_path)
    assert strict.returncode == EXIT_FAILED

    bad_key = _cllm(["--root", root, "--set", "ingest.nope=1", "ingest", str(good)], cli_env,
                    tmp_path)
    assert bad_key.returncode == EXIT_USAGE
    assert "ingest.nope" in bad_key.stderr and "max_bytes" in bad_key.stderr

    bad_value = _cllm(["--root", root, "ingest", str(good), "--max-bytes", "-5"], cli_env,
                      tmp_path)
    assert bad_value.returncode == EXIT_USAGE and "ingest.max_bytes must be > 0" in bad_value.stderr

    assert _cllm(["no-such-command"], cli_env, tmp_path).returncode == EXIT_USAGE
    bad_file = _cllm(["--config", str(tmp_path / "none.toml"), "config"], cli_env, tmp_path)
    assert bad_file.returncode == EXIT_USAGE and "does not exist" in bad_file.stderr


def test_locked_data_root_is_an_environment_error(tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path / "data")
    (tmp_path / "a.txt").write_text("x")
    with stage_lock(root.raw, "ingest"):
        code = subprocess.run(
            [sys.executable, "-m", "flows.shell.cllm", "--root", str(root.path), "ingest",
             str(tmp_path / "a.txt")], capture_output=True, text=True, timeout=60)
    assert code.returncode == EXIT_ENVIRONMENT
    assert "already running" in code.stderr


def test_cllm_toml_in_the_working_directory_is_read(tmp_path: Path, cli_env) -> None:
    (tmp_path / "cllm.toml").write_text("[train]\nmax_steps = 77\n")
    shown = _cllm(["config"], cli_env, tmp_path)
    assert shown.returncode == 0
    assert tomllib.loads(shown.stdout)["train"]["max_steps"] == 77


def test_a_source_that_fails_completely_exits_1(tmp_path: Path, cli_env: dict[str, str]) -> None:
    good = tmp_path / "good.txt"
    good.write_text("fine")
    root = str(tmp_path / "data")
    missing = _cllm(["--root", root, "ingest", str(tmp_path / "no" / "such")], cli_env, tmp_path)
    assert missing.returncode == EXIT_FAILED, missing.stderr
    assert "no/such" in missing.stderr and "unreadable" in missing.stderr
    partly = _cllm(["--root", root, "ingest", str(good), str(tmp_path / "gone")], cli_env,
                   tmp_path)
    assert partly.returncode == EXIT_OK, partly.stderr  # partial failure: listed, exit 0
    assert "gone" in partly.stderr
    again = _cllm(["--root", root, "ingest", str(good)], cli_env, tmp_path)
    assert again.returncode == EXIT_OK and "unchanged=1" in again.stdout  # nothing new: fine


def test_help_names_flag_values_after_their_keys(tmp_path: Path, cli_env) -> None:
    helped = _cllm(["train", "--help"], cli_env, tmp_path)
    assert helped.returncode == 0
    assert "--run RUN" in helped.stdout and "--max-steps MAX_STEPS" in helped.stdout
    assert "_FLAG_" not in helped.stdout.upper()


def _promoted_by_hand(root: DataRoot, model_id: str) -> None:
    import json

    folder = root.models / model_id
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(
        {"id": model_id, "step": 40, "val_loss": 5.25, "val_bpb": 1.75, "canary_loss": 5.5}))
    (root.models / "current").symlink_to(model_id)
    (root.models / "canary").mkdir()
    (root.models / "canary" / "canary.json").write_text(json.dumps(
        {"docs": 2, "tokens": 300, "frozen_at": "2026-12-01T00:00:00Z"}))


def test_status_lists_models_apart_from_current_and_the_canary(tmp_path: Path, cli_env) -> None:
    import json

    root = DataRoot.at(tmp_path / "data")
    (tmp_path / "a.txt").write_text("some text")
    assert main(["--root", str(root.path), "-q", "ingest", str(tmp_path / "a.txt")]) == EXIT_OK
    _promoted_by_hand(root, "20261201T000000Z-demo-step40")
    shown = _cllm(["--root", str(root.path), "status"], cli_env, tmp_path)
    assert shown.returncode == 0
    lines = {line.split()[0]: line for line in shown.stdout.splitlines()}
    assert "raw: 1 sources" in lines["ingest"] and "shards: none yet" in lines["tokenize"]
    assert lines["models"].endswith("1 promoted")
    assert "20261201T000000Z-demo-step40 (step 40, val loss 5.2500, perplexity 190.57, bits " \
        "per byte 1.7500, canary loss 5.5000)" in lines["current"]
    assert "2 val documents" in lines["canary"]
    as_json = json.loads(_cllm(["--root", str(root.path), "status", "--json"], cli_env,
                               tmp_path).stdout)
    assert as_json["models"]["promoted"] == ["20261201T000000Z-demo-step40"]
    assert as_json["models"]["current"]["id"] == "20261201T000000Z-demo-step40"


def test_a_stage_whose_input_is_being_written_says_so_and_exits_3(tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path / "data")
    args = [sys.executable, "-m", "flows.shell.cllm", "--root", str(root.path)]
    with stage_lock(root.docs, "extract"):
        tokenize = subprocess.run([*args, "tokenize"], capture_output=True, text=True,
                                  timeout=120)
    assert tokenize.returncode == EXIT_ENVIRONMENT, tokenize.stderr
    assert "extract is writing now" in tokenize.stderr and "Traceback" not in tokenize.stderr
    with stage_lock(root.raw, "ingest"):
        extract = subprocess.run([*args, "extract"], capture_output=True, text=True, timeout=120)
    assert extract.returncode == EXIT_ENVIRONMENT, extract.stderr
    assert "ingest is writing now" in extract.stderr


@pytest.mark.slow
def test_a_stage_in_the_one_list_appears_in_help_status_and_the_flows(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    from flows.stages import STAGES

    helped = _cllm(["--help"], cli_env, tmp_path).stdout
    status = _cllm(["--root", str(tmp_path / "data"), "status"], cli_env, tmp_path).stdout
    as_json = _cllm(["--root", str(tmp_path / "data"), "status", "--json"], cli_env, tmp_path)
    tasks = subprocess.run([sys.executable, "-c", "from flows.tasks import TASKS; "
                            "print(' '.join(TASKS))"], env=cli_env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120).stdout.split()
    names = [stage.name for stage in STAGES]
    assert names == ["ingest", "crawl", "extract", "clean", "tokenize", "train", "evaluate"]
    for name in names:
        assert f"    {name} " in helped, f"{name} is not a command"
        assert any(line.startswith(f"{name} ") for line in status.splitlines()), name
        assert name in __import__("json").loads(as_json.stdout)["stages"]
    assert tasks == names  # a Prefect task per stage, in the same order
