"""The serving pod's container, run for real as the Deployment describes it.

The embedder's Deployment and ConfigMap come from the Pulumi program (sandbox stack, under
mocks); its command (`ray start` with the pinned ports, then `serve run` of the pod's
serve.yaml) runs with the container's env in a private PID, network and mount namespace: like a
pod, it owns its interfaces (HAProxy's stats and metrics ports bind every one of them), its
/tmp/ray and /tmp/haproxy-serve, and nothing outlives it. pod_driver.py drives it from inside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry.service import load_service
from infra.serving.manifests import SERVE_CONFIG_DIR
from tests import netns
from tests.conftest import REPO
from tests.infra.serving.test_model_service import Program, serving

DRIVER = Path(__file__).with_name("pod_driver.py")
# Private mounts over the pod's fixed temp paths (an emptyDir in the real pod).
POD_TMP_DIRS = ("/tmp/ray", "/tmp/haproxy-serve")


def run_pod(container: dict[str, Any], serve_yaml: Path, out: Path) -> dict[str, Any]:
    command = container["command"][-1].replace(f"{SERVE_CONFIG_DIR}/serve.yaml", str(serve_yaml))
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    metrics = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
    env = {
        **os.environ,
        # What the image adds: its venv first on PATH, the code on PYTHONPATH.
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "RAY_USAGE_STATS_ENABLED": "0",
        **{e["name"]: e["value"] for e in container["env"]},
    }
    driver = [sys.executable, str(DRIVER), command, str(port), str(metrics), str(out)]
    subprocess.run(
        netns.argv(driver, private_dirs=POD_TMP_DIRS, own_pids=True), env=env, timeout=600
    )
    return json.loads(out.read_text())


@pytest.mark.skipif(not netns.available(), reason="needs unshare (user namespaces)")
def test_embedder_pod_serves_through_haproxy_scales_on_its_gauge_and_drains(
    program: Program, tmp_path: Path
) -> None:
    template = serving(program, "sandbox", "Deployment")["embedder"]["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert {"name": "RAY_SERVE_ENABLE_HA_PROXY", "value": "1"} in container["env"]
    config = yaml.safe_load(
        serving(program, "sandbox", "ConfigMap")["embedder-serve"]["data"]["serve.yaml"]
    )
    for app in config["applications"]:
        for dep in app["deployments"]:
            dep["num_replicas"] = 1  # one model load keeps this short; HAProxy routes the same
    serve_yaml = tmp_path / "serve.yaml"
    serve_yaml.write_text(yaml.safe_dump(config))

    result = run_pod(container, serve_yaml, tmp_path / "result.json")

    assert "error" not in result, result.get("error")
    assert result["ready"]["ready"] is True and result["healthz"] == 200
    # HAProxy, not Serve's proxy, answers the pod's port on every interface (as a pod must).
    assert result["listeners"].get("0.0.0.0:8000") == "haproxy", result["listeners"]
    one = result["one"]
    assert one["status"] == 200 and len(one["body"]["data"][0]["embedding"]) == 384
    # The service's own error body comes through HAProxy unchanged.
    assert result["bad"]["status"] == 422
    assert result["bad"]["body"]["error"]["param"] == "input"
    assert result["concurrent"] == [200]
    # The series the HPA's prometheus-adapter rule reads exists without Serve's proxy.
    assert any(m.startswith("ray_serve_num_ongoing_http_requests{") for m in result["metrics"])
    assert any('version="v1"' in m for m in result["metrics"])
    # SIGINT (the image's STOPSIGNAL) drains and exits cleanly, within the pod's grace period
    # after preStop (the Deployment's terminationGracePeriodSeconds counts both).
    spec = load_service("embedder")
    assert result["exit_code"] == 0, result
    assert result["stop_s"] <= spec.termination_grace_s - spec.pre_stop_s, result["stop_s"]
