"""What every flow shares: resolving the config and data root from flow parameters, Prefect's
home under the data root, cache keys by content, and a table artifact per stage.

Flow parameters are plain JSON (a root path, a config path, `--set` overrides) so that the
same flows run from the CLI, from `cllm serve` deployments and from `prefect deploy`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.config import Config, load_config
from pipeline.layout import DataRoot
from pipeline.lock import lock_holder
from pipeline.parallel import die_with_parent
from pipeline.stats import StageStats

log = logging.getLogger(__name__)

GENERATION_FILE = ".generation"
SERVE_PID_ENV = "CLLM_SERVE_PID"  # set by `cllm serve` for the flow runs it starts
RETRAIN_LOCK = "retrain"  # held in the data root's state/ for the whole of a retrain


def retrain_holder(root: DataRoot) -> str | None:
    """The pid of the retrain running on this data root now, or None."""
    return lock_holder(root.state, RETRAIN_LOCK)


def die_with_serve() -> None:
    """In a flow run's process that `cllm serve` started: die when it dies. Prefect's runner
    does not stop its flow runs when it is killed; they would go on without anyone to report
    to, holding the stage locks, while the next `cllm serve` starts the same work."""
    # only the flow run's own process calls this (its children run no flows)
    serve_pid = os.environ.get(SERVE_PID_ENV)
    if not serve_pid or "PREFECT__FLOW_RUN_ID" not in os.environ:
        return
    die_with_parent(signal.SIGKILL)
    if os.getppid() != int(serve_pid):  # it died before the kernel was told to tell us
        os._exit(1)


def use_prefect_home_under(root: DataRoot) -> None:
    """Keep Prefect's database and results under the data root unless the user chose a place.

    Must run before `prefect` is imported: Prefect reads its settings at import time.
    """
    if "PREFECT_API_URL" in os.environ or "PREFECT_HOME" in os.environ:
        return
    home = root.state / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(home)


def resolve(root: str, config: str | None = None, overrides: Iterable[str] = (),
            base: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[Config, DataRoot]:
    """The Config and DataRoot a flow run works on (the CLI's loader; a flow reads the config
    file it is given, never one that happens to be in its working directory).

    `base` is a preset under the user's settings (the demo's small model, for instance).
    """
    die_with_serve()
    return (load_config(config, overrides, base=base, default_file=False), DataRoot.at(root))


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts: the content key Prefect caches a task under."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def generation(folder: Path) -> str:
    """An id that changes when an output folder is deleted and made again.

    Cache keys include it, so wiping a stage's output makes the stage really run again.
    """
    marker = folder / GENERATION_FILE
    if not marker.is_file():
        from pipeline.atomic import atomic_write_text

        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, uuid.uuid4().hex)
    return marker.read_text().strip()


def stats_table(stats: StageStats) -> list[dict[str, Any]]:
    """Rows for a Prefect table artifact: counts, rates, and every reason with its count."""
    rows: list[dict[str, Any]] = [
        {"metric": "seen", "value": stats.seen},
        {"metric": "kept", "value": stats.kept},
        {"metric": "seconds", "value": round(stats.elapsed(), 2)},
        {"metric": "items per second", "value": round(stats.rate(), 2)},
    ]
    if stats.units:
        rows.append({"metric": stats.unit_name or "units", "value": stats.units})
    if stats.bytes:
        rows.append({"metric": "bytes", "value": stats.bytes})
    for label, counts in (("skipped", stats.skipped), ("dropped", stats.dropped),
                          ("failed", stats.failed)):
        for reason, count in counts.most_common():
            rows.append({"metric": f"{label}: {reason}", "value": count})
    for key, value in stats.extra.items():
        if isinstance(value, int | float | str):
            rows.append({"metric": key, "value": value})
    return rows


def artifact_key(text: str) -> str:
    """Prefect artifact keys allow only lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "stage"


def publish_stats(stats: StageStats, key: str | None = None) -> None:
    """The stage's summary line in the log, and its table artifact in Prefect."""
    from prefect.artifacts import create_table_artifact

    log.info("%s", stats.summary())

    create_table_artifact(table=stats_table(stats), key=artifact_key(key or stats.stage),
                          description=stats.summary())


def stats_dict(stats: StageStats) -> dict[str, Any]:
    """What a task returns (JSON, so Prefect can persist and cache it)."""
    out = stats.to_dict()
    out["summary"] = stats.summary()
    return out
