"""Prefect flows and deployments chaining every stage."""

import sys


def _in_a_flow_run_engine() -> bool:
    """Whether this process is a `python -m prefect.engine` (a flow run's own process)."""
    main = sys.modules.get("__main__")
    return getattr(getattr(main, "__spec__", None), "name", None) == "prefect.engine"


# First thing in a flow run's engine process (it imports this package to load the flow before
# it runs it): an engine that `cllm serve` started dies with serve from here on, not only once
# the flow body starts, so one orphaned while still starting (seconds of imports and API
# calls, more under load) does not go on running after serve was killed. Imported only there:
# the legacy tools import this package too, and flows.common's imports were a quarter of
# their start.
if _in_a_flow_run_engine():
    from flows.common import die_with_serve

    die_with_serve()
