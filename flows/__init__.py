"""Prefect flows and deployments chaining every stage."""

from flows.common import die_with_serve_from_the_engine_start

# first thing in a flow run's engine process: the engine imports this package to load a flow
die_with_serve_from_the_engine_start()
