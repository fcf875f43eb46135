"""A serving pod's container run for real on this machine, as the Deployment describes it.

The Deployment and its ConfigMap come from the Pulumi program (under mocks); the container's
command (`ray start` with the pinned ports, then `serve run` of the pod's serve.yaml) runs with
the container's env in a private PID, network and mount namespace (tests/netns.py): like a pod,
it owns its interfaces (HAProxy's stats and metrics ports bind every one of them), its /tmp/ray
and /tmp/haproxy-serve, and nothing outlives it. pod_driver.py drives it from inside. Used by
test_pod_command.py and tests/benchmarks/bench_pod_start.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from infra.serving.manifests import SERVE_CONFIG_DIR
from tests import netns

REPO = Path(__file__).resolve().parents[3]
DRIVER = Path(__file__).with_name("pod_driver.py")
# Private mounts over the pod's fixed temp paths (an emptyDir in the real pod).
POD_TMP_DIRS = ("/tmp/ray", "/tmp/haproxy-serve")


def pod_inputs(
    manifests: list[dict[str, Any]], service: str, replicas: int = 1
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The service's container and its serve.yaml (`replicas` per pod: one model load keeps a
    run short; HAProxy routes the same), from the serving layer's manifests."""
    by_kind = {(m["kind"], m["metadata"]["name"]): m for m in manifests}
    container = by_kind[("Deployment", service)]["spec"]["template"]["spec"]["containers"][0]
    config = yaml.safe_load(by_kind[("ConfigMap", f"{service}-serve")]["data"]["serve.yaml"])
    for app in config["applications"]:
        for dep in app["deployments"]:
            dep["num_replicas"] = replicas
    return container, config


def run_pod(
    container: dict[str, Any], config: dict[str, Any], workdir: Path, bin_dir: Path | None = None
) -> dict[str, Any]:
    """Run the pod in its namespaces until pod_driver.py has stopped it; what it saw (JSON).
    `bin_dir`: the venv the container's commands run from (default: this interpreter's)."""
    serve_yaml, out = workdir / "serve.yaml", workdir / "result.json"
    serve_yaml.write_text(yaml.safe_dump(config))
    command = container["command"][-1].replace(f"{SERVE_CONFIG_DIR}/serve.yaml", str(serve_yaml))
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    metrics = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
    env = {
        **os.environ,
        # What the image adds: its venv first on PATH, the code on PYTHONPATH.
        "PATH": f"{bin_dir or Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "RAY_USAGE_STATS_ENABLED": "0",
        **{e["name"]: e["value"] for e in container["env"]},
    }
    driver = [sys.executable, str(DRIVER), command, str(port), str(metrics), str(out)]
    subprocess.run(
        netns.argv(driver, private_dirs=POD_TMP_DIRS, own_pids=True), env=env, timeout=600
    )
    return dict(json.loads(out.read_text()))
