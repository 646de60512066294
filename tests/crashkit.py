"""Crash-and-resume harness: run a `cllm` stage as a subprocess, SIGKILL it at seeded points
of its work, run the same command again until it completes, and record what each kill left.

Kill points are placed by the stage's own progress, so that they fall in the work and not in
the imports: each stage names a measure of its committed work under a data root (sources
indexed, docs parts written, checkpoint step, ...). An uninterrupted run, sampled as it goes,
gives the measure's final value `total` and its units of work: each value the measure took
below `total` (from the stage taking its lock), with the time until the next one.
A round draws `kills` sorted units spread over all of them, one per stratum, the first unit
(before the first commit) and the last (after the last-but-one) always among them; run i
waits until the measure reaches its unit, then a seeded extra delay within that unit's time
(within its first half for the first and last units, which a slightly faster run would
otherwise leave before the kill), cut short when the unit ends (its next commit) so that the
kill does not overshoot it, and is killed: kills land between commits and on them. The run
after the last kill completes. A kill that finds all the work committed (it cut what follows
the last commit) goes straight to that run; a run that finishes before its kill ends the round
early. `crash_rounds` then starts a fresh round (on a fresh copy of the input) until
enough kills landed.

A kill is SIGKILL to the stage's process, and in "tree" mode to all its descendants at the
same moment (worker pools, the crawl's child process): the power-cut case. In "main" mode only
the stage's process dies, as `kill -9 PID` does, and what it started must end by itself. The
modes take turns over the kills that land (from a seeded first), so that each lands.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pipeline.atomic import is_temp_name

CLLM = [sys.executable, "-m", "flows.shell.cllm"]
POLL_S = 0.005
LOCK_WAIT_S = 120.0  # start-up of a stage on loaded shared cores (torch, Scrapy imports)
RUN_TIMEOUT_S = 300.0
LINGER_S = 15.0  # how long what a killed stage started may take to notice and end
KILL_MODES = ("tree", "main")


def cllm(root: Path, *args: str) -> list[str]:
    return [*CLLM, "--root", str(root), "-q", *args]


def lock_owner(lock_file: Path) -> str:
    """The pid a stage lock file names ('' when absent or being rewritten)."""
    try:
        return lock_file.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


@dataclass(slots=True)
class Stage:
    """How to run one stage on a data root, see it hold its lock, and measure its work."""

    name: str
    argv: Callable[[Path], list[str]]  # the command for a data root
    lock_file: Callable[[Path], Path]  # its stage lock under a data root
    progress: Callable[[Path], int]  # committed work under a data root (grows as it runs)
    after_kill: Callable[[Path, Kill], None] | None = None  # per-kill checks and notes
    modes: tuple[str, ...] = KILL_MODES  # how it may be killed
    # Whether the stage had recorded its work as complete (the kill hit its way out), for a
    # stage whose next run is then not a resume but new work (a crawl's next generation)
    finished: Callable[[Path], bool] | None = None


@dataclass(slots=True)
class Unit:
    """A unit of a stage's work, as an uninterrupted run did it."""

    start: int  # the progress measure when it began (at the lock, or a commit)
    seconds: float  # until the measure changed again


@dataclass(slots=True)
class Run:
    """One run of a stage to its end."""

    argv: list[str]
    returncode: int
    seconds: float  # launch to exit
    work_s: float  # lock taken to exit
    output: str  # stdout and stderr
    total: int = 0  # the stage's progress measure at the end
    units: list[Unit] = field(default_factory=list)  # its work, from the lock to the last commit


@dataclass(slots=True)
class Kill:
    round: int
    number: int  # within its round
    mode: str  # "tree" | "main"
    unit: int  # index of the unit of work it was aimed at
    target: int  # progress waited for
    delay_s: float  # extra wait after the target was reached
    progress: int = -1  # committed work when it died
    temps: list[str] = field(default_factory=list)  # temp files it left (the resume removes)
    note: str = ""  # what the stage's hook saw after the kill


@dataclass(slots=True)
class Round:
    number: int
    kills: list[Kill] = field(default_factory=list)
    runs: int = 0  # processes started, the completing one included


def _start(argv: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        # own session: whatever the harness leaves running can be found and stopped
        return subprocess.Popen(list(argv), env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_for(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str) -> bool:
    """Poll until `ready()`; False if the process exited first."""
    deadline = time.monotonic() + LOCK_WAIT_S + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if ready():
                return True
        except Exception:  # noqa: BLE001 - a file being replaced, a database being written
            pass
        if proc.poll() is not None:
            return False
        time.sleep(POLL_S)
    kill_tree(proc)
    raise AssertionError(f"{proc.args}: no {what} in {LOCK_WAIT_S + RUN_TIMEOUT_S} s")


def _holds_lock(lock_file: Path, before: str) -> Callable[[], bool]:
    return lambda: lock_owner(lock_file) not in ("", before)


def _progress(stage: Stage, root: Path) -> int | None:
    try:
        return stage.progress(root)
    except Exception:  # noqa: BLE001 - a file being replaced, a database being written
        return None


def _sample_units(proc: subprocess.Popen[bytes], stage: Stage, root: Path, locked: float,
                  deadline: float) -> list[Unit]:
    """Poll the stage's progress until it exits: the units of work it went through."""
    seen: list[tuple[int, float]] = []
    while proc.poll() is None:
        if time.monotonic() > deadline:
            kill_tree(proc)
            raise AssertionError(f"{proc.args} ran over its time")
        value = _progress(stage, root)
        if value is not None and (not seen or value > seen[-1][0]):
            seen.append((value, time.monotonic() - locked))
        time.sleep(POLL_S)
    ended = time.monotonic() - locked
    ends = [at for _, at in seen[1:]] + [ended]
    return [Unit(start=value, seconds=end - at) for (value, at), end in zip(seen, ends,
                                                                             strict=True)]


def run_to_end(stage: Stage, root: Path, env: dict[str, str], log: Path,
               timeout_s: float = RUN_TIMEOUT_S) -> Run:
    """Run the stage uninterrupted; measures its work time, units and final progress."""
    argv = stage.argv(root)
    lock_file = stage.lock_file(root)
    before = lock_owner(lock_file)
    started = time.monotonic()
    proc = _start(argv, env, log)
    locked = time.monotonic() if _wait_for(proc, _holds_lock(lock_file, before), "lock") \
        else started
    units = _sample_units(proc, stage, root, locked, started + LOCK_WAIT_S + timeout_s)
    ended = time.monotonic()
    total = stage.progress(root)
    if len(units) > 1 and units[-1].start == total:
        units.pop()  # from the final commit to the exit: no work left, the last unit ended
    return Run(argv=argv, returncode=proc.returncode, seconds=ended - started,
               work_s=ended - locked, output=log.read_text(encoding="utf-8", errors="replace"),
               total=total, units=units)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and everything it started (clean-up, not a test kill)."""
    rest = _descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    for p in rest:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait()


def _kill(proc: subprocess.Popen[bytes], mode: str) -> bool:
    """SIGKILL the stage (and in "tree" mode its descendants); True if it was still running.

    What is left running afterwards must end by itself within LINGER_S (a worker that outlives
    its parent could still write into the data root while the resumed run works there).
    """
    rest = _descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):  # it ended (and was reaped) already
        os.kill(proc.pid, signal.SIGKILL)  # first: the stage must not see its workers die
    if mode == "tree":
        for p in rest:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    proc.wait()
    _, alive = psutil.wait_procs(rest, timeout=LINGER_S)
    running = []
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.status() != psutil.STATUS_ZOMBIE:
                running.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
                p.kill()
    assert not running, f"still running {LINGER_S} s after the stage was killed: {running}"
    return proc.returncode == -signal.SIGKILL


def temp_files(root: Path) -> list[str]:
    """Temp files of pipeline.atomic anywhere under the data root (relative paths)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if is_temp_name(p.name) and p.is_file())


def aimed_units(rng: random.Random, units: int, kills: int) -> list[int]:
    """`kills` sorted unit indices, one from each of `kills` equal strata of the units, the
    first and the last unit always among them."""
    if kills == 1:
        return [rng.randrange(units)]
    strata = [(i * units // kills, max(i * units // kills + 1, (i + 1) * units // kills))
              for i in range(kills)]
    picks = [rng.randrange(lo, hi) for lo, hi in strata]
    picks[0], picks[-1] = 0, units - 1
    return picks


def _unit_of(units: Sequence[Unit], progress: int) -> int:
    """The index of the unit a progress value falls in."""
    return max((i for i, u in enumerate(units) if u.start <= progress), default=0)


def _sleep_in_unit(proc: subprocess.Popen[bytes], delay_s: float, ended: Callable[[], bool]
                   ) -> None:
    """Wait `delay_s`, or less if the unit ends first (its next commit) or the process exits:
    units run at other speeds than in the uninterrupted run (workers finish in another order,
    the machine is busier or less busy), and the kill must not overshoot its unit by far."""
    deadline = time.monotonic() + delay_s
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(Exception):  # a file being replaced: not ended yet
            if ended():
                return
        time.sleep(POLL_S)


def kill_and_resume(stage: Stage, root: Path, env: dict[str, str], reference: Run,
                    rng: random.Random, *, kills: int, number: int, log: Path,
                    landed_before: int = 0, first_mode: int = 0) -> Round:
    """One round on `root`: kill the stage at seeded points, then let the next run finish.

    Kill modes take turns over all landed kills (`landed_before` landed in earlier rounds).
    """
    result = Round(number=number)
    lock_file = stage.lock_file(root)
    units = reference.units or [Unit(start=0, seconds=reference.work_s)]
    last = len(units) - 1
    for n, aimed in enumerate(aimed_units(rng, len(units), kills)):
        mode = stage.modes[(first_mode + landed_before + len(result.kills)) % len(stage.modes)]
        delay = rng.uniform(0.0, units[aimed].seconds / (2 if aimed in (0, last) else 1))
        before = lock_owner(lock_file)
        # a resumed run starts where the last one stopped: when that is past the unit aimed
        # at, kill it in the unit it redoes (its wait then ends at once, its delay at the
        # unit's commit), never in one it has no work left in
        goal = max(aimed, _unit_of(units, stage.progress(root)))
        target = units[goal].start
        end = units[goal + 1].start if goal < last else reference.total
        proc = _start(stage.argv(root), env, log)
        result.runs += 1
        try:
            if _wait_for(proc, _holds_lock(lock_file, before), "lock") and _wait_for(
                    proc, lambda t=target: stage.progress(root) >= t, f"progress {target}"):
                _sleep_in_unit(proc, delay, lambda e=end: stage.progress(root) >= e)
            landed = _kill(proc, mode)
        except BaseException:
            kill_tree(proc)
            raise
        if not landed:  # it finished first: this round's remaining kills cannot land
            assert proc.returncode == 0, f"{stage.name} failed; log: {log}"
            return result
        kill = Kill(round=number, number=n, mode=mode, unit=goal, target=target,
                    delay_s=delay, progress=stage.progress(root), temps=temp_files(root))
        if stage.after_kill is not None:
            stage.after_kill(root, kill)
        result.kills.append(kill)
        if stage.finished is not None and stage.finished(root):
            kill.note = "after its work was complete"
            return result
        if kill.progress >= reference.total:
            # all its work committed, what follows it (an export, the summary) cut: the next
            # run must finish that; more kills would only cut runs with nothing left to do
            kill.note = "after its last commit"
            break
    final = run_to_end(stage, root, env, log)
    result.runs += 1
    assert final.returncode == 0, f"{stage.name} resume failed; log: {log}"
    return result


def crash_rounds(stage: Stage, fresh_root: Callable[[int], Path], env: dict[str, str],
                 reference: Run, seed: int, *, kills: int, max_rounds: int, log_dir: Path,
                 check: Callable[[Path], None], rounds: list[Round] | None = None
                 ) -> list[Round]:
    """Rounds of kill_and_resume, each on a fresh copy of the input, until `kills` landed.

    `check(root)` compares a round's completed outputs with the uninterrupted run's. The rounds
    are appended to `rounds` when given (what a failing run did stays readable).
    """
    rng = random.Random(seed)
    first_mode = rng.randrange(len(stage.modes))
    rounds = [] if rounds is None else rounds
    while landed_kills(rounds) < kills and len(rounds) < max_rounds:
        number = len(rounds)
        root = fresh_root(number)
        done = kill_and_resume(stage, root, env, reference, rng, kills=kills, number=number,
                               log=log_dir / f"{stage.name}-round{number}.log",
                               landed_before=landed_kills(rounds), first_mode=first_mode)
        rounds.append(done)
        check(root)
    landed = landed_kills(rounds)
    assert landed >= kills, f"{stage.name}: only {landed} of {kills} kills landed"
    assert_spread(stage, reference, rounds, kills)
    return rounds


def landed_kills(rounds: Sequence[Round]) -> int:
    return sum(len(r.kills) for r in rounds)


def assert_spread(stage: Stage, reference: Run, rounds: Sequence[Round], kills: int) -> None:
    """Each kill mode landed (given kills enough for all), and so did kills aimed at the first
    unit of the work (before its first commit) and at its last (after its last-but-one)."""
    landed = [k for r in rounds for k in r.kills]
    if kills >= len(stage.modes):
        modes = {k.mode for k in landed}
        assert modes == set(stage.modes), f"{stage.name}: only {sorted(modes)} kills landed"
    if kills >= 2 and len(reference.units) >= 2:
        # aimed there: waiting for the lock alone, and cut short at the first commit seen; on
        # a fast stage (ingest: ms a unit) the poll and the kill may still come a few later
        assert any(k.unit == 0 for k in landed), \
            f"{stage.name}: no kill landed in the first unit of the work"
        assert any(k.unit == len(reference.units) - 1 for k in landed), \
            f"{stage.name}: no kill landed in the last unit of the work"


def mid_work(rounds: Sequence[Round], total: int) -> list[Kill]:
    """Kills that fell after some work was committed and before all of it was."""
    return [k for r in rounds for k in r.kills if 0 < k.progress < total]


def describe(stage: str, reference: Run, rounds: Sequence[Round]) -> str:
    """Where the kills fell: one line per round."""
    total = reference.total
    lines = [f"{stage}: uninterrupted {reference.seconds:.2f} s (work {reference.work_s:.2f} s,"
             f" progress {total}, {len(reference.units)} units); {landed_kills(rounds)} kills, "
             f"{len(mid_work(rounds, total))} mid-work, {sum(r.runs for r in rounds)} runs"]
    for r in rounds:
        kills = []
        for k in r.kills:
            text = f"{k.mode}@{k.progress}/{total} (unit {k.unit})"
            if k.temps:
                text += f" +{len(k.temps)} temp"
            if k.note:
                text += f" ({k.note})"
            kills.append(text)
        lines.append(f"  round {r.number}: {'; '.join(kills)}")
    return "\n".join(lines)


KILL_AFTER = """
import importlib, os, signal, sys
module, name = sys.argv[1].split(":")
target = importlib.import_module(module)
real = getattr(target, name)

def killed_after(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

setattr(target, name, killed_after)
from flows.shell.cllm import main
sys.exit(main(sys.argv[2:]))
"""


def killed_after(function: str, argv: Sequence[str], env: dict[str, str]
                 ) -> subprocess.CompletedProcess[str]:
    """Run `cllm argv` and SIGKILL it the moment `function` ("module:name", looked up as a
    module global at its call) returns: a kill at an exact point, for windows too narrow for
    random kills to find often."""
    cllm_args = list(argv)[len(CLLM):] if list(argv)[:len(CLLM)] == CLLM else list(argv)
    done = subprocess.run([sys.executable, "-c", KILL_AFTER, function, *cllm_args], env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == -signal.SIGKILL, f"{function} was not reached: {done.stderr}"
    return done
