"""Every deployment's entrypoint loads the way Prefect loads it when a run starts: in a fresh
process, from a folder that is not the repository. And no module of ours can shadow another
module when Prefect puts a flow file's folder first on sys.path (a file-path entrypoint):
`flows/pipeline.py` once hid the `pipeline` package, and every scheduled run crashed.
"""

from __future__ import annotations

import importlib.metadata
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "crawler", "docproc", "model", "flows")
LOAD = ("import sys; from prefect.flows import load_flow_from_entrypoint; "
        "print(load_flow_from_entrypoint(sys.argv[1], use_placeholder_flow=False).name)")


def _served_entrypoints(tmp_path: Path) -> dict[str, str]:
    from flows.serve import deployments
    from pipeline.config import build_config
    from pipeline.layout import DataRoot

    deps = deployments(build_config([]), DataRoot.at(tmp_path / "data"), None, [])
    return {d.name: d.entrypoint for d in deps}


def _yaml_entrypoints() -> dict[str, str]:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {d["name"]: d["entrypoint"] for d in spec["deployments"]}


@pytest.mark.parametrize("source", ["cllm serve", "prefect.yaml"])
def test_every_entrypoint_loads_in_a_fresh_process_elsewhere(tmp_path: Path, source: str
                                                            ) -> None:
    entrypoints = _served_entrypoints(tmp_path) if source == "cllm serve" \
        else _yaml_entrypoints()
    assert set(entrypoints) == {"validate", "retrain"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name, entrypoint in entrypoints.items():
        done = subprocess.run([sys.executable, "-c", LOAD, entrypoint], cwd=elsewhere,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{entrypoint}: {done.stderr[-2000:]}"
        assert done.stdout.strip().splitlines()[-1] == name


def _top_level_names() -> set[str]:
    names = set(sys.stdlib_module_names) | set(importlib.metadata.packages_distributions())
    names |= {m.name for m in pkgutil.iter_modules()}
    return names | set(PACKAGES)


def test_no_flow_module_shadows_another_module() -> None:
    taken = _top_level_names()
    clashes = [str(path.relative_to(REPO)) for path in (REPO / "flows").glob("*.py")
               if path.stem != "__init__" and path.stem in taken]
    assert not clashes, f"these flow modules hide a module of the same name: {clashes}"
