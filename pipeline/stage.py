"""The Stage: one step of the pipeline as one object. The `cllm` commands, the Prefect tasks,
`cllm status` and the legacy tools are made from these; the one list of them sits above
every package it names (the core names none).

A stage reads only hand-offs on disk (DESIGN.md) and writes its own; what it reads and writes
is declared here by name (see `HANDOFFS`), for `cllm status` and the flows' cache keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.layout import DataRoot
    from pipeline.stats import StageStats

# hand-off name -> its folder under the data root; "files" and "web" are outside it
HANDOFFS = {"raw": "raw", "docs": "docs", "clean": "state/clean", "tokenizer": "tokenizer",
            "shards": "shards", "runs": "runs", "models": "models"}
SOURCES = ("files", "web")


class StageRun(Protocol):
    def __call__(self, cfg: Config, root: DataRoot, *, progress: bool = True) -> StageStats:
        ...


def _always(cfg: Config) -> bool:
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    name: str  # the command (`cllm <name>`) and the task
    section: str  # the config section that configures it
    summary: str  # what it does, in one line (the command's help)
    reads: tuple[str, ...]  # hand-offs (HANDOFFS) or sources (SOURCES) it reads
    writes: tuple[str, ...]  # hand-offs it writes
    run: StageRun  # run(cfg, root, progress=...) -> StageStats; imports its libraries lazily
    applies: Callable[[Config], bool] = _always  # whether a flow runs it for this config
    network: bool = False  # its failures can be transient: the flows retry it
    cached: bool = True  # the flows skip it when what it reads and its config are unchanged
    also_configured_by: tuple[str, ...] = ()  # other sections its output depends on
    # run one of k disjoint shares of the work: run_share(cfg, root, i, k) (the flows' fan-out)
    run_share: Callable[[Config, DataRoot, int, int], StageStats] | None = None

    @property
    def sections(self) -> tuple[str, ...]:
        """Every config section its output depends on."""
        return (self.section, *self.also_configured_by)

    def __post_init__(self) -> None:
        for place in self.reads + self.writes:
            if place not in HANDOFFS and place not in SOURCES:
                raise ValueError(f"stage {self.name}: unknown hand-off {place!r}")


def handoff_path(root: DataRoot, name: str) -> Path:
    """The folder of a hand-off under the data root."""
    return root.path / HANDOFFS[name]
