"""The kind provider: the generated kind config (a pure function) and the registered resources."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from infra.cluster.kind import (
    KIND_NODE_IMAGES,
    KindClusterArgs,
    create_command,
    delete_command,
    kind_config,
)
from infra.cluster.pools import FAKE_GPU_POOL_LABEL, POOL_LABEL
from infra.config import GantryConfig, load_config, read_stack_file
from infra.render import ResourceIndex

REPO = Path(__file__).resolve().parents[3]


def sandbox(**cluster: Any) -> GantryConfig:
    raw = copy.deepcopy(read_stack_file(REPO / "Pulumi.sandbox.yaml"))
    raw["cluster"].update(cluster)
    return load_config(raw)


def workers(config: dict[str, Any], pool: str) -> list[dict[str, Any]]:
    return [n for n in config["nodes"] if n.get("labels", {}).get(POOL_LABEL) == pool]


def join_taints(node: dict[str, Any]) -> list[dict[str, str]]:
    patches = [yaml.safe_load(p) for p in node.get("kubeadmConfigPatches", [])]
    joins = [p for p in patches if p["kind"] == "JoinConfiguration"]
    return [t for j in joins for t in j["nodeRegistration"].get("taints", [])]


def test_one_control_plane_then_desired_workers_per_pool() -> None:
    raw = read_stack_file(REPO / "Pulumi.sandbox.yaml")
    raw["pools"][0]["desired_size"] = 2
    raw["pools"][1]["desired_size"] = 1
    config = kind_config(KindClusterArgs.from_config(load_config(raw)))
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and config["kind"] == "Cluster"
    assert config["name"] == "gantry-sandbox"
    roles = [n["role"] for n in config["nodes"]]
    assert roles == ["control-plane", "worker", "worker", "worker"]
    assert len(workers(config, "cpu")) == 2 and len(workers(config, "gpu")) == 1


def test_gpu_workers_are_tainted_and_labelled_for_the_fake_gpu_operator() -> None:
    config = kind_config(KindClusterArgs.from_config(sandbox()))
    gpus = workers(config, "gpu")
    assert gpus
    for gpu in gpus:
        assert gpu["labels"][FAKE_GPU_POOL_LABEL] == "gpu"
        assert gpu["labels"]["gantry.dev/pool-kind"] == "gpu"
        assert join_taints(gpu) == [
            {"key": "nvidia.com/gpu", "effect": "NoSchedule", "value": "present"}
        ]


def test_cpu_workers_have_no_taints_and_no_fake_gpu_label() -> None:
    config = kind_config(KindClusterArgs.from_config(sandbox()))
    (cpu,) = workers(config, "cpu")
    assert join_taints(cpu) == []
    assert FAKE_GPU_POOL_LABEL not in cpu["labels"]


def test_pool_with_zero_desired_nodes_gets_no_worker() -> None:
    raw = read_stack_file(REPO / "Pulumi.sandbox.yaml")
    raw["pools"][1]["desired_size"] = 0
    config = kind_config(KindClusterArgs.from_config(load_config(raw)))
    assert workers(config, "gpu") == []


def test_node_image_follows_kubernetes_version_unless_pinned() -> None:
    config = kind_config(KindClusterArgs.from_config(sandbox(kubernetes_version="1.31")))
    assert {n["image"] for n in config["nodes"]} == {KIND_NODE_IMAGES["1.31"]}
    assert KIND_NODE_IMAGES["1.31"].startswith("kindest/node:v1.31.")
    pinned = sandbox(kind={"node_image": "kindest/node:v1.33.4"})
    assert {n["image"] for n in kind_config(KindClusterArgs.from_config(pinned))["nodes"]} == {
        "kindest/node:v1.33.4"
    }


def test_kind_config_is_pure() -> None:
    args = KindClusterArgs.from_config(sandbox())
    assert kind_config(args) == kind_config(args)
    assert kind_config(args) is not kind_config(args)


def test_commands_create_from_stdin_print_kubeconfig_and_delete() -> None:
    args = KindClusterArgs.from_config(sandbox(kind={"kubeconfig": "/tmp/my kube"}))
    create = create_command(args)
    assert create.startswith("kind create cluster --name gantry-sandbox --config - ")
    assert "--kubeconfig '/tmp/my kube'" in create
    assert create.endswith("1>&2 && kind get kubeconfig --name gantry-sandbox")
    assert (
        delete_command(args)
        == "kind delete cluster --name gantry-sandbox --kubeconfig '/tmp/my kube'"
    )


def test_program_runs_kind_through_a_command_and_feeds_a_provider(
    program: Callable[[str], ResourceIndex],
) -> None:
    index = program("sandbox")
    (component,) = index.of_type("gantry:cluster:KindCluster")
    assert component.layer == "cluster"
    (cmd,) = [r for r in index.children(component) if r.type == "command:local:Command"]
    assert yaml.safe_load(cmd.inputs["stdin"]) == kind_config(
        KindClusterArgs.from_config(sandbox())
    )
    assert cmd.inputs["create"].startswith("kind create cluster")
    assert cmd.inputs["delete"].startswith("kind delete cluster")
    assert cmd.inputs["logging"] == "stderr"  # the kubeconfig on stdout stays out of the logs
    (provider,) = [r for r in index.children(component) if r.type == "pulumi:providers:kubernetes"]
    assert "kind: Config" in provider.inputs["kubeconfig"]
    assert cmd.urn in provider.depends_on
