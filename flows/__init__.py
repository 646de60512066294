"""Prefect flows and deployments chaining every stage."""
