"""`cllm serve` starts a local Prefect server and serves the scheduled deployments; their
schedules stay active across a restart (Prefect pauses served schedules on shutdown by default).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _deployments(port: int) -> dict[str, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/deployments/filter", data=b"{}",
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return {d["name"]: d for d in json.load(resp)}


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _start(root: Path, port: int, env: dict[str, str]) -> subprocess.Popen:
    env = {k: v for k, v in env.items() if not k.startswith("PREFECT_")}
    return subprocess.Popen(
        [sys.executable, "-m", "flows.shell.cllm", "--root", str(root), "serve",
         "--set", f"schedule.server_port={port}", "--set", "schedule.validate_cron=*/30 * * * *"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_deployments(proc: subprocess.Popen, port: int) -> dict[str, dict]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        if _healthy(port):
            found = _deployments(port)
            if {"validate", "retrain"} <= set(found):
                return found
        time.sleep(1)
    raise AssertionError("cllm serve did not register its deployments in time")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _bare_server(root: Path, port: int, env: dict[str, str]) -> subprocess.Popen:
    env = {k: v for k, v in env.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(root / "state" / "prefect")
    return subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host",
                             "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_serve_schedules_survive_a_restart(tmp_path: Path, cli_env: dict[str, str]) -> None:
    root, port = tmp_path / "data", _free_port()
    proc = _start(root, port, cli_env)
    try:
        first = _wait_for_deployments(proc, port)
    finally:
        _stop(proc)
    crons = {name: [s["schedule"]["cron"] for s in d["schedules"]] for name, d in first.items()}
    assert crons == {"validate": ["*/30 * * * *"], "retrain": ["0 3 * * *"]}
    deadline = time.monotonic() + 30
    while _healthy(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _healthy(port), "the server started by cllm serve outlived it"

    # what the database under the data root holds while nothing serves: schedules not paused
    server = _bare_server(root, port, cli_env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(port) and time.monotonic() < deadline:
            time.sleep(1)
        stored = _deployments(port)
        for name in ("validate", "retrain"):
            assert stored[name]["id"] == first[name]["id"]
            assert not stored[name]["paused"]
            assert all(s["active"] for s in stored[name]["schedules"])
        # a restarted `cllm serve` uses the server that answers and keeps the same deployments
        proc = _start(root, port, cli_env)
        try:
            again = _wait_for_deployments(proc, port)
            assert {n: d["id"] for n, d in again.items()} == {n: d["id"] for n, d in first.items()}
        finally:
            _stop(proc)
    finally:
        server.terminate()
        server.wait(timeout=60)
