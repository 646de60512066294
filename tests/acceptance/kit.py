"""What the acceptance tests share: a user's material (PDF manuals, a small web site on
127.0.0.1), a project folder with its cllm.toml, `cllm` run as a user runs it, and Prefect's
client to see what the scheduled runs did.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
WORDS = ("manual section chapter install configure server client request response table "
         "field value option default example command output error warning network storage "
         "backup restore schedule report user account permission module library function "
         "parameter return result version release update").split()

# A tiny model and small everything: each `cllm run` takes seconds, not minutes.
TINY_TOML = """
[crawl]
allow_private = true
delay_s = 0.0
autothrottle = false

[extract]
workers = 1

[clean]
min_chars = 50
min_words = 10

[tokenize]
vocab_size = 320
min_frequency = 1

[shards]
val_fraction = 0.5  # a few small documents: half in val, so val is never empty

[train]
n_layer = 1
n_head = 2
n_embd = 32
block_size = 32
batch_size = 8
max_steps = 40
warmup_steps = 5
lr = 0.01
min_lr = 0.001
eval_interval = 20
eval_iters = 2
save_interval = 20
device = "cpu"

[validate]
eval_iters = 4
batch_size = 4
canary_docs = 2
"""


def prose(seed: int, words: int = 200, vocabulary: tuple[str, ...] | list[str] = WORDS) -> str:
    """Sentences of random words: the same text for the same seed, every run."""
    rng = random.Random(seed)
    sentences = []
    while sum(len(s.split()) for s in sentences) < words:
        n = rng.randint(6, 14)
        sentences.append(" ".join(rng.choice(vocabulary) for _ in range(n)).capitalize() + ".")
    return " ".join(sentences)


def write_manuals(folder: Path, numbers: Iterable[int], pages: int = 2) -> list[Path]:
    """PDF "manuals" with a real text layer, made with PyMuPDF."""
    import pymupdf

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for n in numbers:
        doc = pymupdf.open()
        for p in range(pages):
            page = doc.new_page()
            page.insert_textbox(pymupdf.Rect(50, 50, 545, 790),
                                f"Manual {n}, page {p + 1}.\n\n" + prose(n * 100 + p, 180),
                                fontsize=10)
        path = folder / f"manual-{n:03d}.pdf"
        doc.save(path)
        doc.close()
        written.append(path)
    return written


def site_routes(n_pages: int, seed: int = 0, words: int = 80,
                vocabulary: tuple[str, ...] | list[str] = WORDS) -> dict[str, Any]:
    """A home page linking `n_pages` documents of three paragraphs each, with ETags."""
    from crawler.localsite import Page, html

    routes: dict[str, Any] = {}
    links = [f"/doc/{i}" for i in range(n_pages)]
    for i in range(n_pages):
        paras = "".join(f"<p>{prose(seed * 1000 + i * 10 + k, words, vocabulary)}</p>"
                        for k in range(3))
        body = (f"<!doctype html><html><head><title>Doc {i}</title></head><body>"
                f"<article><h1>Doc {i}</h1>{paras}</article></body></html>").encode()
        routes[f"/doc/{i}"] = Page(body=body, etag=f'"{seed}-{i}"')
    routes["/"] = Page(body=html("Home", links), etag=f'"home-{n_pages}"')
    routes["/robots.txt"] = Page(body=b"User-agent: *\nAllow: /\n", content_type="text/plain")
    return routes


def write_config(project: Path, *, urls: list[str], paths: list[str], extra: str = "") -> Path:
    project.mkdir(parents=True, exist_ok=True)
    sources = f"[sources]\nurls = {json.dumps(urls)}\npaths = {json.dumps(paths)}\n"
    config = project / "cllm.toml"
    config.write_text(sources + TINY_TOML + extra, encoding="utf-8")
    return config


def user_env(base: dict[str, str]) -> dict[str, str]:
    """A user's shell: no Prefect settings of the developer's, the venv's commands on PATH."""
    env = {k: v for k, v in base.items() if not k.startswith(("PREFECT_", "CLLM_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def cllm(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
         ) -> subprocess.CompletedProcess[str]:
    """`cllm ARGS` in `cwd`, as the installed command a user types."""
    return subprocess.run([str(VENV_BIN / "cllm"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


API_TRIES = 5  # a busy server answers 503 now and then: ask again


def api(port: int, path: str, body: dict[str, Any] | None = None) -> Any:
    """One call of the Prefect server's REST API (POST when there is a body)."""
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(API_TRIES):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/{path}", data=data,
                                     headers={"content-type": "application/json"},
                                     method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.load(resp)
        except OSError:  # urllib's HTTPError and URLError are OSErrors
            if attempt == API_TRIES - 1:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


def healthy(port: int) -> bool:
    req = f"http://127.0.0.1:{port}/api/health"
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.load(resp) is True
    except (OSError, ValueError):
        return False


def wait_for(what: str, check: Callable[[], Any], timeout: float, poll: float = 1.0,
             alive: Callable[[], None] | None = None) -> Any:
    """Poll `check` until it returns something true; fail naming `what` after `timeout`.

    A server that answers 503 or drops the connection while busy is asked again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            found = check()
        except (OSError, ValueError):  # urllib's HTTPError and URLError are OSErrors
            found = None
        if found:
            return found
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def deployments(port: int) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in api(port, "deployments/filter", {})}


def flow_runs(port: int, deployment_id: str) -> list[dict[str, Any]]:
    return api(port, "flow_runs/filter",
               {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}})


def trigger(port: int, deployment_id: str, parameters: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if parameters is not None:
        body["parameters"] = parameters
    return api(port, f"deployments/{deployment_id}/create_flow_run", body)


FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def run_state(run: dict[str, Any]) -> dict[str, Any]:
    """A flow run's state as the API gave it; an empty one (type and name None) for a run the
    server was deleting as it answered: a serve that starts again registers its deployments
    again and the server drops their future scheduled runs, and a filter reads the runs, then
    their states, so a run can go in between."""
    return run.get("state") or {"type": None, "name": None}


def final_state(port: int, flow_run_id: str) -> str | None:
    """The state a flow run ended in, or None while it has not ended."""
    state = run_state(api(port, f"flow_runs/{flow_run_id}"))
    return state["name"] if state["type"] in FINAL else None


def registry(root: Path) -> tuple[str | None, list[dict[str, Any]]]:
    """The promoted model's id and the registry's decisions."""
    record = root / "models" / "current" / "record.json"
    current = json.loads(record.read_text())["id"] if record.is_file() else None
    log = root / "models" / "decisions.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    return current, rows


def runs(root: Path) -> list[str]:
    folder = root / "runs"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def copy_project(project: Path, to: Path) -> Path:
    """A copy of a project folder (its data root's `models/current` link stays a link)."""
    import shutil

    shutil.copytree(project, to, symlinks=True)
    return to
