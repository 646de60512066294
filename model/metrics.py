"""runs/<name>/metrics.jsonl: one JSON object per line, written by the trainer (`MetricsLog`),
read by the report, the flows and the tests (`read_metrics`).

A step's row has step, loss, lr, grad_norm, tokens_per_s, tokens, mfu, time_s (and val_loss,
val_ppl after an evaluation); other rows carry an "event" (final_eval, horizon, nan_loss).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_write_text

METRICS_NAME = "metrics.jsonl"


class MetricsLog:
    """runs/<name>/metrics.jsonl: one JSON line per step; a resume drops lines past its step."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        self._fh: Any = None

    def rewind(self, step: int) -> None:
        """Keep only complete lines up to `step` (a killed run may have logged further)."""
        if not self.enabled:
            return
        kept = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the half line a kill left
                if isinstance(row, dict) and row.get("step", math.inf) <= step:
                    kept.append(line)
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the run
        self._fh.write(json.dumps(row, allow_nan=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl (a trailing half line is skipped)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def step_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of training steps (not the event rows: final_eval, horizon, nan_loss)."""
    return [r for r in rows if "step" in r and "loss" in r and "event" not in r]
