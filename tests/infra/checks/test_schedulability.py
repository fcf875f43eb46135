"""The static schedulability check: wrong setups are caught, one line each; shipped stacks pass."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from gantry.pools import pool_facts
from gantry.service import load_service
from gantry.stack import GantryConfig, ServiceEntry
from infra.checks.schedulability import check, pod_requests, workloads
from infra.render import ResourceIndex
from infra.serving import manifests
from tests.conftest import STACKS, stack_config

Program = Callable[[str], ResourceIndex]
POOLS = pool_facts(stack_config("sandbox").pools)


def service_objects(name: str, entry: ServiceEntry | None = None) -> list[dict[str, Any]]:
    """One service's objects, rendered by the same code as the cluster, on the sandbox pools."""
    spec = load_service(name, entry)
    ctx = manifests.ServingContext(
        namespace="ml-serving",
        pool=POOLS[spec.pool],
        image=f"gantry/{name}:test",
        gateway="istio-ingress/gantry-gateway",
        host=f"{name}.gantry.local",
        loadtester_url="http://flagger-loadtester.flagger-system/",
        prometheus_url="http://prometheus:9090",
        in_flight_metric="gantry_serve_inflight_requests",
        mesh_scrape={},
    )
    return manifests.all_objects(spec, ctx)


def quota(gpus: int, cpu: str = "24", memory: str = "96Gi", pods: int = 60) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "team-quota", "namespace": "ml-serving"},
        "spec": {
            "hard": {
                "requests.cpu": cpu,
                "requests.memory": memory,
                "pods": str(pods),
                "requests.nvidia.com/gpu": str(gpus),
            }
        },
    }


def deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "Deployment")


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stacks_pass(program: Program, stack: str) -> None:
    cfg = stack_config(stack)
    problems = check(
        program(stack).manifests(), pool_facts(cfg.pools), cfg.platform.time_slicing_replicas
    )
    assert problems == []


def test_the_shipped_services_fit_as_rendered() -> None:
    objects = service_objects("embedder") + service_objects("classifier") + [quota(gpus=4)]
    assert check(objects, POOLS) == []


def test_gpu_service_on_the_cpu_pool() -> None:
    objects = service_objects("embedder", ServiceEntry(pool="cpu"))
    assert check(objects, POOLS) == [
        "embedder: pool cpu: pod needs 1 nvidia.com/gpu, a node has 0 nvidia.com/gpu "
        "allocatable (short 1 nvidia.com/gpu)"
    ]


def test_missing_gpu_toleration() -> None:
    objects = service_objects("embedder")
    deployment(objects)["spec"]["template"]["spec"]["tolerations"] = []
    assert check(objects, POOLS) == [
        "embedder: pool gpu: does not tolerate taint nvidia.com/gpu=present:NoSchedule"
    ]


def test_quota_one_gpu_short() -> None:
    # embedder: max 2 pods + 1 canary pod at the HPA's minimum + 1 surge pod (the primary's
    # rolling update at promotion, beside the canary), one GPU each = 4.
    objects = [*service_objects("embedder"), quota(gpus=3)]
    (line,) = check(objects, POOLS)
    assert line.startswith(
        "embedder: team ml-serving: quota requests.nvidia.com/gpu=3 (quota.gpus in the teams "
        "file) is short by 1 nvidia.com/gpu (needs 4 nvidia.com/gpu: "
        "embedder (2 max + 1 canary + 1 surge)"
    )
    assert check([*service_objects("embedder"), quota(gpus=4)], POOLS) == []


def test_surge_follows_the_deployment_strategy() -> None:
    objects = service_objects("classifier")
    strategy = deployment(objects)["spec"]["strategy"]
    (w,) = workloads(objects)
    assert (w.max_pods, w.canary, w.surge, w.pods) == (3, 1, 1, 5)
    strategy["rollingUpdate"]["maxSurge"] = "50%"  # of 3 pods, rounded up
    assert workloads(objects)[0].surge == 2
    strategy.clear()  # Kubernetes' default: 25%
    assert workloads(objects)[0].surge == 1
    strategy["type"] = "Recreate"
    assert workloads(objects)[0].surge == 0


def test_quota_counts_cpu_memory_and_pods_too() -> None:
    objects = [*service_objects("classifier"), quota(gpus=0, cpu="1", memory="1Gi", pods=2)]
    problems = check(objects, POOLS)
    assert [p.split(": ")[2].split(" is short")[0] for p in problems] == [
        "quota pods=2 (quota.pods in the teams file)",
        "quota requests.cpu=1 (quota.cpu in the teams file)",
        "quota requests.memory=1Gi (quota.memory_gib in the teams file)",
    ]


def test_pod_larger_than_any_node() -> None:
    objects = service_objects(
        "classifier", ServiceEntry(overrides={"resources": {"cpu": 64, "cpu_limit": 64}})
    )
    assert check(objects, POOLS) == [
        "classifier: pool cpu: pod needs 64.1 CPU, a node has 4 CPU allocatable (short 60.1 CPU)"
    ]
    # Without a nodeSelector, every pool is a candidate: each says why it does not fit.
    pod = deployment(objects)["spec"]["template"]["spec"]
    del pod["nodeSelector"]
    pod["tolerations"] = POOLS["gpu"].tolerations
    problems = check(objects, POOLS)
    assert [p.split(":")[1].strip() for p in problems] == ["pool cpu", "pool gpu"]
    assert all("64.1 CPU" in p for p in problems)


def test_selector_matching_no_pool() -> None:
    objects = service_objects("classifier", ServiceEntry(overrides={}))
    deployment(objects)["spec"]["template"]["spec"]["nodeSelector"] = {"gantry.dev/pool": "tpu"}
    (line,) = check(objects, POOLS)
    assert line.startswith(
        "classifier: no pool: no pool has node labels {'gantry.dev/pool': 'tpu'}"
    )


def test_time_slicing_multiplies_gpus_per_node() -> None:
    objects = service_objects("embedder", ServiceEntry(overrides={"resources": {"gpus": 2}}))
    assert "short 1 nvidia.com/gpu" in check(objects, POOLS)[0]
    assert check(objects, POOLS, gpu_slices=2) == []


def test_required_node_affinity_is_honoured() -> None:
    objects = service_objects("classifier")
    pod = deployment(objects)["spec"]["template"]["spec"]
    del pod["nodeSelector"]
    pod["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "gantry.dev/pool-kind", "operator": "In", "values": ["cpu"]}
                        ]
                    }
                ]
            }
        }
    }
    assert check(objects, POOLS) == []
    pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][0]["values"] = ["tpu"]
    assert "no pool" in check(objects, POOLS)[0]


def test_pod_requests_include_the_sidecar() -> None:
    dep = deployment(service_objects("classifier"))
    tpl = copy.deepcopy(dep["spec"]["template"])
    with_sidecar = pod_requests(tpl["spec"], tpl["metadata"]["annotations"])
    assert float(with_sidecar["cpu"]) == pytest.approx(1.1)  # 1 core + 0.1 for Envoy
    tpl["metadata"]["annotations"]["sidecar.istio.io/inject"] = "false"
    assert float(pod_requests(tpl["spec"], tpl["metadata"]["annotations"])["cpu"]) == 1


def test_preflight_stops_before_anything_is_applied(
    preflight_fails: Callable[[GantryConfig, str], str],
) -> None:
    """`gantry preview|up` exits 2 listing each problem when a stack cannot be scheduled."""
    cfg = stack_config("sandbox")
    bad = cfg.model_copy(
        update={"services": {**cfg.services, "embedder": ServiceEntry(pool="cpu")}}
    )
    err = preflight_fails(bad, "sandbox")
    assert "embedder: pool cpu: pod needs 1 nvidia.com/gpu" in err
    assert "nothing was applied" in err
