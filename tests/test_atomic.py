"""atomic_write: a reader sees the old file or the whole new one, even when the writer is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.atomic import atomic_write, atomic_write_json, is_temp_name, remove_orphan_temps

CHUNK = 64 * 1024
CHUNKS = 40

WRITER = textwrap.dedent(f"""
    import sys, time
    from pipeline.atomic import atomic_write
    path, marker = sys.argv[1], sys.argv[2]
    with atomic_write(path, "wb") as fh:
        for i in range({CHUNKS}):
            fh.write(bytes([65 + i % 26]) * {CHUNK})
            fh.flush()
            print(i, flush=True)
            time.sleep(0.01)
    print("done", flush=True)
    time.sleep(30)  # stay alive so the parent can kill after the rename too
""")


def expected_content() -> bytes:
    return b"".join(bytes([65 + i % 26]) * CHUNK for i in range(CHUNKS))


def _kill_after(path: Path, lines: int) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "x"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for _ in range(lines):
        if not proc.stdout.readline():
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("kill_after_lines", [1, 7, 20, 39, 41])
def test_sigkill_leaves_absent_or_complete(tmp_path: Path, kill_after_lines: int) -> None:
    target = tmp_path / "out.bin"
    _kill_after(target, kill_after_lines)
    if kill_after_lines > CHUNKS:  # killed after "done": the rename happened
        assert target.read_bytes() == expected_content()
    else:
        assert not target.exists()
    leftovers = [p for p in tmp_path.iterdir() if is_temp_name(p.name)]
    assert len(leftovers) == (0 if kill_after_lines > CHUNKS else 1)
    assert remove_orphan_temps(tmp_path) == len(leftovers)
    assert [p.name for p in tmp_path.iterdir()] == (["out.bin"] if target.exists() else [])


def test_sigkill_keeps_the_previous_version(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old version")
    _kill_after(target, 10)
    assert target.read_bytes() == b"old version"


def test_exception_inside_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as fh:
            fh.write("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    atomic_write_json(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'


def test_orphan_cleanup_spares_live_writers(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f".a.bin.{sleeper.pid}.abcd.tmp"
        live.write_bytes(b"x")
        dead_pid = _a_dead_pid()
        dead = tmp_path / f".b.bin.{dead_pid}.efgh.tmp"
        dead.write_bytes(b"x")
        assert remove_orphan_temps(tmp_path) == 1
        assert live.exists() and not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def _a_dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    time.sleep(0.05)
    return proc.pid


def test_sync_files_syncs_each_file_system_once_else_each_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.atomic as atomic

    files = []
    for n in range(6):
        folder = tmp_path / f"f{n % 3}"
        folder.mkdir(exist_ok=True)
        files.append(folder / f"{n}.bin")
        files[-1].write_bytes(b"x")
    synced: list[int] = []
    monkeypatch.setattr(atomic, "_SYNCFS", lambda fd: synced.append(fd) or 0)
    atomic.sync_files(files)
    assert len(synced) == 1  # one file system, one syncfs
    monkeypatch.setattr(atomic, "_SYNCFS", lambda fd: -1)
    with pytest.raises(OSError, match=str(files[0])):
        atomic.sync_files(files)
    fsynced: list[Path] = []
    monkeypatch.setattr(atomic, "_SYNCFS", None)  # not Linux: an fsync each
    monkeypatch.setattr(atomic, "fsync_path", fsynced.append)
    atomic.sync_files(files)
    assert fsynced == files
