"""Shared core of the CLLM pipeline: config, records, data root, atomic writes, stats, CLI."""

__version__ = "0.1.0"
