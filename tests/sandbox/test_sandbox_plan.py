"""The sandbox's generated configs: pools as Ray node types, services as Serve applications."""

from __future__ import annotations

from pathlib import Path

import pytest

from gantry.errors import ConfigError
from gantry.sandbox_state import Routing, ServiceRouting
from gantry.stack import load_config, load_stack_file, read_stack_file
from sandbox import raycluster
from sandbox.gateway import map_entries
from sandbox.lifecycle import Plan

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plan() -> Plan:
    return Plan.from_config(load_stack_file(REPO / "Pulumi.sandbox.yaml"))


def test_gpu_pool_is_an_autoscaled_ray_node_type(plan: Plan) -> None:
    cfg = raycluster.autoscaling_config(plan.pools, plan.settings, "127.0.0.1:1234")
    assert cfg["provider"]["type"] == "fake_multinode"
    assert cfg["provider"]["gcs_address"] == "127.0.0.1:1234"
    gpu = cfg["available_node_types"]["gpu"]
    stack_gpu = next(
        p for p in load_stack_file(REPO / "Pulumi.sandbox.yaml").pools if p.name == "gpu"
    )
    assert (gpu["min_workers"], gpu["max_workers"]) == (stack_gpu.min_size, stack_gpu.max_size)
    assert gpu["resources"]["GPU"] == stack_gpu.gpus_per_node
    assert gpu["resources"]["pool:gpu"] > 0
    assert gpu["labels"]["gantry.dev/pool"] == "gpu"
    # The head is the cpu pool and has no GPU.
    head = cfg["available_node_types"][raycluster.HEAD_NODE_TYPE]
    assert "GPU" not in head["resources"] and head["resources"]["pool:cpu"] > 0
    assert cfg["idle_timeout_minutes"] == pytest.approx(plan.settings.idle_timeout_s / 60)


def test_head_binds_loopback_and_never_default_ports(plan: Plan) -> None:
    ports = {
        "gcs": 41001,
        "dashboard": 41002,
        "agent": 41003,
        "ray_client": 41004,
        "metrics": 41005,
    }
    argv = raycluster.head_argv(plan.pools, plan.settings, ports, Path("/tmp/x"), Path("/a.yaml"))
    assert "--node-ip-address=127.0.0.1" in argv and "--dashboard-host=127.0.0.1" in argv
    for flag, port in [
        ("--port", 41001),
        ("--dashboard-port", 41002),
        ("--ray-client-server-port", 41004),
    ]:
        assert f"{flag}={port}" in argv
    env = raycluster.ray_env(
        plan.settings,
        {"autoscaler_metrics": 41006, "dashboard_metrics": 41007, "replicas": 30100},
        base={},
    )
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    # Replicas serve HTTP on their own ports, in the range the gateway checks.
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] == "30100"
    assert int(env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"]) == 30100 + raycluster.REPLICA_PORTS
    assert env["RAY_AUTH_MODE"] == "disabled"
    assert env["RAY_FAKE_CLUSTER"] == "1"
    assert env["AUTOSCALER_METRIC_PORT"] == "41006"


def test_services_map_autoscaling_and_pools_onto_serve(plan: Plan) -> None:
    routing = Routing(services={n: ServiceRouting(stable=s.version) for n, s in plan.specs.items()})
    doc = plan.serve_document(routing, 45000)
    assert doc["http_options"]["host"] == "127.0.0.1" and doc["http_options"]["port"] == 45000
    apps = {a["name"]: a for a in doc["applications"]}
    emb = plan.specs["embedder"]
    dep = apps["embedder-v1"]["deployments"][0]
    assert dep["autoscaling_config"]["min_replicas"] == emb.autoscaling.min_replicas
    assert dep["autoscaling_config"]["max_replicas"] == emb.autoscaling.max_replicas
    assert dep["autoscaling_config"]["target_ongoing_requests"] == emb.autoscaling.target_in_flight
    assert "num_replicas" not in dep
    assert dep["ray_actor_options"]["resources"] == {f"pool:{emb.pool}": 1}
    assert dep["ray_actor_options"]["num_gpus"] > 0  # the embedder runs on the GPU pool
    assert apps["embedder-v1"]["args"]["version"] == "v1"
    cls = apps["classifier-v1"]["deployments"][0]
    assert cls["ray_actor_options"]["num_gpus"] == 0
    # Versions only: the gateway, not a Serve application, owns `/embedder` and its split.
    assert set(apps) == {"embedder-v1", "classifier-v1"}
    assert apps["embedder-v1"]["route_prefix"] == "/_v/embedder-v1"


def test_canary_adds_a_version_app_and_splits_weights(plan: Plan) -> None:
    routing = Routing(
        services={
            "embedder": ServiceRouting(
                stable="v1",
                canary="v2",
                canary_weight=20,
                canary_user_config={"faults": {"error_rate": 0.5}},
            ),
            "classifier": ServiceRouting(stable="v1"),
        }
    )
    apps = {a["name"]: a for a in plan.serve_document(routing, 45000)["applications"]}
    assert apps["embedder-v2"]["args"]["version"] == "v2"
    canary_uc = apps["embedder-v2"]["deployments"][0]["user_config"]
    assert canary_uc["faults"]["error_rate"] == 0.5
    assert canary_uc["batching"]["max_batch_size"] > 0  # merged over serve.yaml, not replaced
    assert apps["embedder-v1"]["deployments"][0]["user_config"]["faults"]["error_rate"] == 0
    assert map_entries(routing) == {
        "stable": {"embedder": "embedder-v1", "classifier": "classifier-v1"},
        # Without a canary the canary entry is the stable version: every key always exists.
        "canary": {"embedder": "embedder-v2", "classifier": "classifier-v1"},
        "weights": {"embedder": "20", "classifier": "0"},
    }


def test_sandbox_block_is_typed() -> None:
    base = read_stack_file(REPO / "Pulumi.sandbox.yaml")
    with pytest.raises(ConfigError, match=r"gantry:sandbox\.head_cpuz: unknown key"):
        load_config({**base, "sandbox": {"head_cpuz": 2}})
    with pytest.raises(ConfigError, match=r"gantry:sandbox\.ports\.serve"):
        load_config({**base, "sandbox": {"ports": {"serve": 70000}}})
