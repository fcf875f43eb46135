"""Node pools: the model a stack declares, and everything derived from it in one place.

No other module spells a pool label or taint key: node labels and taints for the cluster
providers and the sandbox's Ray node types, and the nodeSelector, tolerations and GPU resource
a workload must carry, all come from `scheduling(pool)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from gantry.validation import (
    LABEL_VALUE,
    QUALIFIED_KEY,
    DnsName,
    KeyedError,
    NonNegInt,
    StrictModel,
)


class Taint(StrictModel):
    """A node taint. In config either a mapping or the kubectl form `key=value:Effect`."""

    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]

    @model_validator(mode="before")
    @classmethod
    def _parse_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            m = re.fullmatch(r"([^=:]+)(?:=([^:]*))?:(\w+)", data.strip())
            if not m:
                raise ValueError(f"taint {data!r} is not of the form key=value:Effect")
            return {"key": m[1], "value": m[2] or "", "effect": m[3]}
        return data

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not QUALIFIED_KEY.match(v):
            raise ValueError(f"taint key {v!r} is not a valid Kubernetes qualified name")
        return v

    @field_validator("value")
    @classmethod
    def _value(cls, v: str) -> str:
        if not LABEL_VALUE.match(v):
            raise ValueError(f"taint value {v!r} is not a valid Kubernetes label value")
        return v


class Pool(StrictModel):
    """A node pool: nodes of one shape. Sizes are node counts; cpu in cores, memory in GiB."""

    name: DnsName
    kind: Literal["cpu", "gpu"]
    # Cloud instance type (EKS); informational for kind/existing.
    instance_type: str = "kind-node"
    # Allocatable per node, used by the schedulability check and the sandbox's Ray node types.
    cpu: Annotated[float, Field(gt=0)]
    memory_gib: Annotated[float, Field(gt=0)]
    gpus_per_node: NonNegInt = 0
    min_size: NonNegInt
    max_size: Annotated[int, Field(ge=1)]
    desired_size: NonNegInt | None = None
    labels: dict[str, str] = {}
    taints: list[Taint] = []
    # What adds and removes the pool's nodes (`autoscaling_of`): `karpenter` (EKS only: a
    # NodePool scales it between 0 and max_size) or `managed` (a fixed group of desired_size
    # nodes). Unset: karpenter on eks, managed elsewhere (kind has no node provisioner).
    autoscaling: Literal["karpenter", "managed"] | None = None
    # EC2 purchase option of the pool's nodes (EKS only): spot nodes cost less and can be
    # reclaimed with a 2-minute warning.
    capacity_type: Literal["on-demand", "spot"] = "on-demand"

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not QUALIFIED_KEY.match(key):
                raise ValueError(f"label key {key!r} is not a valid Kubernetes qualified name")
            if not LABEL_VALUE.match(str(value)):
                raise ValueError(f"label value {value!r} (key {key!r}) is not a valid label value")
        return v

    @model_validator(mode="after")
    def _sizes(self) -> Pool:
        if self.min_size > self.max_size:
            raise KeyedError(
                "min_size", f"min_size {self.min_size} > max_size {self.max_size}", relative=True
            )
        desired = self.desired
        if not self.min_size <= desired <= self.max_size:
            raise KeyedError(
                "desired_size",
                f"desired_size {desired} is outside min_size..max_size "
                f"({self.min_size}..{self.max_size})",
                relative=True,
            )
        if self.kind == "gpu" and self.gpus_per_node < 1:
            raise KeyedError("gpus_per_node", "a gpu pool needs gpus_per_node >= 1", relative=True)
        if self.kind == "cpu" and self.gpus_per_node:
            raise KeyedError(
                "gpus_per_node",
                "a cpu pool must have gpus_per_node 0 (use kind: gpu)",
                relative=True,
            )
        return self

    @property
    def desired(self) -> int:
        return self.min_size if self.desired_size is None else self.desired_size


# Node label naming the pool a node belongs to; workloads select pools by it.
POOL_LABEL = "gantry.dev/pool"
# Node label with the pool's kind (cpu|gpu), for dashboards and affinity rules.
POOL_KIND_LABEL = "gantry.dev/pool-kind"
# Extended resource a GPU is requested as (NVIDIA device plugin and the fake GPU operator).
GPU_RESOURCE = "nvidia.com/gpu"
# Every GPU pool carries this taint so that only pods asking for GPUs land there.
GPU_TAINT = Taint(key=GPU_RESOURCE, value="present", effect="NoSchedule")
# Node label run:ai's fake GPU operator selects simulated-GPU nodes by; its value names the
# operator's `topology.nodePools` entry, which is the Gantry pool name (kind clusters only).
FAKE_GPU_POOL_LABEL = "run.ai/simulated-gpu-node-pool"


@dataclass(frozen=True)
class PoolScheduling:
    """A pool's scheduling facts, in Kubernetes' own shapes (camelCase dicts)."""

    name: str
    kind: str
    node_labels: dict[str, str]
    taints: list[Taint]
    gpus_per_node: int
    # Allocatable per node: cores, GiB, GPUs.
    cpu: float
    memory_gib: float
    min_nodes: int
    max_nodes: int
    gpu_resource: str | None = GPU_RESOURCE
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_gpu(self) -> bool:
        return self.kind == "gpu"

    def taints_k8s(self) -> list[dict[str, str]]:
        """Taints as the Node API (and EKS/kind configs) spell them."""
        return [_taint_dict(t) for t in self.taints]

    def taints_kubelet(self) -> list[str]:
        """Taints as kubelet's `--register-with-taints` flag spells them."""
        return [
            f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}"
            for t in self.taints
        ]


def _taint_dict(t: Taint) -> dict[str, str]:
    d = {"key": t.key, "effect": t.effect}
    if t.value:
        d["value"] = t.value
    return d


def scheduling(pool: Pool) -> PoolScheduling:
    taints = list(pool.taints)
    if pool.kind == "gpu" and not any(t.key == GPU_TAINT.key for t in taints):
        taints.insert(0, GPU_TAINT)
    labels = {**pool.labels, POOL_LABEL: pool.name, POOL_KIND_LABEL: pool.kind}
    tolerations = [
        {"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect}
        if t.value
        else {"key": t.key, "operator": "Exists", "effect": t.effect}
        for t in taints
    ]
    return PoolScheduling(
        name=pool.name,
        kind=pool.kind,
        node_labels=labels,
        taints=taints,
        gpus_per_node=pool.gpus_per_node,
        cpu=pool.cpu,
        memory_gib=pool.memory_gib,
        min_nodes=pool.min_size,
        max_nodes=pool.max_size,
        gpu_resource=GPU_RESOURCE if pool.kind == "gpu" else None,
        node_selector={POOL_LABEL: pool.name},
        tolerations=tolerations,
    )


def autoscaling_of(pool: Pool, provider: str) -> Literal["karpenter", "managed"]:
    """The pool's node mechanism on a cluster made by `provider`: its own, else the default."""
    return pool.autoscaling or ("karpenter" if provider == "eks" else "managed")


# An EC2 instance type, `<family>.<size>` (g5.xlarge): a pool's NodePool allows that family and
# size, so every node Karpenter starts has the shape the pool declares.
EC2_INSTANCE_TYPE = re.compile(r"^([a-z][a-z0-9-]*)\.([a-z0-9-]+)$")
# The EKS node group that runs the system pods (Karpenter, CoreDNS) carries this pool name.
SYSTEM_POOL = "system"


def check_autoscaling(key: str, pool: Pool, provider: str) -> None:
    """Raise KeyedError (under `key`, e.g. `pools[1]`) where the pool's autoscaling or capacity
    type cannot work on a cluster made by `provider`."""
    if provider != "eks":
        if pool.autoscaling == "karpenter":
            raise KeyedError(
                f"{key}.autoscaling",
                f"karpenter needs cluster.provider eks (Gantry installs Karpenter on eks only; "
                f"{provider} pools are fixed: use managed, or leave it unset)",
            )
        if pool.capacity_type == "spot":
            raise KeyedError(f"{key}.capacity_type", "spot needs cluster.provider eks")
        return
    if pool.name == SYSTEM_POOL:
        raise KeyedError(
            f"{key}.name", f"{SYSTEM_POOL!r} is the EKS system node group's (Karpenter, CoreDNS)"
        )
    if autoscaling_of(pool, provider) == "karpenter" and not EC2_INSTANCE_TYPE.match(
        pool.instance_type
    ):
        raise KeyedError(
            f"{key}.instance_type",
            f"{pool.instance_type!r} is not an EC2 instance type <family>.<size> (e.g. g5.xlarge)",
        )


def pool_facts(pools: list[Pool]) -> dict[str, PoolScheduling]:
    """Scheduling facts for every pool, by name."""
    return {p.name: scheduling(p) for p in pools}
