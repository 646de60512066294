"""A user's day, followed as the user lives it: an empty folder, a cllm.toml naming a folder of
PDF manuals and a small web site, `cllm run` (twice: the second has nothing to do), more
manuals, `cllm run` again, then `cllm serve` with its schedules, stopped with Ctrl-C.

Everything runs as the installed `cllm` command in the project folder, with the default data
root (./cllm-data) and no Prefect settings: what a new user gets.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from acceptance.kit import (
    VENV_BIN,
    cllm,
    copy_project,
    deployments,
    final_state,
    flow_runs,
    free_port,
    healthy,
    port_open,
    registry,
    runs,
    trigger,
    user_env,
    wait_for,
    write_config,
    write_manuals,
)

pytestmark = pytest.mark.slow

SERVE_START_S = 180
RUN_DONE_S = 300


def _assert_one_line_errors(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr[-3000:]


def test_run_twice_then_new_documents(tmp_path: Path, cli_env: dict[str, str], site) -> None:
    env = user_env(cli_env)
    project = tmp_path / "project"
    write_manuals(project / "manuals", range(4))
    write_config(project, urls=[site.url("/")], paths=["manuals"])
    data = project / "cllm-data"

    first = cllm(["run"], project, env)
    assert first.returncode == 0, first.stderr[-3000:]
    _assert_one_line_errors(first)
    current, decisions = registry(data)
    assert current is not None and [d["promoted"] for d in decisions] == [True]
    assert "promoted" in first.stdout and "{" not in first.stdout  # a summary, not a dict
    record = json.loads((data / "models" / "current" / "record.json").read_text())
    import torch

    weights = torch.load(data / "models" / "current" / "model.pt", weights_only=True)
    # the record names the step of the weights it holds (the best checkpoint)
    assert record["step"] == weights["step"] and record["id"].endswith(f"-step{record['step']}")
    trained = runs(data)
    assert len(trained) == 1

    second = cllm(["run"], project, env)
    assert second.returncode == 0, second.stderr[-3000:]
    _assert_one_line_errors(second)
    assert "nothing new" in second.stdout
    # what the second run did, not the figures of the first (its stages came from the cache)
    for stage in ("extract", "clean", "tokenize"):
        assert f"  {stage:<11}nothing new (its input is unchanged" in second.stdout, \
            second.stdout
    assert " new;" not in second.stdout.replace("0 new;", "")
    assert runs(data) == trained  # no training run
    assert registry(data) == (current, decisions)  # no decision either

    write_manuals(project / "manuals", range(4, 8))
    third = cllm(["run"], project, env)
    assert third.returncode == 0, third.stderr[-3000:]
    _assert_one_line_errors(third)
    assert len(runs(data)) == 2  # a new run of its own name; the first one is untouched
    after, decisions = registry(data)
    last = decisions[-1]
    assert len(decisions) == 2 and last["manifest_version"] > decisions[0]["manifest_version"]
    assert (after != current) == last["promoted"]  # the registry changed as the gate said
    assert ("not promoted" in third.stdout) == (not last["promoted"])


def _processes_of(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    try:
        parent = psutil.Process(proc.pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _stop_with_ctrl_c(proc: subprocess.Popen[str], port: int) -> str:
    """SIGINT as a terminal's Ctrl-C sends it; returns the output. No process, no port left."""
    family = _processes_of(proc)
    assert len(family) > 1, "cllm serve started no server"
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        for p in family:
            p.kill()
        raise AssertionError("cllm serve did not stop on SIGINT") from None
    assert proc.returncode == 0, out[-3000:]
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"left running after cllm serve stopped: {alive}"
    assert not port_open(port), f"port {port} is still open"
    return out


def test_serve_runs_the_schedule_and_a_triggered_retrain(
        tmp_path: Path, cli_env: dict[str, str], trained_project: Path) -> None:
    env = user_env(cli_env)
    project = copy_project(trained_project, tmp_path / "project")
    data = project / "cllm-data"
    write_manuals(project / "manuals", range(3, 6))  # new documents for the retrain
    port = free_port()
    with open(project / "cllm.toml", "a", encoding="utf-8") as fh:
        fh.write(f'\n[schedule]\nvalidate_cron = "* * * * *"\nmin_new_docs = 1\n'
                 f'server_port = {port}\n')
    before, decisions_before = registry(data)

    # started from another folder than the project's, naming its config and data root
    proc = subprocess.Popen([str(VENV_BIN / "cllm"), "--config", str(project / "cllm.toml"),
                             "--root", str(data), "serve"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        def alive() -> None:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""

        found = wait_for("the deployments", lambda: healthy(port) and {"validate", "retrain"}
                         <= set(deployments(port)) and deployments(port), SERVE_START_S,
                         alive=alive)
        retrain = trigger(port, found["retrain"]["id"])
        wait_for("the retrain run", lambda: final_state(port, retrain["id"]), RUN_DONE_S,
                 alive=alive)
        assert final_state(port, retrain["id"]) == "Completed", api_logs(port, retrain["id"])
        # the schedule's own run (every minute), not one we triggered
        scheduled = wait_for(
            "a scheduled validate run that ended",
            lambda: [r for r in flow_runs(port, found["validate"]["id"])
                     if r["auto_scheduled"] and final_state(port, r["id"])],
            RUN_DONE_S, poll=2, alive=alive)
        assert final_state(port, scheduled[0]["id"]) == "Completed", \
            api_logs(port, scheduled[0]["id"])

        after, decisions = registry(data)
        assert len(decisions) == len(decisions_before) + 1
        assert (after != before) == decisions[-1]["promoted"]
        sample = cllm(["sample", "-p", "The manual", "-n", "12"], project, env)
        assert sample.returncode == 0, sample.stderr[-3000:]
        assert sample.stdout.strip().startswith("The manual")
        assert len(sample.stdout.strip()) > len("The manual")
    finally:
        if proc.poll() is None:
            out = _stop_with_ctrl_c(proc, port)
            assert "Traceback" not in out, out[-3000:]


def api_logs(port: int, flow_run_id: str) -> str:
    """The flow run's log lines, for a failure message."""
    from acceptance.kit import api

    rows = api(port, "logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}})
    return "\n".join(r["message"] for r in rows)[-4000:]
