"""The PNG report of a run: loss (train and val), learning rate and throughput against step."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from model.metrics import read_metrics, step_rows
from pipeline.atomic import atomic_write_bytes

log = logging.getLogger(__name__)


def plot_metrics(metrics: Path, out: Path, title: str = "") -> Path:
    """Draw runs/<name>/metrics.jsonl into `out` (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(metrics) if "step" in r]
    train_rows = step_rows(rows)
    if not train_rows:
        raise ValueError(f"{metrics} has no training steps to plot")
    steps = [r["step"] for r in train_rows]
    val_rows = [r for r in rows if r.get("val_loss") is not None]
    fig, (ax_loss, ax_lr, ax_speed) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    ax_loss.plot(steps, [r["loss"] for r in train_rows], label="train", linewidth=0.8)
    if val_rows:
        ax_loss.plot([r["step"] for r in val_rows], [r["val_loss"] for r in val_rows],
                     marker="o", label="val")
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_lr.plot(steps, [r["lr"] for r in train_rows])
    ax_lr.set_ylabel("learning rate")
    ax_lr.grid(alpha=0.3)
    ax_speed.plot(steps, [r.get("tokens_per_s") or 0 for r in train_rows])
    ax_speed.set_ylabel("tokens/s")
    ax_speed.set_xlabel("step")
    ax_speed.grid(alpha=0.3)
    fig.suptitle(title or Path(metrics).parent.name)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)
