"""prefect.yaml names flows that exist, with parameters they accept and valid schedules."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_prefect_yaml_entrypoints_and_parameters() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    names = {d["name"] for d in spec["deployments"]}
    assert names == {"validate", "retrain"}
    for dep in spec["deployments"]:
        module_name, func = dep["entrypoint"].rsplit(".", 1)  # a module path: no file paths
        module = importlib.import_module(module_name)
        flow = getattr(module, func)
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(dep["parameters"]) <= accepted
        assert all(len(s["cron"].split()) == 5 for s in dep["schedules"])
