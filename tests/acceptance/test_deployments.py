"""The other two ways a team runs the schedules: `cllm serve` against a Prefect server they
already run (PREFECT_API_URL), and `prefect deploy --all` from prefect.yaml with a process
worker. Each triggered run must reach Completed, wherever its process starts.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from acceptance.kit import (
    VENV_BIN,
    copy_project,
    deployments,
    final_state,
    free_port,
    healthy,
    trigger,
    user_env,
    wait_for,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
START_S = 180
RUN_DONE_S = 300


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> str:
    family = [proc]
    try:
        family += psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        pass
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        for p in family:
            p.kill()
        out, _ = proc.communicate()
    for p in family[1:]:
        if p.is_running():
            p.kill()
    return out or ""


def _completed(port: int, deployment_id: str, parameters: dict[str, str] | None,
               alive) -> None:
    run = trigger(port, deployment_id, parameters)
    wait_for(f"flow run {run['name']}", lambda: final_state(port, run["id"]), RUN_DONE_S,
             alive=alive)
    assert final_state(port, run["id"]) == "Completed"


def test_serve_against_a_users_server_and_prefect_deploy_with_a_worker(
        tmp_path: Path, cli_env: dict[str, str], trained_project: Path) -> None:
    env = user_env(cli_env)
    project = copy_project(trained_project, tmp_path / "project")
    data = project / "cllm-data"
    port = free_port()
    server_env = env | {"PREFECT_HOME": str(tmp_path / "prefect-home"),
                        "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = _start([str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                     "--port", str(port)], tmp_path, server_env)
    api_env = env | {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
                     "PREFECT_HOME": str(tmp_path / "client-home")}
    try:
        wait_for("the user's Prefect server", lambda: healthy(port), START_S)

        # 1. `cllm serve` registers on the server PREFECT_API_URL names and runs from it
        serve = _start([str(VENV_BIN / "cllm"), "--config", str(project / "cllm.toml"),
                        "--root", str(data), "serve"], tmp_path, api_env)

        def serving() -> None:
            assert serve.poll() is None, serve.stdout.read() if serve.stdout else ""

        try:
            found = wait_for("the served deployments",
                             lambda: {"validate", "retrain"} <= set(deployments(port))
                             and deployments(port), START_S, alive=serving)
            _completed(port, found["validate"]["id"], None, serving)
        finally:
            out = _stop(serve)
        assert serve.returncode == 0, out[-3000:]
        assert healthy(port), "cllm serve stopped a server it did not start"

        # 2. prefect.yaml: a process work pool, `prefect deploy --all`, a worker
        def prefect(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(VENV_BIN / "prefect"), "--no-prompt", *args], cwd=REPO,
                                  env=api_env | extra, capture_output=True, text=True,
                                  timeout=300)

        made = prefect("work-pool", "create", "cllm", "--type", "process")
        assert made.returncode == 0, made.stdout + made.stderr
        deployed = prefect("deploy", "--all", CLLM_REPO=str(REPO))
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        found = deployments(port)
        assert {found[n]["work_pool_name"] for n in ("validate", "retrain")} == {"cllm"}
        worker = _start([str(VENV_BIN / "prefect"), "worker", "start", "--pool", "cllm"],
                        tmp_path, api_env)

        def working() -> None:
            assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""

        try:
            _completed(port, found["validate"]["id"],
                       {"root": str(data), "config": str(project / "cllm.toml")}, working)
        finally:
            _stop(worker)
    finally:
        _stop(server, signal.SIGTERM)
