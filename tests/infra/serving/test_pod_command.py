"""The serving pod's container, run for real as the Deployment describes it (pod.py: the
embedder's Deployment and ConfigMap from the sandbox stack, in a private PID, network and mount
namespace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gantry.service import load_service
from tests import netns
from tests.infra.serving.pod import pod_inputs, run_pod
from tests.infra.serving.test_model_service import Program


@pytest.mark.skipif(not netns.available(), reason="needs unshare (user namespaces)")
def test_embedder_pod_serves_through_haproxy_scales_on_its_gauge_and_drains(
    program: Program, tmp_path: Path
) -> None:
    container, config = pod_inputs(program("sandbox").manifests("serving"), "embedder")
    assert {"name": "RAY_SERVE_ENABLE_HA_PROXY", "value": "1"} in container["env"]
    # A replica killed mid-request: HAProxy replays what it can on another (docs/reliability.md).
    retry_on = {"name": "RAY_SERVE_HAPROXY_RETRY_ON", "value": "conn-failure empty-response"}
    assert retry_on in container["env"]

    result = run_pod(container, config, tmp_path)

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
