"""runs/<name>/metrics.jsonl: one JSON object per line, written by the trainer (`MetricsLog`),
read by the report, the flows and the tests (`read_metrics`).

A step's row has step, loss, lr, grad_norm, tokens_per_s, tokens, mfu, time_s (and val_loss,
val_ppl, val_bpb after an evaluation); other rows carry an "event" (final_eval, horizon,
nan_loss). With train.tensorboard the same figures also go to TensorBoard event files under
runs/<name>/tb/ (`TensorBoardLog`).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_write_text

METRICS_NAME = "metrics.jsonl"


TENSORBOARD_DIR = "tb"
# metrics.jsonl key -> TensorBoard tag
TENSORBOARD_TAGS = {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm",
                    "tokens_per_s": "train/tokens_per_s", "val_loss": "val/loss",
                    "val_bpb": "val/bits_per_byte"}


class TensorBoardLog:
    """TensorBoard event files (torch.utils.tensorboard) of the figures of metrics rows; a
    resumed run purges what a killed one logged past its checkpoint's step."""

    def __init__(self, folder: Path, start_step: int) -> None:
        from pipeline.errors import EnvironmentProblem

        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise EnvironmentProblem(
                "train.tensorboard = true needs the tensorboard package: pip install -e "
                "'.[tensorboard]' in the project (or pip install 'cllm-pipeline[tensorboard]')"
            ) from None
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=start_step + 1)

    def write(self, row: dict[str, Any]) -> None:
        for key, tag in TENSORBOARD_TAGS.items():
            value = row.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(tag, value, global_step=row["step"])

    def close(self) -> None:
        self.writer.close()


class MetricsLog:
    """runs/<name>/metrics.jsonl: one JSON line per step; a resume drops lines past its step.
    With `tensorboard`, every row's figures also go to event files in runs/<name>/tb/."""

    def __init__(self, path: Path, enabled: bool, tensorboard: bool = False) -> None:
        self.path = path
        self.enabled = enabled
        self.tensorboard = tensorboard and enabled
        self._fh: Any = None
        self._tb: TensorBoardLog | None = None

    def rewind(self, step: int) -> None:
        """Keep only complete lines up to `step` (a killed run may have logged further)."""
        if not self.enabled:
            return
        if self.tensorboard:
            self._tb = TensorBoardLog(self.path.parent / TENSORBOARD_DIR, step)
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
        if self._tb is not None:
            self._tb.write(row)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


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
