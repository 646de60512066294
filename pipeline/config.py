"""One config for every stage: a dataclass per section of `cllm.toml`, checked on load.

Precedence, lowest first: field defaults < the TOML file < environment `CLLM_<SECTION>__<KEY>`
< `--set section.key=value` (and the CLI flags that mirror config keys).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import ConfigError

DEFAULT_CONFIG_NAME = "cllm.toml"
RESOLVED_CONFIG_NAME = "config.toml"
ENV_PREFIX = "CLLM_"
MB = 1024 * 1024
# keys whose values are paths: relative ones in a config file are relative to its folder
PATH_KEYS = {"sources": ("paths",), "crawl": ("blocklist_file",), "tokenize": ("tokenizer",),
             "train": ("init_checkpoint",), "evaluate": ("checkpoint",),
             "clean": ("decontaminate",)}



class OcrMode(StrEnum):
    """When extraction OCRs a page: never, when the page needs it (auto), or every page."""

    NEVER = "never"
    AUTO = "auto"
    FORCE = "force"


EncoderKind = Literal["auto", "hf", "tiktoken"]
Scheduler = Literal["constant", "cosine", "linear", "step"]
Norm = Literal["layernorm", "rmsnorm"]
Mlp = Literal["gelu", "swiglu"]
Position = Literal["learned", "rope", "sinusoidal", "prime", "clock", "spiral"]
EmbeddingInit = Literal["normal", "lattice"]
Symmetry = Literal["none", "twelvefold"]
Device = Literal["auto", "cpu", "cuda", "mps"]
Precision = Literal["auto", "fp32", "bf16"]
InitFrom = Literal["scratch", "resume", "promoted"]
TextFormat = Literal["text", "markdown"]
FIXED_POSITIONS = ("sinusoidal", "prime", "clock", "spiral")  # tables added to the embeddings


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _require(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


@dataclass(kw_only=True, slots=True)
class SourcesConfig:
    """What `cllm run` and the retrain flow ingest."""

    urls: list[str] = field(default_factory=list)  # start URLs to crawl
    paths: list[str] = field(default_factory=list)  # local files/folders to ingest


@dataclass(kw_only=True, slots=True)
class IngestConfig:
    max_bytes: int = 200 * MB  # files larger than this become `too_large` failures
    follow_symlinks: bool = True  # loops are detected and reported either way
    exclude: list[str] = field(
        default_factory=lambda: [".git", ".hg", ".svn", "__pycache__", ".DS_Store"]
    )  # glob patterns matched against each file/folder name
    # glob patterns matched against each file name: files that would be skipped as static web
    # assets (scripts, style sheets, source maps, JSON/XML data, fonts, icons; see
    # pipeline/sniff.py STATIC_ASSETS) are ingested as documents, e.g. ["*.json"]
    include: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _require(self.max_bytes > 0, "ingest.max_bytes", "> 0", self.max_bytes)
        for name in ("exclude", "include"):
            for i, pattern in enumerate(getattr(self, name)):
                _require(bool(pattern.strip()), f"ingest.{name}[{i}]",
                         "a non-empty glob pattern", pattern)


@dataclass(kw_only=True, slots=True)
class CrawlConfig:
    # the most pages one crawl (the same start URLs and sitemaps) keeps in the dataset, over
    # all its runs: a re-crawl re-checks those and adds new pages only into the room left
    max_pages: int = 500
    max_depth: int = 5  # link hops from a start URL
    max_pages_per_domain: int = 0  # the same, per host (a cap against traps); 0 = max_pages
    allow_private: bool = False  # allow loopback/private/link-local/reserved addresses
    allowed_domains: list[str] = field(default_factory=list)  # empty = the start URLs' hosts
    denied_domains: list[str] = field(default_factory=list)
    exclude_patterns: list[str] = field(default_factory=list)  # regexes matched on the URL
    blocklist_file: str = ""  # lines: exact URL, domain:, prefix:, regex: (see crawler/)
    file_types: list[str] = field(
        default_factory=lambda: ["html", "pdf", "txt", "md", "png", "jpg", "gif", "tif", "bmp",
                                 "webp", "epub"]
    )  # kinds of content kept
    strip_params: list[str] = field(
        default_factory=lambda: ["utm_*", "fbclid", "gclid", "mc_cid", "mc_eid",
                                 "jsessionid", "phpsessid", "aspsessionid*", "sessionid",
                                 "session_id", "cfid", "cftoken"]
    )  # query (and ;path) parameters removed when normalising URLs (glob patterns): tracking
    #    tags and session ids, which would make every visit's links new URLs (a crawler trap)
    sitemaps: list[str] = field(default_factory=list)  # sitemap URLs to seed from
    obey_robots: bool = True
    concurrency: int = 8  # concurrent requests overall
    per_domain_concurrency: int = 4  # requests in flight to one host at most (and its connections)
    delay_s: float = 0.25  # base delay between requests to one domain
    autothrottle: bool = True
    timeout_s: float = 30.0  # per request
    retries: int = 2  # for 5xx and timeouts
    max_bytes: int = 50 * MB  # download size limit per response
    user_agent: str = "cllm-crawler/0.1 (+https://github.com/cllm/cllm-pipeline)"
    redis_url: str = ""  # set to share the frontier across machines (scrapy-redis)
    # addresses or CIDR networks allowed even when allow_private is false, e.g. ["127.0.0.1"]
    private_allowlist: list[str] = field(default_factory=list)
    retry_backoff_s: float = 1.0  # wait before retry n is retry_backoff_s * 2**(n-1), max 60 s
    restart: bool = False  # drop the saved frontier of a stopped crawl of these URLs; start over
    # a re-run does not ask again for a kept page checked less than this long ago (seconds;
    # longer when the page said it stays fresh: Cache-Control max-age, Expires); seeds and
    # sitemaps are always asked for. 20 h, not a day: a daily run (the retrain schedule)
    # reaches a page at a slightly different time each day and must still find it due
    revisit_after_s: float = 20 * 3600.0
    refresh: bool = False  # ask again for every kept page, due or not (conditionally)

    def __post_init__(self) -> None:
        _require(self.max_pages > 0, "crawl.max_pages", "> 0", self.max_pages)
        _require(self.max_depth >= 0, "crawl.max_depth", ">= 0", self.max_depth)
        _require(self.max_pages_per_domain >= 0, "crawl.max_pages_per_domain", ">= 0",
                 self.max_pages_per_domain)
        _require(self.concurrency > 0, "crawl.concurrency", "> 0", self.concurrency)
        _require(self.per_domain_concurrency > 0, "crawl.per_domain_concurrency", "> 0",
                 self.per_domain_concurrency)
        _require(self.delay_s >= 0, "crawl.delay_s", ">= 0", self.delay_s)
        _require(self.timeout_s > 0, "crawl.timeout_s", "> 0", self.timeout_s)
        _require(self.retries >= 0, "crawl.retries", ">= 0", self.retries)
        _require(self.max_bytes > 0, "crawl.max_bytes", "> 0", self.max_bytes)
        _require(bool(self.user_agent.strip()), "crawl.user_agent", "non-empty", self.user_agent)
        _require(self.retry_backoff_s >= 0, "crawl.retry_backoff_s", ">= 0", self.retry_backoff_s)
        _require(self.revisit_after_s >= 0, "crawl.revisit_after_s", ">= 0 (0: every run)",
                 self.revisit_after_s)
        self._check_crawl_lists()

    def _check_crawl_lists(self) -> None:
        import ipaddress
        import re

        from pipeline.sniff import EXTENSIONS

        kinds = sorted(set(EXTENSIONS.values()))
        for i, kind in enumerate(self.file_types):
            _require(kind in kinds, f"crawl.file_types[{i}]", f"one of {', '.join(kinds)}", kind)
        for i, pattern in enumerate(self.exclude_patterns):
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"crawl.exclude_patterns[{i}] is not a valid regex "
                                  f"({e}): {pattern!r}") from None
        for i, net in enumerate(self.private_allowlist):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(f"crawl.private_allowlist[{i}] must be an IP address or CIDR "
                                  f"network, got {net!r}") from None
        for name in ("allowed_domains", "denied_domains"):
            for i, domain in enumerate(getattr(self, name)):
                _require(bool(domain.strip()) and "/" not in domain, f"crawl.{name}[{i}]",
                         "a host name such as docs.example.org", domain)
        _require(not self.redis_url or self.redis_url.startswith(("redis://", "rediss://",
                                                                   "unix://")),
                 "crawl.redis_url", "a redis://, rediss:// or unix:// URL", self.redis_url)


@dataclass(kw_only=True, slots=True)
class ExtractConfig:
    workers: int = 0  # processes; 0 = number of cores
    ocr: OcrMode = OcrMode.AUTO  # never | auto (pages that need it) | force (every page)
    ocr_redo: bool = False  # in auto mode, redo pages that carry an invisible OCR layer
    dpi: int = 300  # render resolution for OCR
    lang: str = "eng"  # Tesseract language(s), e.g. "eng+deu"
    psm: int = 3  # Tesseract page segmentation mode
    # a document's time limit is timeout_s plus timeout_per_page_s for each of its pages
    # (counted when it opens; each member of an archive or mail adds its own): a slower
    # document becomes a `timeout` failure
    timeout_s: float = 300.0
    timeout_per_page_s: float = 2.0  # seconds; OCR of a 300 dpi page takes 0.5-1.5 s a core
    # a guard against absurd page counts (page-tree bombs), far above any real book: more
    # pages is a `too_large` failure; big manuals are what the per-page time budget is for
    max_pages: int = 100_000
    format: TextFormat = "text"  # text | markdown (headings as #, lists, GFM tables)
    max_image_pixels: int = 100_000_000  # larger images are refused as decompression bombs
    # memory (MB of address space) a worker may take beyond what it holds when it starts; a
    # document that needs more (a compression or zip bomb) fails as too_large; 0 = no limit
    max_memory_mb: int = 2048
    tasks_per_worker: int = 50  # recycle a worker after this many documents (leaks)
    part_docs: int = 200  # documents per docs/part-NNNNN.jsonl.zst
    retry_failed: bool = False  # re-run sources that gave no document before
    # archives (ZIP, TAR) and e-mail (attachments): each guard is a counted failure reason
    max_members: int = 10_000  # members (or attachments) of one container; more: too_many_members
    max_unpacked_mb: int = 2048  # MB all members of one raw file may unpack to: too_large
    # a member unpacking to over max_compression_ratio times its packed size (and over 1 MB)
    # is a bomb: compression_ratio; ordinary text and XML pack 5-50:1
    max_compression_ratio: int = 200
    max_nesting: int = 3  # archives in archives (or mail in mail) this deep; deeper: too_deep
    max_sheet_rows: int = 10_000  # rows read per spreadsheet sheet; the rest counted as cut
    max_sheet_cells: int = 1_000_000  # cells read per workbook; the rest counted as cut

    def __post_init__(self) -> None:
        _require(self.workers >= 0, "extract.workers", ">= 0", self.workers)
        _require(self.timeout_per_page_s >= 0, "extract.timeout_per_page_s", ">= 0",
                 self.timeout_per_page_s)
        _require(self.format in ("text", "markdown"), "extract.format", "text or markdown",
                 self.format)
        for name in ("max_members", "max_unpacked_mb", "max_compression_ratio", "max_sheet_rows",
                     "max_sheet_cells"):
            _require(getattr(self, name) > 0, f"extract.{name}", "> 0", getattr(self, name))
        _require(self.max_nesting >= 0, "extract.max_nesting", ">= 0", self.max_nesting)
        _require(50 <= self.dpi <= 1200, "extract.dpi", "in 50..1200", self.dpi)
        _require(0 <= self.psm <= 13, "extract.psm", "in 0..13", self.psm)
        _require(bool(self.lang.strip()), "extract.lang", "non-empty", self.lang)
        _require(self.timeout_s > 0, "extract.timeout_s", "> 0", self.timeout_s)
        _require(self.max_pages > 0, "extract.max_pages", "> 0", self.max_pages)
        _require(self.max_image_pixels > 0, "extract.max_image_pixels", "> 0",
                 self.max_image_pixels)
        _require(self.max_memory_mb == 0 or self.max_memory_mb >= 64, "extract.max_memory_mb",
                 "0 (no limit) or >= 64", self.max_memory_mb)
        _require(self.tasks_per_worker > 0, "extract.tasks_per_worker", "> 0",
                 self.tasks_per_worker)
        _require(self.part_docs > 0, "extract.part_docs", "> 0", self.part_docs)


@dataclass(kw_only=True, slots=True)
class CleanConfig:
    min_chars: int = 200  # shorter documents are dropped (`too_short`)
    min_words: int = 30
    min_alpha_ratio: float = 0.5  # share of letters among non-space characters
    max_symbol_ratio: float = 0.3  # share of symbol/punctuation characters
    # share of line characters in repeated lines that read as prose (pipeline/filters.py):
    # repeated code and short menu lines do not count
    max_repeated_line_ratio: float = 0.3
    # words (and most of its tokens words) a repeated line needs to count; 0 = every line
    repeated_line_min_words: int = 4
    max_short_line_ratio: float = 0.67  # share of lines shorter than short_line_chars
    short_line_chars: int = 20
    dedup_exact: bool = True  # drop documents whose normalised text was seen before
    dedup_near: bool = True  # drop near-duplicates (MinHash LSH)
    # Jaccard similarity of the shingle sets at or above which a document is a near-dup; with
    # 3-word shingles 0.6 is about 9% of the words replaced (bench/dedup.py: every copy with up
    # to 5% of its words edited found, at every length, and no document that only shares
    # boilerplate); changing it rebuilds the LSH bands, not the signatures
    near_jaccard: float = 0.6
    minhash_perm: int = 128  # MinHash permutations (signature values) per document
    # words per shingle: 3 rather than datatrove's 5, since one replaced word breaks this many
    # shingles (5% edits leave a Jaccard of about 0.75 at 3, 0.63 at 5); changing it or
    # minhash_perm signs the kept documents again from state/clean/
    shingle_words: int = 3
    workers: int = 0  # processes that filter and fingerprint documents; 0 = number of cores
    # ISO 639-1 codes of the languages to keep (py3langid's, pipeline/langid.py); a document in
    # another is dropped with reason `language`; empty keeps all (every kept document's
    # language is identified either way, into its `lang`, and a PDF's per page)
    languages: list[str] = field(default_factory=list)
    min_language_score: float = 0.5  # with languages: the identification score to reach (0..1)
    # replace: e-mail addresses, phone numbers, IP addresses, card numbers, IBANs and secrets
    # become typed placeholders (<EMAIL>, <PHONE>, ...) before dedup and tokenization
    # (pipeline/pii.py); on by default: a model memorises them, and no later step can undo it
    pii: Literal["replace", "off"] = "replace"
    # files or folders of evaluation text (.jsonl: each record's "text"; other files: their
    # text); a document sharing a word n-gram with it is dropped (`contaminated`)
    decontaminate: list[str] = field(default_factory=list)
    decontaminate_n: int = 13  # words per n-gram (NFKC, case-folded); 13 as in GPT-3

    def __post_init__(self) -> None:
        _require(self.workers >= 0, "clean.workers", ">= 0", self.workers)
        for i, code in enumerate(self.languages):
            _require(isinstance(code, str) and len(code) in (2, 3) and code.isascii()
                     and code.isalpha() and code.islower(), f"clean.languages[{i}]",
                     "a lower-case ISO 639-1 code such as en", code)
        _require(0.0 <= self.min_language_score <= 1.0, "clean.min_language_score", "in 0..1",
                 self.min_language_score)
        for i, path in enumerate(self.decontaminate):
            _require(isinstance(path, str) and bool(path.strip()), f"clean.decontaminate[{i}]",
                     "a file or folder", path)
        _require(self.decontaminate_n >= 3, "clean.decontaminate_n", ">= 3",
                 self.decontaminate_n)
        _require(self.min_chars >= 0, "clean.min_chars", ">= 0", self.min_chars)
        _require(self.min_words >= 0, "clean.min_words", ">= 0", self.min_words)
        _require(self.repeated_line_min_words >= 0, "clean.repeated_line_min_words", ">= 0",
                 self.repeated_line_min_words)
        for name in ("min_alpha_ratio", "max_symbol_ratio", "max_repeated_line_ratio",
                     "max_short_line_ratio"):
            value = getattr(self, name)
            _require(0.0 <= value <= 1.0, f"clean.{name}", "in 0..1", value)
        _require(0.0 < self.near_jaccard <= 1.0, "clean.near_jaccard", "in (0, 1]",
                 self.near_jaccard)
        _require(self.minhash_perm >= 16, "clean.minhash_perm", ">= 16", self.minhash_perm)
        _require(self.shingle_words >= 1, "clean.shingle_words", ">= 1", self.shingle_words)


@dataclass(kw_only=True, slots=True)
class TokenizeConfig:
    vocab_size: int = 8192
    tokenizer: str = ""  # path to an existing tokenizer.json; empty = train one
    min_frequency: int = 2  # BPE merges need a pair seen this often
    eos_token: str = "<|endoftext|>"
    segment_chars: int = 20_000  # long documents are encoded in segments of about this size
    batch_docs: int = 256  # documents per encode batch
    threads: int = 0  # encoder threads; 0 = number of cores
    # tiktoken runs the same byte-level BPE (same merges and pre-tokenizer regex) about 2-4x
    # faster; auto = tiktoken when the tokenizer converts and passes the identity check, else hf
    encoder: EncoderKind = "auto"
    train_max_mb: int = 256  # train the tokenizer on at most this many MB of cleaned text; 0 = all
    # write every cleaned part into new shards that replace the old ones: how a change of
    # shards.val_fraction or shards.split_chunk_tokens reaches the documents already in shards
    rebuild: bool = False

    def __post_init__(self) -> None:
        _require(self.train_max_mb >= 0, "tokenize.train_max_mb", ">= 0", self.train_max_mb)
        _require(256 < self.vocab_size <= 1 << 20, "tokenize.vocab_size", "in 257..1048576",
                 self.vocab_size)
        _require(self.min_frequency >= 1, "tokenize.min_frequency", ">= 1", self.min_frequency)
        _require(bool(self.eos_token), "tokenize.eos_token", "non-empty", self.eos_token)
        _require(self.segment_chars >= 1000, "tokenize.segment_chars", ">= 1000",
                 self.segment_chars)
        _require(self.batch_docs > 0, "tokenize.batch_docs", "> 0", self.batch_docs)
        _require(self.threads >= 0, "tokenize.threads", ">= 0", self.threads)


@dataclass(kw_only=True, slots=True)
class ShardsConfig:
    val_fraction: float = 0.05  # share of chunks (by document id and chunk) in the val split
    shard_tokens: int = 16 * MB  # tokens per shard before a new one starts
    # tokens: a longer document is cut (at paragraphs, else lines) into chunks of at most this
    # (and at least half), each split on its own; 0 = never cut. 2048: two GPT-2 contexts, so
    # a val window fits in one chunk; most web pages stay whole; a 50k-token manual gives ~25
    split_chunk_tokens: int = 2048

    def __post_init__(self) -> None:
        _require(0.0 <= self.val_fraction < 1.0, "shards.val_fraction", "in [0, 1)",
                 self.val_fraction)
        _require(self.shard_tokens >= 1024, "shards.shard_tokens", ">= 1024", self.shard_tokens)
        _require(self.split_chunk_tokens == 0 or self.split_chunk_tokens >= 64,
                 "shards.split_chunk_tokens", "0 (never cut) or >= 64", self.split_chunk_tokens)


@dataclass(kw_only=True, slots=True)
class ModelShape:
    """The model's shape (nanoGPT names), keys of [train]; the vocabulary comes from the shards.
    The model is built from this (its config adds only the vocabulary size)."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 128  # context length in tokens
    dropout: float = 0.0
    bias: bool = False
    norm: Norm = "layernorm"
    # gelu: GPT-2's 4 x n_embd GELU MLP; swiglu: Llama's gated SiLU MLP, hidden width about
    # 8/3 x n_embd (same parameters); with norm = rmsnorm, position = rope, no bias: Llama
    mlp: Mlp = "gelu"
    position: Position = "learned"
    embedding_init: EmbeddingInit = "normal"
    lattice_scale: float = 1.0  # multiplies the lattice init (see CRYSTALLINE.md)
    symmetry: Symmetry = "none"
    # the output head is the token embedding (GPT-2, nanoGPT); false: a head of its own, so
    # an embedding init (the lattice) reaches the input side only
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            _require(getattr(self, name) > 0, f"train.{name}", "> 0", getattr(self, name))
        _require(self.n_embd % self.n_head == 0, "train.n_embd",
                 f"a multiple of train.n_head ({self.n_head})", self.n_embd)
        _require(0.0 <= self.dropout < 1.0, "train.dropout", "in [0, 1)", self.dropout)
        _require(self.lattice_scale > 0, "train.lattice_scale", "> 0", self.lattice_scale)
        _require(self.mlp in typing.get_args(Mlp), "train.mlp", "gelu | swiglu", self.mlp)
        head_size = self.n_embd // self.n_head
        _require(self.position != "rope" or head_size % 2 == 0,
                 "the head size (train.n_embd / train.n_head)",
                 "even with position = rope (rotations pair dimensions)", head_size)
        even = self.position in FIXED_POSITIONS or self.symmetry == "twelvefold"
        _require(not even or self.n_embd % 2 == 0, "train.n_embd",
                 f"even with position = {self.position}, symmetry = {self.symmetry}",
                 self.n_embd)


@dataclass(kw_only=True, slots=True)
class TrainConfig(ModelShape):
    run: str = "default"  # run name: outputs go to runs/<run>/
    init_from: InitFrom = "scratch"  # scratch | resume (this run's last checkpoint) | promoted
    init_checkpoint: str = ""  # a checkpoint to start from when the run has none yet
    init_optimizer: bool = False  # with init_checkpoint: continue its AdamW state too
    # optimisation
    batch_size: int = 16  # sequences per micro-batch (per process)
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 2000
    # wall-time budget of each session's loop, in seconds; 0 = no limit. At the end of warm-up
    # the run fits the steps it holds and compresses the lr schedule to end there
    max_seconds: float = 0.0
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    scheduler: Scheduler = "cosine"
    # step: decay every this many steps; cosine/linear: decay over this many (0 = max_steps)
    lr_decay_steps: int = 0
    lr_decay_factor: float = 0.1  # step schedule: multiply lr by this at each decay
    weight_decay: float = 0.1
    # AdamW decays the embeddings too (token, tied head, learned positions), as nanoGPT
    # decays every 2-D parameter; false: weight matrices only (norms and biases never decay),
    # which measured slightly better at equal steps (bench/quality.py)
    decay_embeddings: bool = False
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 = off
    # evaluation and checkpoints
    eval_interval: int = 200
    eval_iters: int = 20
    patience: int = 0  # early stop after this many evals without improvement; 0 = off
    save_interval: int = 500
    keep_last: int = 3  # checkpoints kept besides the best
    # runtime
    device: Device = "auto"
    precision: Precision = "auto"  # bf16 autocast where the device supports it
    compile: bool = False
    seed: int = 1337
    threads: int = 0  # torch CPU threads; 0 = leave torch's default
    # also write TensorBoard event files under runs/<run>/tb/ (the tensorboard extra)
    tensorboard: bool = False

    def __post_init__(self) -> None:
        ModelShape.__post_init__(self)  # (zero-argument super() fails in slotted dataclasses)
        for name in ("batch_size", "grad_accum", "max_steps", "eval_interval", "eval_iters",
                     "save_interval", "keep_last"):
            _require(getattr(self, name) > 0, f"train.{name}", "> 0", getattr(self, name))
        _require(self.lr > 0, "train.lr", "> 0", self.lr)
        _require(0 <= self.min_lr <= self.lr, "train.min_lr", f"in [0, train.lr={self.lr}]",
                 self.min_lr)
        _require(self.warmup_steps >= 0, "train.warmup_steps", ">= 0", self.warmup_steps)
        _require(self.lr_decay_steps >= 0, "train.lr_decay_steps", ">= 0", self.lr_decay_steps)
        _require(0 < self.lr_decay_factor <= 1, "train.lr_decay_factor", "in (0, 1]",
                 self.lr_decay_factor)
        _require(self.weight_decay >= 0, "train.weight_decay", ">= 0", self.weight_decay)
        _require(0 <= self.beta1 < 1, "train.beta1", "in [0, 1)", self.beta1)
        _require(0 <= self.beta2 < 1, "train.beta2", "in [0, 1)", self.beta2)
        _require(self.grad_clip >= 0, "train.grad_clip", ">= 0", self.grad_clip)
        _require(self.patience >= 0, "train.patience", ">= 0", self.patience)
        _require(self.max_seconds >= 0, "train.max_seconds", ">= 0", self.max_seconds)
        _require(self.threads >= 0, "train.threads", ">= 0", self.threads)
        _require(bool(self.run) and "/" not in self.run and not self.run.startswith("."),
                 "train.run", "a plain folder name", self.run)


@dataclass(kw_only=True, slots=True)
class SampleConfig:
    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int = 0  # keep the k most likely tokens; 0 = off
    top_p: float = 1.0  # nucleus sampling; 1.0 = off
    seed: int = 0
    stop_at_eos: bool = True  # end the text at the end-of-text token

    def __post_init__(self) -> None:
        _require(self.max_new_tokens > 0, "sample.max_new_tokens", "> 0", self.max_new_tokens)
        _require(self.temperature >= 0, "sample.temperature", ">= 0", self.temperature)
        _require(self.top_k >= 0, "sample.top_k", ">= 0", self.top_k)
        _require(0 < self.top_p <= 1, "sample.top_p", "in (0, 1]", self.top_p)


@dataclass(kw_only=True, slots=True)
class EvaluateConfig:
    """What `cllm evaluate` scores (its windows: validate.eval_iters x validate.batch_size)."""

    checkpoint: str = ""  # a checkpoint, run or model folder; empty = the promoted model
    docs: list[str] = field(default_factory=list)  # score these documents ("val:3") instead


@dataclass(kw_only=True, slots=True)
class ValidateConfig:
    tolerance: float = 0.05  # fail when val loss exceeds the promoted record by this fraction
    eval_iters: int = 50  # batches per evaluation
    batch_size: int = 8
    canary_docs: int = 20  # val documents frozen as the canary set at first promotion

    def __post_init__(self) -> None:
        _require(self.tolerance >= 0, "validate.tolerance", ">= 0", self.tolerance)
        _require(self.eval_iters > 0, "validate.eval_iters", "> 0", self.eval_iters)
        _require(self.batch_size > 0, "validate.batch_size", "> 0", self.batch_size)
        _require(self.canary_docs >= 0, "validate.canary_docs", ">= 0", self.canary_docs)


@dataclass(kw_only=True, slots=True)
class ScheduleConfig:
    validate_cron: str = "0 * * * *"  # hourly
    retrain_cron: str = "0 3 * * *"  # daily at 03:00
    timezone: str = "UTC"
    min_new_docs: int = 10  # retrain only when at least this many new documents arrived
    retrain_from: Literal["promoted", "scratch"] = "promoted"
    server_host: str = "127.0.0.1"  # where `cllm serve` starts a Prefect server if none is set
    server_port: int = 4200

    def __post_init__(self) -> None:
        for name in ("validate_cron", "retrain_cron"):
            value = getattr(self, name)
            _require(len(value.split()) == 5, f"schedule.{name}", "a 5-field cron expression",
                     value)
        _require(self.min_new_docs >= 0, "schedule.min_new_docs", ">= 0", self.min_new_docs)
        _require(0 < self.server_port < 65536, "schedule.server_port", "a TCP port",
                 self.server_port)
        # Prefect's server API has no authentication: never expose it beyond this machine
        _require(_is_loopback(self.server_host), "schedule.server_host",
                 "a loopback address (127.0.0.1, ::1 or localhost; put an authenticating "
                 "proxy in front to reach it from elsewhere)", self.server_host)


@dataclass(kw_only=True, slots=True)
class FlowsConfig:
    """How the Prefect flows run their tasks."""

    task_runner: Literal["thread", "dask"] = "thread"  # dask: the scale-out option
    dask_address: str = ""  # an existing Dask scheduler (tcp://host:8786); empty = local cluster
    dask_workers: int = 2  # workers of the local Dask cluster (one process each)
    partitions: int = 0  # extraction tasks to fan out into; 0 = 1 (thread) or dask_workers

    def __post_init__(self) -> None:
        _require(self.dask_workers > 0, "flows.dask_workers", "> 0", self.dask_workers)
        _require(self.partitions >= 0, "flows.partitions", ">= 0", self.partitions)


@dataclass(kw_only=True, slots=True)
class Config:
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    flows: FlowsConfig = field(default_factory=FlowsConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain values only (enums as their strings): it goes into JSON, TOML, checkpoints."""
        return {f.name: dataclasses.asdict(getattr(self, f.name), dict_factory=_plain_dict)
                for f in dataclasses.fields(self)}

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.to_dict())


def _plain_dict(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: v.value if isinstance(v, Enum) else v for k, v in items}


def section_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


def _section_class(section: str) -> type:
    hints = typing.get_type_hints(Config)
    if section not in hints:
        raise ConfigError(
            f"unknown config section [{section}]; valid sections: {', '.join(section_names())}"
        )
    return hints[section]


def _coerce(key: str, expected: Any, value: Any) -> Any:
    """Check `value` against the field type `expected`; return it (ints widen to float)."""
    origin = typing.get_origin(expected)
    if isinstance(expected, type) and issubclass(expected, Enum):
        try:
            return expected(value)
        except ValueError:
            options = " | ".join(m.value for m in expected)
            raise ConfigError(f"{key} must be one of {options}, got {value!r}") from None
    if origin is Literal:
        choices = typing.get_args(expected)
        if value not in choices:
            options = " | ".join(map(str, choices))
            raise ConfigError(f"{key} must be one of {options}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(expected):
            try:
                return _coerce(key, option, value)
            except ConfigError:
                continue
        raise ConfigError(f"{key} has the wrong type: got {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(expected)
        if isinstance(value, str):  # "a,b" from --set or the environment
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", item_type, v) for i, v in enumerate(value)]
    if expected is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if expected is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if expected is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {expected!r}")  # a bug in this module


def _build_section(section: str, values: Mapping[str, Any]) -> Any:
    cls = _section_class(section)
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(
                f"unknown config key {section}.{key}; valid keys in [{section}]: {', '.join(valid)}"
            )
        kwargs[key] = _coerce(f"{section}.{key}", hints[key], value)
    return cls(**kwargs)


def _parse_scalar(text: str) -> Any:
    """A --set or environment value: TOML when it parses (3, 1e-3, true, [..]), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _split_key(dotted: str, origin: str) -> tuple[str, str]:
    section, sep, key = dotted.partition(".")
    if not sep or not section or not key:
        raise ConfigError(f"{origin}: expected section.key, got {dotted!r}")
    _section_class(section)
    return section, key


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Turn ["train.lr=3e-4", ...] into {"train": {"lr": 0.0003}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        dotted, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        section, key = _split_key(dotted.strip(), "--set")
        out.setdefault(section, {})[key] = _parse_scalar(raw.strip())
    return out


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """CLLM_TRAIN__LR=3e-4 -> {"train": {"lr": 0.0003}}; other CLLM_ variables are ignored."""
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        _split_key(f"{section}.{key}", f"environment {name}")
        out.setdefault(section, {})[key] = _parse_scalar(raw)
    return out


def _merge(into: dict[str, dict[str, Any]], layer: Mapping[str, Mapping[str, Any]]) -> None:
    for section, values in layer.items():
        into.setdefault(section, {}).update(values)


def _anchored(value: Any, folder: Path) -> Any:
    """A relative path (or list of them) from a config file, made relative to its folder."""
    if isinstance(value, list):
        return [_anchored(v, folder) for v in value]
    if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
        return str(folder / value)
    return value


def read_toml(path: Path) -> dict[str, dict[str, Any]]:
    """A config file's sections. Relative paths in it mean relative to the file's folder, so
    a run started from anywhere (a scheduled one, a worker's) reads the same files."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    folder = Path(path).absolute().parent
    for section, values in data.items():
        _section_class(section)
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path}: [{section}] must be a table")
        for key in PATH_KEYS.get(section, ()):
            if key in values:
                values[key] = _anchored(values[key], folder)
    return data


def build_config(layers: Iterable[Mapping[str, Mapping[str, Any]]]) -> Config:
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        _merge(merged, layer)
    for section in merged:
        _section_class(section)
    return Config(**{section: _build_section(section, merged.get(section, {}))
                     for section in section_names()})


def load_config(
    path: Path | str | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    base: Mapping[str, Mapping[str, Any]] | None = None,
    default_file: bool = True,
) -> Config:
    """Resolve the config, lowest layer first: defaults, `base` (a preset), the file `path`
    (or ./cllm.toml when present and `default_file`), the environment, `--set` overrides.

    `extra` holds values from CLI flags that mirror config keys; they win over everything.
    The CLI and the flows both resolve their config here.
    """
    layers: list[Mapping[str, Mapping[str, Any]]] = [base or {}]
    if path is None and default_file and Path(DEFAULT_CONFIG_NAME).is_file():
        path = Path(DEFAULT_CONFIG_NAME)
    if path is not None:
        layers.append(read_toml(Path(path)))
    layers.append(env_overrides(os.environ if environ is None else environ))
    layers.append(parse_overrides(overrides))
    if extra:
        layers.append(extra)
    return build_config(layers)


def replace(cfg: Config, section: str, **changes: Any) -> Config:
    """A copy of `cfg` with some keys of one section changed (checked like any other value)."""
    current = dataclasses.asdict(getattr(cfg, section))
    current.update(changes)
    new = dataclasses.replace(cfg)
    setattr(new, section, _build_section(section, current))
    return new


def save_resolved(cfg: Config, folder: Path, stage: str = "") -> Path:
    """Write the resolved config next to a stage's output, so the output says what made it.

    Stages sharing a folder (ingest and crawl both write raw/) pass their name.
    """
    from pipeline.atomic import atomic_write_text

    path = Path(folder) / (f"{stage}.{RESOLVED_CONFIG_NAME}" if stage else RESOLVED_CONFIG_NAME)
    atomic_write_text(path, cfg.to_toml())
    return path
