"""Prefect flows and deployments chaining every stage."""

import sys

# First thing in a flow run's engine process: the engine imports this package to load a flow.
# Only there (the test die_with_serve_from_the_engine_start makes): the legacy tools import
# this package too, and flows.common's imports (multiprocessing, the data root, the stats)
# were a quarter of their start.
if getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None) \
        == "prefect.engine":
    from flows.common import die_with_serve_from_the_engine_start

    die_with_serve_from_the_engine_start()
