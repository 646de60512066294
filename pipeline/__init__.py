"""The CLLM pipeline's core: config, records, data root, atomic writes, stats, core stages."""

__version__ = "0.1.0"
