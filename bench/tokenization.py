"""Benchmark: our tokenize-and-shard stage against the bare encoder, and its peak memory.

    python bench/tokenization.py                      # ~50 MB of generated prose
    python bench/tokenization.py --corpus DIR         # every text file under DIR is a document
    python bench/tokenization.py --mb 10 --repeat 5 --threads 2
    python bench/tokenization.py --quick | --smoke   # see bench/common.py

One run measures, over the same cleaned texts and with the same tokenizer and threads:
  - the stage (`tokenize_dataset` with the tokenizer already trained and the documents already
    cleaned: read cleaned parts, encode, write spools, cut shards, write the manifest), with
    the encoder it picks by default (tiktoken when exact) and with tokenizers forced;
  - bare `Tokenizer.encode_batch_fast` on the texts in memory (best of whole list and
    stage-sized batches; each Encoding's ids read out, the least a user of them does), and
    bare tiktoken `encode_ordinary_batch` (which returns the ids);
and prints MB/s, tokens/s, their ratio (medians of --repeat runs), the one-off cost of cleaning
and training, and the peak RSS of a fresh process running the whole stage (clean, train,
shards) on generated corpora of --rss-mb and 10x that.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline.config import Config, build_config
from pipeline.layout import DataRoot
from pipeline.records import Document

COMMON = (
    "the of and to in is was for that with as on by at from his her an which this be are or "
    "had not but have were their one all been has there when who more they into time than "
    "other its can only new some could these two may first then do any like my now over such "
    "our man me even most made after also did many before must through back years where much "
    "your way well down should because each just those people how too little state good very "
    "make world still own see men work long get here between both life being under never day "
    "same another know while last might us great old year off come since against go came "
    "right used take three"
).split()
SYLLABLES = ("ka lo mi ne ru ta shi pe do ga vi zu an er in on th st qu ble tion ing ed ous al "
             "ver com pro re de ment ly con ex im per ter ar ic es").split()
PART_DOCS = 200


# --- corpus -------------------------------------------------------------------------------


def _vocabulary(rng: random.Random, size: int = 30_000) -> tuple[list[str], list[float]]:
    """Common words, then invented ones, with Zipf weights (as cumulative weights)."""
    words = list(COMMON)
    seen = set(words)
    while len(words) < size:
        w = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words, list(itertools.accumulate(1.0 / (i + 1) ** 1.05 for i in range(size)))


def _paragraph(rng: random.Random, words: list[str], cum: list[float]) -> str:
    sentences = []
    for _ in range(rng.randint(2, 7)):
        ws = rng.choices(words, cum_weights=cum, k=rng.randint(5, 28))
        if rng.random() < 0.15:
            ws.insert(rng.randrange(len(ws)), str(rng.randint(0, 99_999)))
        if rng.random() < 0.3:
            ws[rng.randrange(len(ws))] += ","
        s = " ".join(ws)
        sentences.append(s[0].upper() + s[1:] + rng.choice("....!?;"))
    return " ".join(sentences)


def generated_documents(mb: float, seed: int = 0, sizes: tuple[int, int] = (1000, 20_000)
                        ) -> Iterator[Document]:
    """Deterministic prose documents of `sizes` bytes (log-uniform, at least one paragraph)
    until `mb` MB of text."""
    rng = random.Random(seed)
    words, cum = _vocabulary(rng)
    total, n = 0, 0
    low, high = sizes
    while total < mb * 1e6:
        target = int(low * (high / low) ** rng.random())
        paragraphs, size = [], 0
        while size < target:
            paragraphs.append(_paragraph(rng, words, cum))
            size += len(paragraphs[-1]) + 2
        text = "\n\n".join(paragraphs)
        total += len(text)
        yield Document(id=f"{seed:08x}{n:056x}", source=f"generated/{seed}/{n}", mime="text/plain",
                       text=text, created_at="2026-01-01T00:00:00+00:00")
        n += 1


def folder_documents(folder: Path) -> Iterator[Document]:
    import hashlib

    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        yield Document(id=hashlib.sha256(data).hexdigest(), source=str(path), mime="text/plain",
                       text=data.decode("utf-8", errors="replace"))


def write_docs(root: DataRoot, docs: Iterator[Document]) -> None:
    from pipeline.docstore import write_part

    for number in itertools.count():
        batch = list(itertools.islice(docs, PART_DOCS))
        if not batch:
            return
        write_part(root.docs, batch, number=number)


# --- measurements -------------------------------------------------------------------------


def bench_config(args: argparse.Namespace, **tokenize: object) -> Config:
    return build_config([{"tokenize": {"vocab_size": args.vocab, "threads": args.threads,
                                       **tokenize}}])


def reset_shards(root: DataRoot) -> None:
    shutil.rmtree(root.shards, ignore_errors=True)
    shutil.rmtree(root.state / "tokenize", ignore_errors=True)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of this process (all its threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def median_rate(runs: list[tuple[float, float]], amount: float) -> float:
    return amount / statistics.median(wall for wall, _ in runs)


def median_cpu(runs: list[tuple[float, float]]) -> float:
    return statistics.median(cpu for _, cpu in runs)


def child_rss(mb: float, args: argparse.Namespace, *extra: str) -> dict[str, float]:
    """Peak RSS of a fresh process that runs the stage on `mb` MB of generated text."""
    cmd = [sys.executable, __file__, "--child", str(mb), "--vocab", str(args.vocab),
           "--threads", str(args.threads), "--workdir", str(args.workdir), *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class PeakRss:
    """Samples the RSS of this process (or of process `pid`) and of its descendants (the
    clean workers, a crawl's child), and their CPU time: workers a forkserver started are
    not this process's children, so its rusage never counts them. A process that has exited
    counts as nothing; CPU a process spent in its last `every_s` is missed."""

    def __init__(self, every_s: float = 0.02, pid: int | None = None) -> None:
        import psutil

        self.me = psutil.Process(pid)
        self.every_s = every_s
        self.peak_self = self.peak_total = 0
        self._cpu: dict[int, float] = {}  # pid: user + system seconds, last seen
        self._cpu_before: dict[int, float] = {}  # of the processes there at the start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            own = self.me.memory_info().rss
            children = self.me.children(recursive=True)
            self._cpu[self.me.pid] = sum(self.me.cpu_times()[:2])
        except psutil.Error:
            return  # exited (or a zombie): its peak was sampled before
        total = own
        for child in children:
            try:
                total += child.memory_info().rss
                self._cpu[child.pid] = sum(child.cpu_times()[:2])
            except psutil.Error:
                pass  # ended between listing and reading
        self.peak_self = max(self.peak_self, own)
        self.peak_total = max(self.peak_total, total)

    def cpu_s(self, descendants_only: bool = False) -> float:
        """CPU seconds (user + system) the tree spent while sampled."""
        return sum(seconds - self._cpu_before.get(pid, 0.0) for pid, seconds in
                   self._cpu.items() if not (descendants_only and pid == self.me.pid))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def __enter__(self) -> PeakRss:
        self._sample()
        self._cpu_before = dict(self._cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def run_child(mb: float, args: argparse.Namespace) -> None:
    from pipeline import clean
    from pipeline.tokenization import tokenize_dataset

    clean.POOL_MIN_BYTES = 0  # clean workers at both sizes, so that the two compare
    root = DataRoot.at(Path(tempfile.mkdtemp(prefix="rss-", dir=args.workdir)))
    write_docs(root, generated_documents(mb, seed=1))
    given = {"tokenizer": str(args.child_tokenizer)} if args.child_tokenizer else {}
    with PeakRss() as peak:
        before = peak.me.memory_info().rss
        stats = tokenize_dataset(bench_config(args, **given), root, progress=False)
    if args.save_tokenizer:
        shutil.copyfile(root.tokenizer_json, args.save_tokenizer)
    shutil.rmtree(root.path)
    print(json.dumps({"mb": mb, "tokens": stats.units, "before_mb": before / 2**20,
                      "self_mb": peak.peak_self / 2**20, "total_mb": peak.peak_total / 2**20}))


def _rss_line(label: str, small: dict[str, float], large: dict[str, float]) -> str:
    return (f"  {label:34} {small['self_mb']:6.0f} MB {large['self_mb']:6.0f} MB "
            f"{large['self_mb'] / small['self_mb']:6.2f}x   (with clean workers: "
            f"{small['total_mb']:.0f} / {large['total_mb']:.0f} MB, "
            f"{large['total_mb'] / small['total_mb']:.2f}x)")


def report_rss(args: argparse.Namespace) -> dict[str, object]:
    """Peak RSS at 1x and 10x, with the tokenizer trained in the run and given to it."""
    tok = Path(tempfile.mkstemp(prefix="bench-tok-", suffix=".json", dir=args.workdir)[1])
    try:
        whole = (child_rss(args.rss_mb, args, "--save-tokenizer", str(tok)),
                 child_rss(10 * args.rss_mb, args))
        given = (child_rss(args.rss_mb, args, "--child-tokenizer", str(tok)),
                 child_rss(10 * args.rss_mb, args, "--child-tokenizer", str(tok)))
    finally:
        tok.unlink(missing_ok=True)
    text = "\n".join([
        f"peak RSS of a fresh process running the stage (sampled every 20 ms; it held "
        f"{whole[0]['before_mb']:.0f} MB before the stage):",
        f"  {'':34} {args.rss_mb:6g} MB {10 * args.rss_mb:6g} MB  10x/1x   (text)",
        _rss_line("clean + shards, tokenizer given", *given),
        _rss_line("clean + train tokenizer + shards", *whole),
        "  target <= 1.3x; training holds the BPE word counts, which grow with distinct words "
        "(capped by tokenize.train_max_mb)"])
    return {"text": text, "small_mb": args.rss_mb, "large_mb": 10 * args.rss_mb,
            "given": [round(r["self_mb"], 1) for r in given],
            "trained": [round(r["self_mb"], 1) for r in whole]}


def shard_digest(root: DataRoot) -> str:
    """sha256 over every shard's token bytes, in name order: equal iff the ids are equal."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(root.shards.glob("*.bin")):
        h.update(path.read_bytes())
    return h.hexdigest()


def measure(args: argparse.Namespace, root: DataRoot, texts: list[str], threads: int
            ) -> tuple[dict[str, list[tuple[float, float]]], dict[str, set[str]]]:
    """Stage and bare encoders over the same texts, alternating, --repeat times; and the
    digest of the shards each stage run wrote."""
    from pipeline.encoders import to_tiktoken
    from pipeline.tokenization import tokenize_dataset
    from pipeline.tokenizer import load_tokenizer

    tok = load_tokenizer(root.tokenizer_json)
    tok.encode_special_tokens = True  # as the stage sets it: "<|endoftext|>" in a text is text
    enc = to_tiktoken(tok)  # the same ranks as the stage's tiktoken encoder
    batch = bench_config(args).tokenize.batch_docs

    def bare_hf(size: int) -> None:  # the ids read out, as any user of them must
        for i in range(0, len(texts), size):
            [e.ids for e in tok.encode_batch_fast(texts[i:i + size], add_special_tokens=False)]

    runs: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("stage", "stage_hf", "bare_hf", "bare_hf_whole", "bare_tiktoken")}
    digests: dict[str, set[str]] = {"stage": set(), "stage_hf": set()}
    for n in range(args.repeat):
        stage_runs = [("stage", "auto"), ("stage_hf", "hf")]
        for key, encoder in stage_runs[::-1] if n % 2 else stage_runs:
            reset_shards(root)
            cfg = bench_config(args, tokenizer=str(root.tokenizer_json), encoder=encoder)
            runs[key].append(timed(lambda c=cfg: tokenize_dataset(c, root, progress=False)))
            digests[key].add(shard_digest(root))
        runs["bare_hf"].append(timed(lambda: bare_hf(batch)))
        runs["bare_hf_whole"].append(timed(lambda: bare_hf(len(texts))))
        runs["bare_tiktoken"].append(timed(lambda: enc.encode_ordinary_batch(
            texts, num_threads=threads)))
    return runs, digests


def bare_ids_equal(root: DataRoot, texts: list[str], threads: int) -> bool:
    """Bare tiktoken and bare HF give the same ids for every text of the corpus."""
    from pipeline.encoders import to_tiktoken
    from pipeline.tokenizer import load_tokenizer

    tok = load_tokenizer(root.tokenizer_json)
    tok.encode_special_tokens = True
    hf = [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
    return hf == to_tiktoken(tok).encode_ordinary_batch(texts, num_threads=threads)


def report(runs: dict[str, list[tuple[float, float]]], mb: float, tokens: int, repeat: int,
           encoder: str, batch: int) -> dict[str, object]:
    bare_key = min(("bare_hf", "bare_hf_whole"),  # the bare encoder at its best
                   key=lambda k: statistics.median(wall for wall, _ in runs[k]))
    rates = {k: median_rate(v, mb) for k, v in runs.items()}
    bare_hf, bare_tt = rates[bare_key], rates["bare_tiktoken"]
    print(f"\n{'(median of ' + str(repeat) + ')':38} {'MB/s':>7} {'Mtok/s':>7} {'vs HF':>7}"
          f" {'vs tiktoken':>11} {'CPU s':>7}")
    rows = [(f"stage, encoder={encoder}", "stage"), ("stage, encoder=hf", "stage_hf"),
            ("bare HF encode_batch_fast" + (" (whole list)" if bare_key.endswith("whole")
                                            else f" ({batch}/batch)"), bare_key),
            ("bare tiktoken encode_ordinary_batch", "bare_tiktoken")]
    for label, key in rows:
        print(f"{label:38} {rates[key]:7.2f} {median_rate(runs[key], tokens) / 1e6:7.2f} "
              f"{rates[key] / bare_hf:6.2f}x {rates[key] / bare_tt:10.2f}x "
              f"{median_cpu(runs[key]):7.2f}")
    print("targets: the stage >= 0.85x bare tiktoken (same ranks); forced to hf >= 0.85x "
          "bare HF")
    print("all runs (wall s): " + ", ".join(f"{k}={[round(w, 2) for w, _ in v]}"
                                            for k, v in runs.items()))
    return {"mb": round(mb, 2), "tokens": tokens, "encoder": encoder, "bare_hf_batching":
            "whole list" if bare_key.endswith("whole") else f"{batch} per call",
            "mb_per_s": {k: round(v, 3) for k, v in rates.items()},
            "stage_over_bare_tiktoken": round(rates["stage"] / bare_tt, 3),
            "stage_over_bare_hf": round(rates["stage"] / bare_hf, 3),
            "stage_hf_over_bare_hf": round(rates["stage_hf"] / bare_hf, 3),
            "runs_wall_s": {k: [round(w, 3) for w, _ in v] for k, v in runs.items()}}


def table_rows(fig: dict[str, object], identity: dict[str, object], rss: dict[str, object]
               ) -> list[dict[str, str]]:
    from common import row

    r = fig["mb_per_s"]
    same = "shard bytes equal on the whole corpus" if identity["shards_equal"] \
        else "SHARD BYTES DIFFER"
    rows = [
        row(f"tokenize + shard, {fig['mb']:.0f} MB generated prose, tokenizer given",
            f"{r['stage']:.1f} MB/s (stage, {fig['encoder']} encoder)",
            f"{r['bare_tiktoken']:.1f} MB/s (bare tiktoken `encode_ordinary_batch`, "
            "same ranks)", f"{fig['stage_over_bare_tiktoken']:.2f}x", "≥ 0.85x"),
        row("the same stage against bare Hugging Face (same run)",
            f"{r['stage']:.1f} MB/s ({same})",
            f"{r[min(('bare_hf', 'bare_hf_whole'), key=lambda k: -r[k])]:.1f} MB/s "
            f"(`encode_batch_fast`, {fig['bare_hf_batching']})",
            f"{fig['stage_over_bare_hf']:.2f}x"),
        row("the same stage forced to the Hugging Face encoder (same run)",
            f"{r['stage_hf']:.1f} MB/s", "bare `encode_batch_fast` as above",
            f"{fig['stage_hf_over_bare_hf']:.2f}x", "≥ 0.85x")]
    if rss:
        rows.append(row(f"tokenize peak RSS, {rss['large_mb']:g} MB vs {rss['small_mb']:g} MB "
                        "corpus (clean + shards, tokenizer given / trained)",
                        f"{rss['given'][1]:.0f} / {rss['given'][0]:.0f} MB; "
                        f"{rss['trained'][1]:.0f} / {rss['trained'][0]:.0f} MB", "",
                        f"{rss['given'][1] / rss['given'][0]:.2f}x / "
                        f"{rss['trained'][1] / rss['trained'][0]:.2f}x", "≤ 1.3x"))
    return rows


SIZES = {  # mode: (MB of generated text, repeats, 1x corpus of the RSS runs, vocabulary)
    "smoke": (0.3, 1, 0.0, 512), "quick": (5.0, 3, 1.0, 8192), "full": (50.0, 5, 5.0, 8192)}


def main() -> None:
    from common import add_mode_args, mode, write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, help="folder of text files (default: generated)")
    p.add_argument("--mb", type=float, help="generated corpus size in MB (full: 50)")
    p.add_argument("--vocab", type=int)
    p.add_argument("--threads", type=int, default=0, help="encoder threads (0 = cores)")
    p.add_argument("--repeat", type=int)
    p.add_argument("--rss-mb", type=float, help="1x corpus for the RSS runs; 0 = skip them")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    add_mode_args(p)
    p.add_argument("--child", type=float, help=argparse.SUPPRESS)
    p.add_argument("--child-tokenizer", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--save-tokenizer", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    defaults = dict(zip(("mb", "repeat", "rss_mb", "vocab"), SIZES[mode(args)], strict=True))
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.child is not None:
        run_child(args.child, args)
        return
    logging.basicConfig(level=logging.WARNING)
    # first, while this process is small: a child's peak RSS counts from its parent's at fork
    rss = report_rss(args) if args.rss_mb else {}
    if rss:
        print(rss.pop("text"))

    from pipeline.clean import clean_documents, iter_clean_documents
    from pipeline.encoders import set_threads
    from pipeline.shards import read_manifest
    from pipeline.tokenization import tokenize_dataset

    threads = set_threads(args.threads)
    root = DataRoot.at(Path(tempfile.mkdtemp(prefix="bench-tokenize-", dir=args.workdir)))
    try:
        docs = folder_documents(args.corpus) if args.corpus else generated_documents(args.mb)
        write_docs(root, docs)
        cfg = bench_config(args)
        clean_s, _ = timed(lambda: clean_documents(cfg, root, progress=False))
        first = tokenize_dataset(cfg, root, progress=False)
        manifest = read_manifest(root.manifest)
        texts = [d.text for d in iter_clean_documents(root, manifest.parts)]
        mb = sum(len(t.encode()) for t in texts) / 1e6
        tokens = first.units - len(texts)  # without the EOS after each document
        print(f"corpus: {'folder ' + str(args.corpus) if args.corpus else 'generated'}, "
              f"{len(texts)} documents, {mb:.1f} MB after cleaning; {threads} threads")
        print(f"one-off: clean+dedup {clean_s:.1f}s ({mb / clean_s:.1f} MB/s), tokenizer "
              f"training {first.extra['tokenizer_seconds']:.1f}s "
              f"(vocab {manifest.tokenizer.vocab_size})")

        runs, digests = measure(args, root, texts, threads)
        fig = report(runs, mb, tokens, args.repeat, first.extra["encoder"],
                     cfg.tokenize.batch_docs)
        identity = {"shards_equal": len(digests["stage"] | digests["stage_hf"]) == 1,
                    "shard_sha256": sorted(digests["stage"] | digests["stage_hf"]),
                    "bare_ids_equal": bare_ids_equal(root, texts, threads),
                    "documents": len(texts)}
        same = {k: "equal" if identity[k] else "DIFFER"
                for k in ("shards_equal", "bare_ids_equal")}
        print(f"id identity on the whole corpus ({len(texts)} documents): shards of the "
              f"{fig['encoder']} and hf stage runs {same['shards_equal']}; bare tiktoken and "
              f"bare HF ids {same['bare_ids_equal']}")
    finally:
        shutil.rmtree(root.path, ignore_errors=True)
    write_results("tokenization", {
        "corpus": str(args.corpus) if args.corpus else f"generated {args.mb:g} MB",
        "vocab": args.vocab, "repeat": args.repeat, "figures": fig, "identity": identity,
        "rss": rss, "table": table_rows(fig, identity, rss)}, args, "tokenizers", "tiktoken",
        threads=threads)


if __name__ == "__main__":
    main()
