"""Soak of the scheduled service: `cllm serve` with the validate and retrain schedules every
minute (cron's shortest), against a web site on 127.0.0.1 that grows pages between runs, while
the serve process and its Prefect server are SIGKILLed at seeded random moments and started
again. Afterwards no run is lost, the registry is whole, nothing is left running, and the serve
process's memory stays flat run over run.

The short version (CI) takes a few minutes: besides the schedule it triggers runs through
the API whenever none is in flight, so that several happen, and kills the serve process once in
a retrain and the server once. The long version lets the schedule alone drive the runs, kills
at random (about every four minutes) and writes bench/results/soak.json:

    CLLM_SOAK_MINUTES=30 .venv/bin/python -m pytest tests/test_soak.py
"""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from acceptance.kit import (
    FINAL,
    VENV_BIN,
    api,
    deployments,
    free_port,
    healthy,
    port_open,
    run_state,
    site_routes,
    trigger,
    user_env,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MINUTES = float(os.environ.get("CLLM_SOAK_MINUTES", "0"))  # 0: the short version
SEED = int(os.environ.get("CLLM_SOAK_SEED", "17"))
SHORT_S = 75  # the short version's chaos window; then it drains
MEAN_BETWEEN_KILLS_S = 240  # the long version's
START_S = 240
DRAIN_S = 300
SCHEDULE_WAIT_S = 150  # after the last kill, for the schedule to complete a run
DIE_S = 60  # for a killed process's family to be gone
RSS_FACTOR, RSS_SLACK_MB = 1.5, 40
IN_FLIGHT = ("PENDING", "RUNNING")
FIRST_PAGES, PAGES_PER_RETRAIN = 3, 2


def _ctrl_c_as_a_terminal_sends_it() -> None:
    """A pytest started in the background (`nohup ... &`) ignores SIGINT, and so would the
    serve processes it starts: they must stop on it as a user's does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass(slots=True)
class Soak:
    """What the soak drives and what it saw."""

    project: Path
    port: int
    env: dict[str, str]
    site: Any
    proc: subprocess.Popen[str] | None = None
    pages: int = FIRST_PAGES
    ids: dict[str, str] = field(default_factory=dict)  # deployment name -> id
    seen_final: set[str] = field(default_factory=set)
    triggered: list[str] = field(default_factory=list)
    rss: list[dict[str, Any]] = field(default_factory=list)  # one per finished run
    kills: list[dict[str, Any]] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)  # when each serve had its deployments
    serves: int = 0
    t0: float = field(default_factory=time.monotonic)

    def clock(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    @property
    def data(self) -> Path:
        return self.project / "cllm-data"

    def start_serve(self) -> None:
        log = open(self.project / f"serve-{self.serves}.log", "w")  # noqa: SIM115 (the child's)
        self.proc = subprocess.Popen([str(VENV_BIN / "cllm"), "serve"], cwd=self.project,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True,
                                     preexec_fn=_ctrl_c_as_a_terminal_sends_it)
        self.serves += 1
        # the deployments outlive a serve in the server's database: wait for this one's
        found = wait_for("cllm serve to serve", lambda: "serving validate, retrain" in
                         self.serve_log(tail=0) and healthy(self.port) and _both(self.port),
                         START_S, alive=self.alive)
        self.ids = {name: found[name]["id"] for name in ("validate", "retrain")}
        self.starts.append(self.clock())

    def alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.serve_log()

    def serve_log(self, tail: int = 4000) -> str:
        return (self.project / f"serve-{self.serves - 1}.log").read_text()[-tail:]

    def family(self) -> list[psutil.Process]:
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def runs(self) -> list[dict[str, Any]]:
        return api(self.port, "flow_runs/filter", {
            "flow_runs": {"deployment_id": {"any_": list(self.ids.values())}},
            "sort": "EXPECTED_START_TIME_ASC"})

    def grow_site(self) -> None:
        """New pages on the same site: the next retrain's crawl finds them."""
        self.pages += PAGES_PER_RETRAIN
        self.site.routes.update(site_routes(self.pages, seed=1))

    def note_finished(self, runs: list[dict[str, Any]]) -> None:
        """Sample the serve process's memory after each run that ended; grow the site after
        each retrain that ended."""
        for run in runs:
            if run_state(run)["type"] not in FINAL or run["id"] in self.seen_final:
                continue
            self.seen_final.add(run["id"])
            if run["deployment_id"] == self.ids["retrain"]:
                self.grow_site()
            try:
                rss = psutil.Process(self.proc.pid).memory_info().rss
            except psutil.NoSuchProcess:
                continue
            self.rss.append({"t_s": self.clock(), "serve": self.serves, "pid": self.proc.pid,
                             "run": run["name"], "rss_mb": round(rss / 2**20, 1)})

    def kill(self, what: str) -> None:
        """SIGKILL the serve process or its Prefect server; all of its family must be gone,
        and the port free, before it starts again."""
        family = self.family()
        server = [p for p in family[1:] if "server" in _cmdline(p)]
        victim = family[0] if what == "serve" else server[0]
        in_flight = [r["name"] for r in self.runs() if run_state(r)["type"] in IN_FLIGHT]
        victim.kill()
        code = self.proc.wait(timeout=DIE_S)  # before psutil reaps it and takes its status
        _, alive = psutil.wait_procs(family, timeout=DIE_S)
        assert not alive, f"left running after the {what} was killed: {_named(alive)}"
        wait_for(f"port {self.port} to close", lambda: not port_open(self.port), DIE_S)
        if what == "server":  # serve noticed and stopped by itself, as an environment error
            assert code == 3, self.serve_log()
        self.kills.append({"what": what, "t_s": self.clock(),
                           "in_flight": in_flight, "serve_exit": code})
        self.start_serve()


def _both(port: int) -> dict[str, dict[str, Any]] | None:
    """The validate and retrain deployments, once both are registered."""
    found = deployments(port)
    return found if {"validate", "retrain"} <= set(found) else None


def _cmdline(process: psutil.Process) -> list[str]:
    """A process's command line; none for one that ended meanwhile (a flow run that just
    finished is a zombie until serve reaps it)."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _named(processes: list[psutil.Process]) -> list[str]:
    named = []
    for p in processes:
        try:
            named.append(f"{p.pid}: {' '.join(p.cmdline())[:200]}")
        except psutil.Error:
            named.append(f"{p.pid}: gone meanwhile")
    return named


def _at(run_or_time: dict[str, Any] | str) -> datetime:
    """A run's expected start, or an ISO time, as a datetime."""
    text = run_or_time if isinstance(run_or_time, str) else run_or_time["expected_start_time"]
    return datetime.fromisoformat(text)


def _plan(rng: random.Random, window_s: float) -> list[tuple[float, str]]:
    """What to kill when: seconds after the serve process started serving."""
    if not MINUTES:  # the serve process in the first retrain, then the server
        return [(rng.uniform(15, 30), "serve"), (rng.uniform(10, 25), "server")]
    events, total = [], 0.0
    while (total := total + (gap := rng.expovariate(1 / MEAN_BETWEEN_KILLS_S))) < window_s:
        events.append((gap, rng.choice(("serve", "server"))))
    return events


def _a_scheduled_run_completed(runs: list[dict[str, Any]]) -> bool:
    return any(r["auto_scheduled"] and run_state(r)["type"] == "COMPLETED" for r in runs)


def _promoted(data: Path) -> bool:
    """A model is promoted: a retrain completed its training (not only skipped or validated);
    on a slow machine every retrain of the chaos window may have been killed."""
    from flows.registry import Registry
    from pipeline.layout import DataRoot

    return Registry(DataRoot.at(data)).current() is not None


def _soak(soak: Soak, rng: random.Random, window_s: float) -> tuple[str, str]:
    """Run the window (in the short version, until a scheduled run has completed after the
    last kill), then let every run due in it end; returns the window (ISO times)."""
    began = datetime.now(UTC).isoformat()
    t0 = time.monotonic()
    events = _plan(rng, window_s)
    first = trigger(soak.port, soak.ids["retrain"])  # a model to validate from the start
    soak.triggered.append(first["id"])
    while True:
        soak.alive()
        runs = soak.runs()
        soak.note_finished(runs)
        elapsed = time.monotonic() - t0
        if events and time.monotonic() - soak.t0 - soak.starts[-1] >= events[0][0]:
            soak.kill(events.pop(0)[1])
            continue
        if not events and elapsed >= window_s and (
                (_a_scheduled_run_completed(runs) and _promoted(soak.data))
                or elapsed >= window_s + SCHEDULE_WAIT_S):
            break
        busy = any(run_state(r)["type"] in IN_FLIGHT for r in runs)
        if not MINUTES and events and not busy:  # short: more runs than the schedule makes
            name = rng.choice(("retrain", "retrain", "validate"))
            soak.triggered.append(trigger(soak.port, soak.ids[name])["id"])
        time.sleep(2)
    ended = datetime.now(UTC).isoformat()

    def drained() -> bool:
        runs = soak.runs()
        soak.note_finished(runs)
        due = [r for r in runs if _at(r) <= _at(ended) or r["id"] in soak.triggered]
        return all(run_state(r)["type"] in FINAL for r in due)

    wait_for("every run due in the window to end", drained, DRAIN_S, poll=2, alive=soak.alive)
    return began, ended


def _stop(soak: Soak) -> None:
    family = soak.family()
    soak.proc.send_signal(signal.SIGINT)
    assert soak.proc.wait(timeout=120) == 0, soak.serve_log()
    _, alive = psutil.wait_procs(family, timeout=DIE_S)
    assert not alive, f"left running after cllm serve stopped: {_named(alive)}"
    assert not port_open(soak.port)


def _check_runs(soak: Soak, began: str, ended: str) -> dict[str, int]:
    """Every run scheduled in the window, and every one triggered, ended; each that did not
    complete says why."""
    runs = soak.runs()
    scheduled = [r for r in runs if r["auto_scheduled"] and _at(began) <= _at(r) <= _at(ended)]
    triggered = [r for r in runs if r["id"] in soak.triggered]
    assert len(triggered) == len(soak.triggered)
    counts: dict[str, int] = {}
    for run in scheduled + triggered:
        state = run_state(run)
        assert state["type"] in FINAL, f"{run['name']} was lost: {state['name']}"
        if state["type"] != "COMPLETED":
            assert state.get("message"), f"{run['name']} {state['name']} without a reason"
        counts[state["name"]] = counts.get(state["name"], 0) + 1
    assert _a_scheduled_run_completed(scheduled), f"no scheduled run completed: {counts}"
    counts["scheduled"], counts["triggered"] = len(scheduled), len(triggered)
    return counts


def _check_registry(data: Path) -> dict[str, int]:
    """`current` loads with the project's loader; it is the last promotion the log records;
    every promotion in the log is a whole model; the logs are whole JSON lines."""
    from flows.registry import Registry, read_jsonl
    from model.evaluate import default_checkpoint, load_model
    from pipeline.layout import DataRoot

    registry = Registry(DataRoot.at(data))
    record = registry.current()
    assert record is not None, "nothing was promoted"
    model, meta = load_model(default_checkpoint(registry.root))
    assert meta["step"] == record.step and sum(p.numel() for p in model.parameters()) > 0
    promoted = [d for d in registry.decisions() if d["promoted"]]
    assert promoted and promoted[-1]["model"] == record.id
    for decision in promoted:
        folder = registry.folder / decision["model"]
        assert (folder / "record.json").is_file() and (folder / "model.safetensors").is_file()
        load_model(folder)
    validations = read_jsonl(registry.validation_log)
    return {"promotions": len(promoted), "decisions": len(registry.decisions()),
            "validations": len(validations)}


def _check_memory(rss: list[dict[str, Any]]) -> None:
    """Within each serve process's life, its memory after the last run is within the bound
    of its memory after the first."""
    for serve in sorted({s["serve"] for s in rss}):
        mine = [s["rss_mb"] for s in rss if s["serve"] == serve]
        assert mine[-1] <= mine[0] * RSS_FACTOR + RSS_SLACK_MB, f"serve {serve}: {mine} MB"


def _write_results(result: dict[str, Any]) -> None:
    path = REPO / "bench" / "results" / "soak.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


@pytest.mark.timeout(int(MINUTES * 60) + 1200)  # the window, the starts, the drain
def test_soak_of_the_scheduled_service(tmp_path: Path, cli_env: dict[str, str]) -> None:
    from crawler.localsite import LocalSite

    rng = random.Random(SEED)
    window_s = MINUTES * 60 if MINUTES else SHORT_S
    port = free_port()
    with LocalSite(site_routes(FIRST_PAGES, seed=1)) as site:
        project = tmp_path / "project"
        write_config(project, urls=[site.url("/")], paths=[], extra=(
            f'\n[schedule]\nvalidate_cron = "* * * * *"\nretrain_cron = "* * * * *"\n'
            f"min_new_docs = 1\nserver_port = {port}\n"))
        soak = Soak(project=project, port=port, env=user_env(cli_env), site=site)
        soak.start_serve()
        try:
            second = subprocess.run([str(VENV_BIN / "cllm"), "serve"], cwd=project,
                                    env=soak.env, capture_output=True, text=True, timeout=START_S)
            assert second.returncode == 3 and "already running" in second.stderr, second.stderr
            began, ended = _soak(soak, rng, window_s)
            runs = _check_runs(soak, began, ended)
        finally:
            if soak.proc is not None and soak.proc.poll() is None:
                _stop(soak)
    registry = _check_registry(soak.data)
    _check_memory(soak.rss)
    result = {"minutes": round(window_s / 60, 1), "seed": SEED, "runs": runs,
              "registry": registry, "kills": soak.kills, "serve_up_at_s": soak.starts,
              "wall_s": soak.clock(),
              "pages": soak.pages, "rss_after_each_run": soak.rss,
              "rss_bound": f"last <= first x {RSS_FACTOR} + {RSS_SLACK_MB} MB per serve process",
              "date": datetime.now(UTC).isoformat(), "cpu": platform.processor() or
              platform.machine(), "cores": os.cpu_count()}
    print(json.dumps(result, indent=2))
    if MINUTES:
        _write_results(result)
