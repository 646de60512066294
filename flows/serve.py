"""`cllm serve`: the validate and retrain deployments on their cron schedules.

Prefect cannot schedule runs on its ephemeral server, so when no Prefect API is configured
this starts a real local server (SQLite under the data root, bound to 127.0.0.1) and stops it
on exit. Served deployments have their schedules paused on shutdown by default; we serve with
`pause_on_shutdown=False`, and the database lives under the data root, so a restart of
`cllm serve` finds the same deployments with their schedules active.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from flows.common import SERVE_PID_ENV
from pipeline.config import Config
from pipeline.errors import EnvironmentProblem
from pipeline.layout import DataRoot
from pipeline.lock import stage_lock
from pipeline.parallel import die_with_parent

log = logging.getLogger(__name__)

SERVER_START_TIMEOUT_S = 120.0
SHUTDOWN_GRACE_S = 30.0  # after the server died, for the runner to stop before we exit
EXIT_SERVER_DIED = 3  # an environment problem (the shell's EXIT_ENVIRONMENT)
DEPLOYMENT_NAMES = ("validate", "retrain")
SERVER_DIED = threading.Event()


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def server_env(root: DataRoot) -> dict[str, str]:
    env = dict(os.environ)
    env["PREFECT_HOME"] = str(root.state / "prefect")
    env.pop("PREFECT_API_URL", None)
    return env


@contextlib.contextmanager
def local_server(cfg: Config, root: DataRoot) -> Iterator[str]:
    """A Prefect server on 127.0.0.1 for the duration of the block; yields its API URL."""
    host, port = cfg.schedule.server_host, cfg.schedule.server_port
    api_url = f"http://{host}:{port}/api"
    if _healthy(api_url):  # one we started before, still running, or the user's
        log.info("using the Prefect server already answering at %s", api_url)
        yield api_url
        return
    (root.state / "prefect").mkdir(parents=True, exist_ok=True)
    log_path = root.state / "prefect" / "server.log"
    with open(log_path, "ab") as server_log:
        # SIGTERM it when `cllm serve` dies, even by SIGKILL: no server outlives its command
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port",
             str(port)], env=server_env(root), stdout=server_log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=lambda: die_with_parent(signal.SIGTERM))
    stopping = threading.Event()
    try:
        _wait_until_healthy(api_url, proc, log_path)
        log.info("started a local Prefect server: UI at http://%s:%d (log %s)", host, port,
                 log_path)
        threading.Thread(target=_stop_serving_if_it_dies, args=(proc, stopping, log_path),
                         name="prefect-server-watch", daemon=True).start()
        yield api_url
    finally:
        stopping.set()
        _stop_process_group(proc)


def _stop_serving_if_it_dies(proc: subprocess.Popen, stopping: threading.Event,
                             log_path: Path) -> None:
    """A served deployment without its server runs nothing and reports nothing: when the
    server dies (killed, out of memory), stop serving so that whatever restarts `cllm serve`
    (systemd, the user) starts both again; the flow runs in progress die with us and the
    next `cllm serve` reports them crashed."""
    proc.wait()
    if stopping.is_set():
        return
    log.error("the Prefect server exited with code %s (see %s); cllm serve stops: start it "
              "again", proc.returncode, log_path)
    SERVER_DIED.set()
    os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: Prefect's serve stops its runner
    if not stopping.wait(SHUTDOWN_GRACE_S):  # it may wait on the dead server's API for ever
        os._exit(EXIT_SERVER_DIED)


def _stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server and whatever it started (it runs in its own session), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_until_healthy(api_url: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EnvironmentProblem(f"the Prefect server exited with code {proc.returncode}; "
                                     f"see {log_path}")
        if _healthy(api_url):
            return
        time.sleep(0.5)
    proc.kill()
    raise EnvironmentProblem(f"the Prefect server did not answer at {api_url} within "
                             f"{SERVER_START_TIMEOUT_S:.0f}s; see {log_path}")


def deployments(cfg: Config, root: DataRoot, config_path: Path | None,
                overrides: list[str]) -> list:
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from flows.retrain import retrain_flow
    from flows.validate import validate_flow

    params = {"root": str(root.path),
              "config": str(Path(config_path).absolute()) if config_path else None,
              "overrides": list(overrides)}
    tz = cfg.schedule.timezone
    return [
        validate_flow.to_deployment(
            "validate", schedules=[Cron(cfg.schedule.validate_cron, timezone=tz)],
            parameters=params, tags=["cllm"], entrypoint_type=EntrypointType.MODULE_PATH,
            description="Validate the promoted model on the val shards and the canary set"),
        retrain_flow.to_deployment(
            "retrain", schedules=[Cron(cfg.schedule.retrain_cron, timezone=tz)],
            parameters=params, tags=["cllm"], entrypoint_type=EntrypointType.MODULE_PATH,
            description="Ingest new sources; retrain and promote if better"),
    ]


def _sigterm_interrupts(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(cfg: Config, root: DataRoot, config_path: Path | None, overrides: list[str]) -> int:
    """Serve until interrupted (SIGINT/SIGTERM); exit 3 when the Prefect server we started
    died. One `cllm serve` per data root: a second one is refused (LockedError)."""
    # until Prefect's runner takes SIGTERM over, it stops us like Ctrl-C, so that the server
    # we started is stopped too (the default action would end the process on the spot)
    signal.signal(signal.SIGTERM, _sigterm_interrupts)
    with stage_lock(root.state / "prefect", "serve"):
        os.environ[SERVE_PID_ENV] = str(os.getpid())  # flow runs die with us (flows.common)
        if os.environ.get("PREFECT_API_URL"):
            return _serve_on(cfg, root, config_path, overrides)
        code = EXIT_SERVER_DIED
        try:
            with local_server(cfg, root) as api_url:
                os.environ["PREFECT_API_URL"] = api_url
                crash_orphaned_runs(root)
                code = _serve_on(cfg, root, config_path, overrides)
        except BaseException:  # our own SIGINT, or a refused connection, when the server died
            if not SERVER_DIED.is_set():
                raise
            log.debug("cllm serve stopped: its Prefect server died", exc_info=True)
        return EXIT_SERVER_DIED if SERVER_DIED.is_set() else code


def crash_orphaned_runs(root: DataRoot) -> int:
    """Report Crashed, with the reason, every run of our deployments on this data root that
    is still pending or running: with the serve lock held no other `cllm serve` of this root
    lives, and the flow runs of a dead one died with it, so nobody will ever finish them.
    Returns how many."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]))),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(
                any_=list(DEPLOYMENT_NAMES))))
        orphans = [r for r in runs if r.parameters.get("root") == str(root.path)]
        for run in orphans:
            message = (f"cllm serve ended while this run was {run.state_name or 'in progress'}"
                       " (killed, or its Prefect server died); the run's process died with it")
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            log.warning("flow run %s (%s): reported crashed: %s", run.name, run.id, message)
    return len(orphans)


def _serve_on(cfg: Config, root: DataRoot, config_path: Path | None, overrides: list[str]
              ) -> int:
    from prefect import serve as prefect_serve

    deps = deployments(cfg, root, config_path, overrides)
    log.info("serving %s (validate: %s, retrain: %s, %s) against %s",
             ", ".join(DEPLOYMENT_NAMES), cfg.schedule.validate_cron,
             cfg.schedule.retrain_cron, cfg.schedule.timezone, os.environ["PREFECT_API_URL"])
    prefect_serve(*deps, pause_on_shutdown=False, print_starting_message=True)
    return 0
