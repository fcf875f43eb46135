"""The pool model: one place derives labels, taints, tolerations and selectors from a pool."""

from __future__ import annotations

from typing import Any

from gantry.pools import (
    GPU_RESOURCE,
    GPU_TAINT,
    POOL_KIND_LABEL,
    POOL_LABEL,
    Pool,
    pool_facts,
    scheduling,
)


def pool(**kw: Any) -> Pool:
    base: dict[str, Any] = {"name": "cpu", "kind": "cpu", "cpu": 4, "memory_gib": 8}
    base.update(min_size=1, max_size=3)
    return Pool.model_validate({**base, **kw})


def test_cpu_pool_labels_selector_and_no_taints() -> None:
    facts = scheduling(pool(labels={"team": "ml"}))
    assert facts.node_labels == {"team": "ml", POOL_LABEL: "cpu", POOL_KIND_LABEL: "cpu"}
    assert facts.node_selector == {POOL_LABEL: "cpu"}
    assert facts.taints == [] and facts.tolerations == []
    assert facts.gpu_resource is None and not facts.is_gpu
    assert (facts.min_nodes, facts.max_nodes) == (1, 3)


def test_gpu_pool_gets_the_gpu_taint_and_matching_toleration() -> None:
    facts = scheduling(pool(name="gpu", kind="gpu", gpus_per_node=2, min_size=0))
    assert facts.taints == [GPU_TAINT]
    assert facts.taints_k8s() == [
        {"key": "nvidia.com/gpu", "effect": "NoSchedule", "value": "present"}
    ]
    assert facts.taints_kubelet() == ["nvidia.com/gpu=present:NoSchedule"]
    assert facts.tolerations == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
    ]
    assert facts.gpu_resource == GPU_RESOURCE and facts.gpus_per_node == 2
    assert facts.node_selector == {POOL_LABEL: "gpu"}


def test_user_taints_are_kept_and_the_gpu_taint_not_doubled() -> None:
    facts = scheduling(
        pool(
            name="gpu",
            kind="gpu",
            gpus_per_node=1,
            taints=["nvidia.com/gpu=present:NoSchedule", "spot:NoExecute"],
        )
    )
    assert [t.key for t in facts.taints] == ["nvidia.com/gpu", "spot"]
    # A taint without a value is tolerated with `Exists`.
    assert facts.tolerations[1] == {"key": "spot", "operator": "Exists", "effect": "NoExecute"}
    assert facts.taints_kubelet() == ["nvidia.com/gpu=present:NoSchedule", "spot:NoExecute"]


def test_every_toleration_tolerates_its_taint() -> None:
    """Kubernetes' rule: same key and effect, and equal value unless operator is Exists."""
    facts = scheduling(pool(name="gpu", kind="gpu", gpus_per_node=1, taints=["a=b:NoExecute"]))
    for taint, tol in zip(facts.taints_k8s(), facts.tolerations, strict=True):
        assert tol["key"] == taint["key"] and tol["effect"] == taint["effect"]
        assert tol["operator"] == "Exists" or tol["value"] == taint.get("value", "")


def test_pool_facts_by_name() -> None:
    facts = pool_facts([pool(), pool(name="gpu", kind="gpu", gpus_per_node=1)])
    assert list(facts) == ["cpu", "gpu"]
    assert facts["gpu"].is_gpu
