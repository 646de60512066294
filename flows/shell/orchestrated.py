"""The orchestrated commands: run, demo, validate, retrain, serve (each runs Prefect flows).

Prefect reads its settings when imported, so each handler points Prefect at the data root
(and quiets its per-task logging) before anything imports `prefect`. Each command ends with a
summary a person reads (stdout); a flow that fails ends as one line naming why, with Prefect's
account and its traceback in the data root's log file.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any

from flows.shell.runner import (
    EXIT_ENVIRONMENT,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    failed_completely,
    say,
)

log = logging.getLogger(__name__)

SOURCE_STAGES = ("crawl", "ingest")
# Prefect gives its ephemeral server 20 s to start: a busy 2-core machine needs longer
EPHEMERAL_STARTUP_S = "120"


def prepare_prefect(ctx: Any, verbose: int = 0) -> None:
    from flows.common import use_prefect_home_under

    use_prefect_home_under(ctx.root)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_S)
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _flow_params(args: Any, ctx: Any) -> dict[str, Any]:
    """The JSON parameters every flow takes: where the data is and how it is configured."""
    return {"root": str(ctx.root.path),
            "config": str(ctx.config_path.absolute()) if ctx.config_path else None,
            "overrides": list(args.overrides)}


def _run_flow(name: str, call: Any, ctx: Any) -> tuple[int, Any]:
    from pipeline.errors import ConfigError, EnvironmentProblem
    from pipeline.lock import LockedError

    try:
        return EXIT_OK, call()
    except (ConfigError, EnvironmentProblem, LockedError, KeyboardInterrupt):
        raise  # the runner says these in one line, with their own exit codes
    except Exception as e:  # a failed flow run: Prefect has recorded it; say why and exit 1
        log.debug("%s failed", name, exc_info=True)
        print(f"cllm {name}: failed: {type(e).__name__}: {e} (details in "
              f"{ctx.root.logs / 'cllm.log'})", file=sys.stderr)
        return EXIT_FAILED, None


def _count(counts: dict[str, int]) -> int:
    return sum(counts.values()) if counts else 0


def stage_line(name: str, stats: dict[str, Any]) -> str:
    """One stage of a flow's result, as a person reads it."""
    if stats.get("cached"):  # the figures are an earlier run's: say what this one did
        return f"  {name:<11}nothing new (its input is unchanged since an earlier run)"
    parts = [f"{stats.get('kept', 0)} new"]
    for label in ("skipped", "dropped", "failed"):
        counts = stats.get(label) or {}
        if counts:
            detail = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            parts.append(f"{_count(counts)} {label} ({detail})")
    return f"  {name:<11}{'; '.join(parts)}"


def _loss(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) and math.isfinite(value) else "n/a"


def validation_line(v: dict[str, Any]) -> str:
    if not v.get("validated"):
        return f"  {'validation':<11}not run: {v.get('reason', 'no promoted model')}"
    verdict = "OK" if v.get("ok") else "REGRESSED: " + "; ".join(v.get("problems", []))
    return (f"  {'validation':<11}{v['model']} {verdict} (val loss {_loss(v.get('val_loss'))}, "
            f"bits per byte {_loss(v.get('val_bpb'))}, canary loss {_loss(v.get('canary_loss'))})")


def training_lines(result: dict[str, Any]) -> list[str]:
    t, d = result["train"], result["decision"]
    run = os.path.basename(t["run_dir"])
    verdict = f"promoted as {d['model_id']}" if d["promoted"] else "not promoted"
    return [f"  {'training':<11}run {run}: {t['steps']} steps (stopped: {t['stop_reason']}), "
            f"last train loss {_loss(t.get('last_loss'))}, best val loss "
            f"{_loss(t.get('best_val_loss'))}",
            f"  {'decision':<11}{verdict}: {d['reason']} (candidate: step {d['step']})"]


def _ingest_lines(ingested: dict[str, Any]) -> list[str]:
    return [stage_line(name, stats) for name, stats in ingested.items()]


def sources_failed(ingested: dict[str, Any]) -> list[str]:
    """The source stages that yielded nothing because everything given to them failed."""
    from pipeline.stats import StageStats

    return [name for name in SOURCE_STAGES if name in ingested
            and failed_completely(StageStats.from_dict(ingested[name]))]


def _ingest_code(ingested: dict[str, Any]) -> int:
    failed = sources_failed(ingested)
    for name in failed:
        print(f"cllm: {name}: every source failed (see the failures above)", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def run_summary(result: dict[str, Any]) -> list[str]:
    lines = ["run:", *_ingest_lines(result["ingest"])]
    if not result["trained"]:
        lines.append(f"  {'training':<11}not trained: {result['reason']}")
        return lines
    return [*lines, *training_lines(result), validation_line(result["validation"])]


def run(args: Any, ctx: Any) -> int:
    sources = ctx.cfg.sources
    if not (sources.urls or sources.paths or ctx.root.manifest.is_file()):
        print("cllm run: nothing to run on: set urls and/or paths in the [sources] section of "
              "cllm.toml (or try `cllm demo`)", file=sys.stderr)
        return EXIT_USAGE
    prepare_prefect(ctx, args.verbose)
    from flows.chain import pipeline_flow

    code, result = _run_flow("run", lambda: pipeline_flow(**_flow_params(args, ctx)), ctx)
    if result is None:
        return code
    print("\n".join(run_summary(result)))
    return _ingest_code(result["ingest"])


def demo(args: Any, ctx: Any) -> int:
    prepare_prefect(ctx, args.verbose)
    from flows.demo import run_demo

    code, summary = _run_flow("demo", lambda: run_demo(ctx.root, ctx.config_path,
                                                       list(args.overrides)), ctx)
    if summary is not None:
        print("\n".join(demo_lines(summary)))
    return code


def demo_lines(summary: Any) -> list[str]:
    """Where everything the demo made is, and a sample of the promoted model's text."""
    r, root = summary.result, summary.root
    crawled = r["ingest"].get("crawl", {})
    lines = [
        "",
        "CLLM demo: done",
        f"  sample site        {summary.site_url} ({crawled.get('kept', 0)} pages stored, "
        f"{sum(crawled.get('skipped', {}).values())} not new this run)",
        f"  raw store          {root / 'raw'}",
        f"  documents          {root / 'docs'} ({summary.documents} documents, "
        f"{summary.ocr_pages} pages OCRed)",
        f"  token shards       {root / 'shards'} ({summary.tokens['train']} train and "
        f"{summary.tokens['val']} val tokens)",
    ]
    if r["trained"]:
        lines += [*training_lines(r), f"  loss curves        {r['train'].get('report')}",
                  validation_line(r["validation"])]
    else:
        lines.append(f"  not trained        {r['reason']}")
    return [*lines,
            f"  promoted model     {root / 'models' / 'current'}",
            f"  generated sample   {root / 'demo-sample.txt'}",
            "",
            summary.sample]


def validate(args: Any, ctx: Any) -> int:
    prepare_prefect(ctx, args.verbose)
    from flows.validate import validate_flow

    code, result = _run_flow("validate", lambda: validate_flow(**_flow_params(args, ctx)), ctx)
    if result is not None and result.get("skipped"):  # the data root is busy: as a lock
        say("cllm validate", result["reason"])
        return EXIT_ENVIRONMENT
    if result is not None:
        print("validate:\n" + validation_line(result))
    return code


def retrain(args: Any, ctx: Any) -> int:
    prepare_prefect(ctx, args.verbose)
    from flows.retrain import retrain_flow

    code, result = _run_flow("retrain", lambda: retrain_flow(**_flow_params(args, ctx)), ctx)
    if result is None:
        return code
    if result.get("skipped"):  # another retrain holds the data root: like a locked stage
        say("cllm retrain", result["reason"])
        return EXIT_ENVIRONMENT
    lines = ["retrain:", *_ingest_lines(result["ingest"])]
    if result["retrained"]:
        lines += [*training_lines(result), validation_line(result["validation"])]
    else:
        lines.append(f"  {'training':<11}not retrained: {result['reason']}")
    print("\n".join(lines))
    return _ingest_code(result["ingest"])


def serve(args: Any, ctx: Any) -> int:
    prepare_prefect(ctx, args.verbose)
    from flows.serve import serve as serve_deployments

    try:
        return serve_deployments(ctx.cfg, ctx.root, ctx.config_path, list(args.overrides))
    except KeyboardInterrupt:
        print("serve: stopped", file=sys.stderr)
        return 0
