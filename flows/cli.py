"""CLI handlers of the orchestrated commands: run, demo, validate, retrain, serve.

Prefect reads its settings when imported, so each handler points Prefect at the data root
(and quiets its per-task logging) before anything imports `prefect`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)


def prepare_prefect(ctx: Any, verbose: int = 0) -> None:
    from flows.common import use_prefect_home_under

    use_prefect_home_under(ctx.root)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _flow_params(args: Any, ctx: Any) -> dict[str, Any]:
    """The JSON parameters every flow takes: where the data is and how it is configured."""
    return {"root": str(ctx.root.path),
            "config": str(ctx.config_path.absolute()) if ctx.config_path else None,
            "overrides": list(args.overrides)}


def _run_flow(name: str, call: Any) -> tuple[int, Any]:
    from pipeline.cli import EXIT_FAILED, EXIT_OK
    from pipeline.errors import ConfigError, EnvironmentProblem

    try:
        return EXIT_OK, call()
    except (ConfigError, EnvironmentProblem, KeyboardInterrupt):
        raise
    except Exception as e:  # a failed flow run: Prefect has recorded it; say why and exit 1
        log.error("%s failed: %s: %s", name, type(e).__name__, e)
        return EXIT_FAILED, None


def run(args: Any, ctx: Any) -> int:
    from pipeline.cli import EXIT_USAGE

    sources = ctx.cfg.sources
    if not (sources.urls or sources.paths or ctx.root.manifest.is_file()):
        print("cllm run: nothing to run on: set urls and/or paths in the [sources] section of "
              "cllm.toml (or try `cllm demo`)", file=sys.stderr)
        return EXIT_USAGE
    prepare_prefect(ctx, args.verbose)
    from flows.pipeline import pipeline_flow

    code, result = _run_flow("run", lambda: pipeline_flow(**_flow_params(args, ctx)))
    if result:
        d = result["decision"]
        print(f"run: {'promoted' if d['promoted'] else 'not promoted'} ({d['reason']}); "
              f"validation: {result['validation']}")
    return code


def demo(args: Any, ctx: Any) -> int:
    prepare_prefect(ctx, args.verbose)
    from flows.demo import run_demo

    code, summary = _run_flow("demo", lambda: run_demo(ctx.root, ctx.config_path,
                                                       list(args.overrides)))
    if summary is not None:
        print("\n".join(summary.lines()))
    return code


def validate(args: Any, ctx: Any) -> int:
    prepare_prefect(ctx, args.verbose)
    from flows.validate import validate_flow

    code, result = _run_flow("validate", lambda: validate_flow(**_flow_params(args, ctx)))
    if result is not None:
        print(f"validate: {result}")
    return code


def retrain(args: Any, ctx: Any) -> int:
    prepare_prefect(ctx, args.verbose)
    from flows.retrain import retrain_flow

    code, result = _run_flow("retrain", lambda: retrain_flow(**_flow_params(args, ctx)))
    if result is not None:
        print(f"retrain: {'retrained' if result.get('retrained') else result.get('reason')}")
    return code


def serve(args: Any, ctx: Any) -> int:
    prepare_prefect(ctx, args.verbose)
    from flows.serve import serve as serve_deployments

    try:
        return serve_deployments(ctx.cfg, ctx.root, ctx.config_path, list(args.overrides))
    except KeyboardInterrupt:
        print("serve: stopped", file=sys.stderr)
        return 0
