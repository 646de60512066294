"""Stage statistics: every item a stage saw is kept, dropped (with a reason), skipped (done
before) or failed (with an error); they serialise both ways and add up with `+`."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pipeline.records import Failure

MAX_FAILURES_KEPT = 1000  # failures listed in a summary; all are counted


@dataclass(kw_only=True, slots=True)
class StageStats:
    """What a stage did: every item is kept, dropped (with a reason) or failed (with an error)."""

    stage: str
    seen: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> count
    failed: Counter[str] = field(default_factory=Counter)  # error kind -> count
    skipped: Counter[str] = field(default_factory=Counter)  # already done -> count (re-runs)
    bytes: int = 0
    units: int = 0  # stage-specific work units: pages, tokens, steps
    unit_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # stage-specific figures
    failures: list[Failure] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def keep(self, n: int = 1) -> None:
        self.seen += n
        self.kept += n

    def drop(self, reason: str, n: int = 1) -> None:
        self.seen += n
        self.dropped[reason] += n

    def skip(self, reason: str, n: int = 1) -> None:
        self.seen += n
        self.skipped[reason] += n

    def fail(self, failure: Failure) -> None:
        self.seen += 1
        self.failed[failure.error] += 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append(failure)

    @property
    def n_failed(self) -> int:
        return sum(self.failed.values())

    def finish(self) -> StageStats:
        self.seconds = time.monotonic() - self.started
        return self

    def elapsed(self) -> float:
        return self.seconds or (time.monotonic() - self.started)

    def rate(self) -> float:
        """Items per second."""
        return self.seen / max(self.elapsed(), 1e-9)

    def summary(self) -> str:
        parts = [f"{self.stage}: {self.seen} seen, {self.kept} kept"]
        for label, counts in (("skipped", self.skipped), ("dropped", self.dropped),
                              ("failed", self.failed)):
            if counts:
                detail = ", ".join(f"{k}={v}" for k, v in counts.most_common())
                parts.append(f"{sum(counts.values())} {label} ({detail})")
        if self.units:
            parts.append(f"{self.units} {self.unit_name or 'units'}")
        if self.bytes:
            parts.append(f"{self.bytes / 1e6:.1f} MB")
        secs = self.elapsed()
        parts.append(f"in {secs:.1f}s ({self.seen / max(secs, 1e-9):.1f}/s")
        if self.units:
            parts[-1] += f", {self.units / max(secs, 1e-9):.1f} {self.unit_name or 'units'}/s"
        parts[-1] += ")"
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "seen": self.seen,
            "kept": self.kept,
            "skipped": dict(self.skipped),
            "dropped": dict(self.dropped),
            "failed": dict(self.failed),
            "bytes": self.bytes,
            "units": self.units,
            "unit_name": self.unit_name,
            "seconds": round(self.elapsed(), 3),
            "rate_per_s": round(self.rate(), 3),
            "extra": self.extra,
            "failures": [f.to_dict() for f in self.failures],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageStats:
        """The inverse of `to_dict` (what a child process or a Prefect task sent back)."""
        stats = cls(stage=data["stage"], seen=data.get("seen", 0), kept=data.get("kept", 0),
                    dropped=Counter(data.get("dropped", {})),
                    failed=Counter(data.get("failed", {})),
                    skipped=Counter(data.get("skipped", {})), bytes=data.get("bytes", 0),
                    units=data.get("units", 0), unit_name=data.get("unit_name", ""),
                    extra=dict(data.get("extra", {})),
                    failures=[Failure.from_dict(f) for f in data.get("failures", [])])
        stats.seconds = data.get("seconds", 0.0)
        return stats

    def __add__(self, other: StageStats) -> StageStats:
        """Two parts of one stage's work as one (fanned-out tasks, a child's and the parent's
        share): counts add up, the elapsed time is the longer one, extras of the right win."""
        total = StageStats(stage=self.stage, unit_name=self.unit_name or other.unit_name)
        total.seen, total.kept = self.seen + other.seen, self.kept + other.kept
        for name in ("dropped", "failed", "skipped"):
            setattr(total, name, getattr(self, name) + getattr(other, name))
        total.bytes, total.units = self.bytes + other.bytes, self.units + other.units
        total.extra = {**self.extra, **other.extra}
        total.failures = (self.failures + other.failures)[:MAX_FAILURES_KEPT]
        total.started = min(self.started, other.started)
        total.seconds = max(self.elapsed(), other.elapsed())
        return total
