"""Crash and resume, stage by stage: every `cllm` stage (ingest, crawl, extract, tokenize, train)
is SIGKILLed at seeded points of its work, at least KILLS times, run again until it completes,
and must then hold what an uninterrupted run of the same command holds.

What "the same" means follows each stage's design:
- ingest: the same blobs (bytes under the same names) and index rows (sources by path: kind,
  status, sha256, mime, size, mtime; blobs by sha256), the same failure rows;
- crawl: the same stored URLs with the same content, blobs and failure rows; no URL fetched
  again once it was listed in fetched.txt and stored (crawler/README.md "Resume and
  re-crawl"), none more than once per run that had it in flight;
- extract: the same document ids, each exactly once across all parts (parts may group and
  order documents differently: workers finish in any order), the same records (all fields but
  created_at and the timing in stats), the same failure rows;
- tokenize: shards and tokenizer byte for byte, the same manifest (but updated_at), the same
  cleaned parts and dedup decisions;
- train: the same rows in metrics.jsonl (step, loss, lr, grad norm, tokens, val loss: exact
  floats; not the timings), the same checkpoints (names, weights, optimizer state, step).
And for all: the same set of files (nothing orphaned, e.g. a stage's scratch), no temp file
of pipeline.atomic anywhere, every file readable whole (no half file under a real name), no
duplicate rows, no process of a killed run left running.

Each stage's kills take in both kill modes and spread over all of its work, the first unit
(before its first commit) and the last (after its last-but-one) included (crashkit.py).

Run with `-s` to see where the kills fell; `CLLM_CRASH_SEED` picks other kill points and
`CLLM_CRASH_KILLS` more of them. The many-kill run, `CLLM_CRASH_KILLS=25 CLLM_CRASH_SEED=2`
(about 8 minutes on a quiet machine), writes its record to bench/results/crash_resume.json,
or to `CLLM_CRASH_RECORD` when set (which also makes a default run write one): per stage the
kills that landed by mode and by where they fell, the runs, the seed and the outcome.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from crashkit import (
    Kill,
    Round,
    Run,
    Stage,
    Unit,
    cllm,
    crash_rounds,
    describe,
    killed_after,
    mid_work,
    run_to_end,
    temp_files,
)
from formatkit import mail, mbox_bytes, zip_bytes
from test_docproc_samples import page_texts, sentences, text_pdf_bytes

from crawler.job import JobDir
from crawler.localsite import LocalSite, Page, html
from crawler.run import make_seeds
from pipeline.config import build_config
from pipeline.docstore import PART_RE, list_parts, read_part, write_part
from pipeline.failures import FailureLog
from pipeline.layout import DataRoot
from pipeline.records import Document

KILLS = int(os.environ.get("CLLM_CRASH_KILLS", "5"))  # per stage, at least
MAX_ROUNDS = 3  # fresh starts allowed when runs outpace their kill points
MID_WORK = KILLS // 2 + 1  # kills that must fall after some work was committed, before all
SEED = int(os.environ.get("CLLM_CRASH_SEED", "20240808"))
VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
# where a run's record goes: none for the default run, unless asked for
RECORD = os.environ.get("CLLM_CRASH_RECORD") or (
    str(REPO / "bench" / "results" / "crash_resume.json")
    if "CLLM_CRASH_KILLS" in os.environ else "")

EXTRACT_ARGS = ["extract", "--workers", "2", "--set", "extract.part_docs=6"]
# the language filter on (the documents are English: identified, kept, `lang` written), and
# decontamination (`evals`: one document goes)
TOKENIZE_ARGS = ["tokenize", "--vocab-size", "400", "--shard-tokens", "1024",
                 "--val-fraction", "0.2", "--set", 'clean.languages=["en"]']
TRAIN_SETTINGS = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "batch_size": 8,
                  "max_steps": 40, "warmup_steps": 4, "save_interval": 4, "eval_interval": 10,
                  "eval_iters": 2, "keep_last": 2}
TRAIN_ARGS = ["train", "--run", "crash", "--resume", "--device", "cpu", "--threads", "1",
              *(f"--set=train.{k}={v}" for k, v in TRAIN_SETTINGS.items())]
CRAWL_PAGES = 40

pytestmark = pytest.mark.slow  # every test but one runs `cllm` stages as processes, many times


# --- the inputs: files to ingest, and a site to crawl --------------------------------------


def make_inputs(folder: Path) -> None:
    """Text PDFs, HTML pages and text files in two folders, two duplicates, and three files
    that fail: an empty one, an unsupported one (ingest), a corrupt PDF (extract)."""
    rng = random.Random(7)
    for i in range(24):
        write(folder / "pdf" / f"doc{i:02d}.pdf", text_pdf_bytes(page_texts(1, seed=10 * i)))
    for i in range(30):
        body = "".join(f"<p>{sentences(1000 + 10 * i + k, 60)}</p>" for k in range(3))
        write(folder / "web" / f"page{i:02d}.html",
              f"<!doctype html><html><head><title>Page {i}</title></head><body><h1>Page {i}"
              f"</h1>{body}</body></html>".encode())
    for i in range(30):
        write(folder / "notes" / f"note{i:02d}.txt",
              "\n\n".join(sentences(5000 + 10 * i + k, 70) for k in range(3)).encode())
    write(folder / "notes" / "copy-of-note03.txt", (folder / "notes" / "note03.txt").read_bytes())
    write(folder / "pdf" / "copy-of-doc05.pdf", (folder / "pdf" / "doc05.pdf").read_bytes())
    write(folder / "bad" / "empty.txt", b"")
    write(folder / "bad" / "blob.bin", bytes(rng.randrange(256) for _ in range(4096)))
    write(folder / "bad" / "corrupt.pdf", b"%PDF-1.4\n" + rng.randbytes(3000))
    # an archive and a mailbox: several documents (and a member's failure) from one blob
    members = {f"notes/zipped{i}.txt": sentences(7000 + i, 70).encode() for i in range(3)}
    write(folder / "bundle.zip", zip_bytes({**members, "bad.pdf": b"%PDF-1.4\n" + bytes(999)}))
    write(folder / "board.mbox", mbox_bytes([mail(f"Minutes {i}", sentences(8000 + i, 70))
                                             for i in range(2)], folder))


def evals(inputs: Path) -> Path:
    """Evaluation text beside the inputs, sharing 20 words with note07.txt's second paragraph
    (so the clean stage drops note07 as contaminated)."""
    path = inputs.with_name(inputs.name + "-evals") / "eval.jsonl"
    if not path.is_file():
        words = sentences(5000 + 10 * 7 + 1, 70).split()[10:30]
        write(path, (json.dumps({"text": " ".join(words)}) + "\n").encode())
    return path


def tokenize_args(inputs: Path) -> list[str]:
    return [*TOKENIZE_ARGS, "--set", f'clean.decontaminate=["{evals(inputs)}"]']


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def crawl_site() -> dict[str, Page]:
    """A site whose pages link forwards and back, with a little server time per page (so the
    crawl has work to kill), a PDF and a broken link (a failure row)."""
    n = CRAWL_PAGES
    routes: dict[str, Page] = {
        "/": Page(body=html("Home", [f"/p/{i}" for i in range(0, n, 5)])),
        "/robots.txt": Page(body=b"User-agent: *\nAllow: /\n", content_type="text/plain"),
        "/report.pdf": Page(body=text_pdf_bytes(page_texts(1, seed=77)),
                            content_type="application/pdf"),
    }
    for i in range(n):
        links = [f"/p/{(i + 1) % n}", f"/p/{(i * 7 + 3) % n}", "/"]
        if i == 3:
            links += ["/report.pdf", "/missing"]
        routes[f"/p/{i}"] = Page(body=html(f"Page {i}", links, sentences(9000 + i, 80)),
                                 delay_s=0.03)
    return routes


# --- the stages ----------------------------------------------------------------------------


def stage_lock(*parts: str) -> Callable[[Path], Path]:
    return lambda root: root.joinpath(*parts)


def crawl_lock(url: str) -> Callable[[Path], Path]:
    job = make_seeds([url], build_config([]).crawl).job
    return lambda root: JobDir(DataRoot.at(root), job).path / ".crawl.lock"


def stages(inputs: Path, site_url: str = "") -> dict[str, Stage]:
    return {
        "ingest": Stage("ingest", lambda root: cllm(root, "ingest", str(inputs)),
                        stage_lock("raw", ".ingest.lock"), progress=sources_stored),
        "extract": Stage("extract", lambda root: cllm(root, *EXTRACT_ARGS),
                         stage_lock("docs", ".extract.lock"), progress=parts_written),
        "tokenize": Stage("tokenize", lambda root: cllm(root, *tokenize_args(inputs)),
                          stage_lock("shards", ".tokenize.lock"), progress=tokenize_steps),
        "train": Stage("train", lambda root: cllm(root, *TRAIN_ARGS),
                       stage_lock("runs", "crash", ".train.lock"), progress=checkpoint_step),
        "crawl": Stage("crawl", lambda root: cllm(
            root, "crawl", site_url, "--allow-private", "--delay", "0", "--concurrency", "2"),
                       crawl_lock(site_url or "http://127.0.0.1/"), progress=sources_stored,
                       # the parent alone killed, the crawl process stops gracefully (or
                       # finishes): a test of its own below
                       modes=("tree",), finished=crawl_finished),
    }


# --- how far a stage got: its committed work, which places the kills and records them ------


def sources_stored(root: Path) -> int:
    index = root / "raw" / "index.sqlite"
    if not index.is_file():
        return 0
    with contextlib.closing(sqlite3.connect(index)) as db:
        return db.execute("SELECT COUNT(*) FROM sources").fetchone()[0]


def crawl_finished(root: Path) -> bool:
    """The job says its generation finished: the next run would crawl the next one."""
    jobs = list((root / "state" / "crawl").glob("*/job.json"))
    return bool(jobs) and json.loads(jobs[0].read_text(encoding="utf-8"))["status"] == "finished"


def parts_written(root: Path) -> int:
    return len(list_parts(root / "docs"))


def tokenize_steps(root: Path) -> int:
    """Parts cleaned, the tokenizer, parts encoded (or in shards), the manifest."""
    clean = list_parts(root / "state" / "clean")
    committed = (root / "shards" / "manifest.json").is_file()
    encoded = len(clean) if committed else len(list((root / "state" / "tokenize").glob("*.json")))
    return len(clean) + (root / "tokenizer" / "train.json").is_file() + encoded + committed


def checkpoint_step(root: Path) -> int:
    steps = [int(p.stem.split("-")[1]) for p in
             (root / "runs" / "crash" / "checkpoints").glob("step-*.pt")]
    return max(steps, default=0)


CHAIN = ("ingest", "extract", "tokenize", "train")


@dataclass
class Chain:
    """Uninterrupted runs of ingest -> extract -> tokenize -> train, each on a copy of the
    previous one's output, made once per module as the stages' inputs are asked for."""

    base: Path
    env: dict[str, str]
    inputs: Path
    after: dict[str, Path] = field(default_factory=dict)  # data root after each stage
    runs: dict[str, Run] = field(default_factory=dict)

    def before(self, stage: str) -> Path:
        i = CHAIN.index(stage)
        if i == 0:
            empty = self.base / "empty"
            empty.mkdir(exist_ok=True)
            return empty
        return self.reference(CHAIN[i - 1])

    def reference(self, stage: str) -> Path:
        if stage not in self.after:
            root = copy_root(self.before(stage), self.base / f"{stage}-reference")
            run = run_to_end(stages(self.inputs)[stage], root, self.env,
                             self.base / f"{stage}-reference.log")
            assert run.returncode == 0, run.output
            assert temp_files(root) == []
            self.after[stage], self.runs[stage] = root, run
        return self.after[stage]


def copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def isolated_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLLM_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    base = tmp_path_factory.mktemp("crash")
    make_inputs(base / "inputs")
    return Chain(base=base, env=isolated_env(), inputs=base / "inputs")


def survive_kills(chain: Chain, stage: str, tmp_path: Path,
                  same: Callable[[Path, Path], None]) -> list[Round]:
    reference = chain.reference(stage)
    rounds: list[Round] = []
    seed = SEED + CHAIN.index(stage)
    with recorded(stage, chain.runs[stage], rounds, seed):
        crash_rounds(
            stages(chain.inputs)[stage],
            lambda n: copy_root(chain.before(stage), tmp_path / f"round{n}"),
            chain.env, chain.runs[stage], seed, kills=KILLS, max_rounds=MAX_ROUNDS,
            log_dir=tmp_path, check=lambda root: same(reference, root), rounds=rounds)
        print("\n" + describe(stage, chain.runs[stage], rounds))
        assert len(mid_work(rounds, chain.runs[stage].total)) >= MID_WORK
    return rounds


@contextlib.contextmanager
def recorded(stage: str, reference: Run, rounds: list[Round], seed: int):
    """Write the stage's entry in the run's record (RECORD), whatever the outcome."""
    outcome = "held"
    try:
        yield
    except BaseException as exc:
        outcome = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
        raise
    finally:
        if RECORD:
            write_record(Path(RECORD), stage, record_entry(reference, rounds, seed, outcome))


def record_entry(reference: Run, rounds: list[Round], seed: int, outcome: str
                 ) -> dict[str, Any]:
    kills = [k for r in rounds for k in r.kills]
    total, units = reference.total, reference.units
    return {
        "kills": len(kills), "kills_asked": KILLS, "seed": seed, "outcome": outcome,
        "modes": dict(Counter(k.mode for k in kills)),
        "mid_work": len(mid_work(rounds, total)),
        "first_unit": sum(k.unit == 0 for k in kills),
        "before_first_commit": sum(k.unit == 0 and k.progress < units[1].start for k in kills)
        if len(units) > 1 else 0,
        "last_unit": sum(k.unit == len(units) - 1 for k in kills),
        "after_complete": sum(k.progress >= total for k in kills),
        "rounds": len(rounds), "runs": sum(r.runs for r in rounds),
        "progress_total": total, "units": len(units),
        "uninterrupted_s": round(reference.seconds, 2),
        "where": [f"{k.mode}@{k.progress}/{total}" for k in kills],
    }


def write_record(path: Path, stage: str, entry: dict[str, Any]) -> None:
    """Merge one stage's entry into the record file (each test adds its own)."""
    from importlib.metadata import version

    from pipeline.atomic import atomic_write

    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    record.update(command=f"CLLM_CRASH_KILLS={KILLS} CLLM_CRASH_SEED={SEED} "
                          "python -m pytest tests/test_crash_resume.py",
                  kills_per_stage=KILLS, seed=SEED, cpu=cpu_model(), cpus=os.cpu_count(),
                  versions={"python": sys.version.split()[0],
                            **{name: version(name) for name in ("torch", "scrapy", "pymupdf")}})
    entry["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record.setdefault("stages", {})[stage] = entry
    record["total_kills"] = sum(e["kills"] for e in record["stages"].values())
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as fh:
        fh.write(json.dumps(record, indent=2, sort_keys=True) + "\n")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


# --- what every stage must leave -----------------------------------------------------------

# files whose presence depends on how a process ended, not on what the stage produced
VOLATILE = ("-wal", "-shm", "-journal")


def files_under(root: Path, skip: tuple[str, ...] = ()) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and not p.name.endswith(VOLATILE)
            and not any(str(p.relative_to(root)).startswith(s) for s in skip)}


def assert_whole(root: Path) -> None:
    """Every file under a real name reads whole: JSON, JSONL, zstd parts, SQLite; no temps."""
    assert temp_files(root) == []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                json.loads(line)
        elif PART_RE.match(path.name):
            list(read_part(path))
        elif path.suffix == ".sqlite":
            with contextlib.closing(sqlite3.connect(path)) as db:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",), path


def assert_same_files(reference: Path, resumed: Path, skip: tuple[str, ...] = ()) -> None:
    assert_whole(resumed)
    ours, theirs = files_under(resumed, skip), files_under(reference, skip)
    assert ours == theirs, (f"only after kills: {sorted(ours - theirs)}; "
                            f"only uninterrupted: {sorted(theirs - ours)}")


def failure_rows(path: Path) -> list[tuple[str, ...]]:
    """Failure rows without their time, sorted; one per (stage, source, sha256) at most."""
    rows = sorted((f.stage, f.source, f.sha256, f.error, f.message)
                  for f in FailureLog(path).read())
    assert len(rows) == len({row[:3] for row in rows}), f"duplicate rows in {path}"
    return rows


def sqlite_rows(path: Path, skip_columns: set[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted (a multiset: duplicates show), without `skip_columns`."""
    out = {}
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")
                    if r[1] not in skip_columns]
            rows = db.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
            out[table] = sorted(rows, key=repr)
    return out


def is_lock(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".lock")  # they hold a pid


def file_bytes(root: Path, folder: str) -> dict[str, str]:
    """sha256 of each file under `folder` (locks aside), by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / folder).rglob("*")) if p.is_file() and not is_lock(p)}


def raw_store(root: Path) -> dict[str, Any]:
    """Blob files (checked against their names) and index rows, without times."""
    blobs = {}
    for path in (root / "raw").glob("??/*"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.stem == digest, f"{path} holds other bytes than its name says"
        blobs[str(path.relative_to(root))] = digest
    rows = sqlite_rows(root / "raw" / "index.sqlite",
                       skip_columns={"fetched_at", "stored_at", "depth", "referrer"})
    listed = {sha for sha, *_ in rows["blobs"]}
    assert listed == {Path(p).stem for p in blobs}, "blob rows and blob files differ"
    sources = [r[0] for r in rows["sources"]]
    assert len(sources) == len(set(sources))
    return {"blobs": blobs, "rows": rows,
            "failures": failure_rows(root / "raw" / "failures.jsonl")}


# --- ingest --------------------------------------------------------------------------------


def same_ingest(reference: Path, resumed: Path) -> None:
    assert_same_files(reference, resumed)
    assert raw_store(resumed) == raw_store(reference)


def test_ingest_killed_anywhere_resumes_to_the_same_raw_store(chain: Chain, tmp_path: Path
                                                              ) -> None:
    survive_kills(chain, "ingest", tmp_path, same_ingest)
    store = raw_store(chain.reference("ingest"))
    statuses = Counter(row[2] for row in store["rows"]["sources"])
    assert statuses == {"stored": 87, "duplicate": 2}  # what the comparison stood on
    assert {row[3] for row in store["failures"]} == {"empty", "unsupported"}


# --- extract -------------------------------------------------------------------------------


def documents(root: Path) -> dict[str, dict[str, Any]]:
    """Every document by id (each must appear once in all parts), without times."""
    seen: Counter[str] = Counter()
    out = {}
    for part in list_parts(root / "docs"):
        for doc in read_part(part):
            seen[doc.id] += 1
            record = doc.to_dict()
            record.pop("created_at")
            record["stats"].pop("seconds", None)
            out[doc.id] = record
    assert [i for i, n in seen.items() if n > 1] == [], "documents in more than one part"
    return out


def same_extract(reference: Path, resumed: Path) -> None:
    assert_whole(resumed)
    assert documents(resumed) == documents(reference)
    assert failure_rows(resumed / "docs" / "failures.jsonl") == \
        failure_rows(reference / "docs" / "failures.jsonl")
    # parts are numbered as they are written: a killed run's parts hold other groupings
    skip = ("docs/part-",)
    assert_same_files(reference, resumed, skip)


def test_extract_killed_anywhere_resumes_to_the_same_documents(chain: Chain, tmp_path: Path
                                                               ) -> None:
    survive_kills(chain, "extract", tmp_path, same_extract)
    docs = documents(chain.reference("extract"))
    # 84 files, 3 archive members, 2 mails
    assert len(docs) == 89 and len(list_parts(chain.reference("extract") / "docs")) >= 10
    failures = failure_rows(chain.reference("extract") / "docs" / "failures.jsonl")
    assert sorted((Path(f[1]).name, f[3]) for f in failures) == [
        ("bundle.zip!bad.pdf", "corrupt"), ("corrupt.pdf", "corrupt")]


# --- tokenize ------------------------------------------------------------------------------


def manifest(root: Path) -> dict[str, Any]:
    data = json.loads((root / "shards" / "manifest.json").read_text(encoding="utf-8"))
    data.pop("updated_at")
    return data


def cleaned(root: Path) -> dict[str, list[dict[str, Any]]]:
    return {p.name: [d.to_dict() for d in read_part(p)]
            for p in list_parts(root / "state" / "clean")}


def same_tokenize(reference: Path, resumed: Path) -> None:
    assert_same_files(reference, resumed)
    shards = {k: v for k, v in file_bytes(resumed, "shards").items()
              if not k.endswith("manifest.json")}
    assert shards == {k: v for k, v in file_bytes(reference, "shards").items()
                      if not k.endswith("manifest.json")}
    assert manifest(resumed) == manifest(reference)
    assert file_bytes(resumed, "tokenizer") == file_bytes(reference, "tokenizer")
    assert cleaned(resumed) == cleaned(reference)
    assert sqlite_rows(resumed / "state" / "dedup.sqlite", {"done_at"}) == \
        sqlite_rows(reference / "state" / "dedup.sqlite", {"done_at"})


def test_tokenize_killed_anywhere_resumes_to_the_same_shards(chain: Chain, tmp_path: Path
                                                             ) -> None:
    survive_kills(chain, "tokenize", tmp_path, same_tokenize)
    totals = manifest(chain.reference("tokenize"))["totals"]
    assert totals["train"]["shards"] >= 3 and totals["val"]["docs"] > 0
    kept = [d for part in cleaned(chain.reference("tokenize")).values() for d in part]
    assert kept and all(d["lang"] == "en" and d["stats"]["lang_score"] > 0.5 for d in kept)
    assert not any(d["source"].endswith("note07.txt") for d in kept)  # contaminated


def test_tokenize_killed_right_after_its_commit_leaves_no_spools(tmp_path: Path) -> None:
    """The window between the manifest commit and the removal of the encoded spools is too
    narrow for random kills to find often; a kill there used to leave the spools forever."""
    env = isolated_env()
    root = tmp_path / "killed"
    docs = [Document(id=hashlib.sha256(b"%d" % i).hexdigest(), source=f"doc{i}.txt",
                     mime="text/plain", text=sentences(300 + i, 90)) for i in range(12)]
    for first in range(0, len(docs), 4):
        write_part(root / "docs", docs[first:first + 4])
    reference = copy_root(root, tmp_path / "reference")
    assert run_to_end(stages(tmp_path)["tokenize"], reference, env,
                      tmp_path / "reference.log").returncode == 0

    killed_after("pipeline.tokenization:_commit", cllm(root, *tokenize_args(tmp_path)), env)
    assert list((root / "state" / "tokenize").iterdir()), "the kill came after the clean-up"
    assert run_to_end(stages(tmp_path)["tokenize"], root, env,
                      tmp_path / "resumed.log").returncode == 0
    same_tokenize(reference, root)
    assert list((root / "state" / "tokenize").iterdir()) == []


# --- train ---------------------------------------------------------------------------------

METRIC_KEYS = ("step", "loss", "lr", "grad_norm", "tokens", "val_loss", "val_ppl", "event")


def metrics(root: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in
            (root / "runs" / "crash" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return [{k: r[k] for k in METRIC_KEYS if k in r} for r in rows]


def checkpoint(path: Path) -> dict[str, Any]:
    from model.checkpoint import load_checkpoint

    return load_checkpoint(path)


def assert_same_state(a: Any, b: Any, where: str) -> None:
    """Tensors equal bit for bit, everything else equal, recursively."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# What a checkpoint holds that a resumed run must reproduce exactly.
RESUMED_STATE = ("model", "optimizer", "step", "tokens_seen", "rng", "data", "early_stop",
                 "val_loss")


def same_train(reference: Path, resumed: Path) -> None:
    assert_same_files(reference, resumed)
    ours, theirs = metrics(resumed), metrics(reference)
    steps = [r["step"] for r in ours if "event" not in r]
    assert steps == sorted(set(steps)), "steps logged twice or out of order"
    assert ours == theirs
    run = reference / "runs" / "crash"
    for path in sorted(run.rglob("*.pt")):
        a, b = checkpoint(resumed / path.relative_to(reference)), checkpoint(path)
        for key in RESUMED_STATE:
            assert_same_state(a[key], b[key], f"{path.name}:{key}")
    export = Path("runs") / "crash" / "model.safetensors"
    assert safetensors(resumed / export) == safetensors(reference / export)


def safetensors(path: Path) -> tuple[dict[str, str], dict[str, bytes]]:
    """Metadata and tensor bytes (the file's bytes are not reproducible: safetensors writes
    the metadata in hash order)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        tensors = {k: fh.get_tensor(k).numpy().tobytes() for k in fh.keys()}  # noqa: SIM118
        return fh.metadata(), tensors


def test_train_killed_anywhere_resumes_to_the_same_losses_and_weights(
        chain: Chain, tmp_path: Path) -> None:
    survive_kills(chain, "train", tmp_path, same_train)
    rows = metrics(chain.reference("train"))
    assert [r["step"] for r in rows if "event" not in r] == list(range(1, 41))
    assert rows[-1]["loss"] < rows[0]["loss"]


# --- crawl ---------------------------------------------------------------------------------


@dataclass
class FetchWatch:
    """What the site served, and what each kill left stored (never to be fetched again)."""

    site: LocalSite
    start: int = 0  # requests before this round
    stored_at_kill: list[tuple[int, set[str]]] = field(default_factory=list)

    def after_kill(self, root: Path, kill: Kill) -> None:
        fetched = fetched_urls(root)
        with contextlib.closing(sqlite3.connect(root / "raw" / "index.sqlite")) as db:
            rows = {r[0] for r in db.execute("SELECT source FROM sources")}
        stored = {u.removeprefix(self.site.url("")) for u in fetched & rows}
        self.stored_at_kill.append((len(self.site.requests), stored))

    def new_round(self) -> None:
        self.start = len(self.site.requests)
        self.stored_at_kill = []

    def check(self) -> None:
        for at, stored in self.stored_at_kill:
            again = sorted({path for path, _ in self.site.requests[at:]} & stored)
            assert again == [], f"fetched again after being stored before a kill: {again}"
        paths = Counter(path for path, _ in self.site.requests[self.start:]
                        if path != "/robots.txt")
        limit = 1 + len(self.stored_at_kill)  # once, plus once per run that had it in flight
        assert [p for p, n in paths.items() if n > limit] == []


def fetched_urls(root: Path) -> set[str]:
    logs = list((root / "state" / "crawl").glob("*/fetched.txt"))
    if not logs:
        return set()
    lines = logs[0].read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(set(lines)), "a URL listed twice in fetched.txt"
    return set(lines)


def same_crawl(reference: Path, resumed: Path) -> None:
    # Scrapy's JOBDIR and the refused log are the job's scratch (rebuilt after a kill)
    skip = ("state/crawl/",)
    assert_same_files(reference, resumed, skip)
    assert raw_store(resumed) == raw_store(reference)
    assert fetched_urls(resumed) == fetched_urls(reference)
    for root in (resumed, reference):
        (job,) = (root / "state" / "crawl").glob("*/job.json")
        assert json.loads(job.read_text())["status"] == "finished"


def test_crawl_killed_anywhere_resumes_without_refetching(tmp_path: Path) -> None:
    env = isolated_env()
    empty = tmp_path / "empty"
    empty.mkdir()
    with LocalSite(crawl_site()) as site:
        stage = stages(tmp_path, site.url("/"))["crawl"]
        reference = copy_root(empty, tmp_path / "reference")
        run = run_to_end(stage, reference, env, tmp_path / "reference.log")
        assert run.returncode == 0, run.output
        watch = FetchWatch(site)
        stage.after_kill = watch.after_kill

        def fresh(n: int) -> Path:
            watch.new_round()
            return copy_root(empty, tmp_path / f"round{n}")

        def check(root: Path) -> None:
            watch.check()
            same_crawl(reference, root)

        rounds: list[Round] = []
        with recorded("crawl", run, rounds, SEED + 10):
            crash_rounds(stage, fresh, env, run, SEED + 10, kills=KILLS,
                         max_rounds=MAX_ROUNDS, log_dir=tmp_path, check=check, rounds=rounds)
            print("\n" + describe("crawl", run, rounds))
            assert len(mid_work(rounds, run.total)) >= MID_WORK
    store = raw_store(reference)
    assert len(store["rows"]["sources"]) == CRAWL_PAGES + 2  # the pages, home and the PDF
    assert [(f[1].rsplit("/", 1)[1], f[3]) for f in store["failures"]] == \
        [("missing", "http_404")]


KILLED_SAVE = """
import os, signal, sys
from pipeline.atomic import atomic_write
with atomic_write(sys.argv[1], "w") as fh:
    fh.write('{"job": ')
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_crawl_job_save_cut_by_a_kill_leaves_no_temp_file(tmp_path: Path) -> None:
    job = JobDir(DataRoot.at(tmp_path), "0123456789abcdef")
    seeds = ["http://127.0.0.1:8000/"]
    job.begin(seeds, [])
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(job.state_file)],
                            env=isolated_env(), capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [Path(p).parent.name for p in temp_files(tmp_path)] == [job.job]

    state, resumed = job.begin(seeds, [])
    assert temp_files(tmp_path) == []
    assert resumed and (state.generation, state.runs) == (1, 2)


def test_a_crawl_whose_parent_alone_is_killed_stops_quietly_and_resumes(tmp_path: Path) -> None:
    """`kill -9` of `cllm crawl` alone: its crawl process notices, stops gracefully (the job
    paused, its queue saved) without a traceback on the dead parent's terminal, and the same
    command then finishes the crawl without fetching a stored page again."""
    routes = crawl_site()
    for page in routes.values():
        page.delay_s = 0.1  # slow enough that the crawl process cannot finish unnoticed
    with LocalSite(routes) as site:
        stage = stages(tmp_path, site.url("/"))["crawl"]
        stage.modes = ("main",)
        watch = FetchWatch(site)
        states: list[str] = []

        def after_kill(root: Path, kill: Kill) -> None:
            watch.after_kill(root, kill)
            (job,) = (root / "state" / "crawl").glob("*/job.json")
            states.append(json.loads(job.read_text())["status"])

        stage.after_kill = after_kill
        # one unit: from half the pages stored, killed within 0.05 s
        half = Run(argv=[], returncode=0, seconds=0.0, work_s=1.0, output="",
                   total=CRAWL_PAGES // 2, units=[Unit(start=CRAWL_PAGES // 2, seconds=0.1)])
        (done,) = crash_rounds(stage, lambda n: tmp_path / "data", isolated_env(), half, SEED,
                               kills=1, max_rounds=1, log_dir=tmp_path,
                               check=lambda root: watch.check())
    assert states == ["paused"]
    assert "Traceback" not in (tmp_path / "crawl-round0.log").read_text()
    assert sources_stored(tmp_path / "data") == CRAWL_PAGES + 2
    assert len(watch.stored_at_kill[0][1]) >= done.kills[0].target
