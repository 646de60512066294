"""Progress of a stage: a bar on a terminal, else a log line every LOG_EVERY_S."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from pipeline.stats import StageStats

log = logging.getLogger(__name__)

LOG_EVERY_S = 10.0  # without a terminal, a progress line this often


class Progress:
    """Progress for one stage: tqdm on a terminal, a log line every LOG_EVERY_S otherwise.

    Use as a context manager; call `update(n)` as items finish.
    """

    def __init__(self, stats: StageStats, total: int | None = None, unit: str = "item",
                 enabled: bool = True) -> None:
        self.stats = stats
        self.total = total
        self.unit = unit
        self.count = 0
        self._bar: Any = None
        self._last_log = time.monotonic()
        self._enabled = enabled

    def __enter__(self) -> Progress:
        if self._enabled and sys.stderr.isatty() and log.isEnabledFor(logging.INFO):
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, unit=self.unit, desc=self.stats.stage,
                             dynamic_ncols=True, leave=False)
        return self

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            return
        now = time.monotonic()
        if self._enabled and now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            of_total = f"/{self.total}" if self.total else ""
            extra = "".join(f", {k}={v}" for k, v in postfix.items())
            rate = self.count / max(self.stats.elapsed(), 1e-9)
            log.info("%s: %d%s %ss (%.1f/s%s)", self.stats.stage, self.count, of_total,
                     self.unit, rate, extra)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
