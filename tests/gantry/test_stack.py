"""Bad stack configs fail before any resource exists, with one line naming the key."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate.utils
import pytest
import yaml

from gantry.errors import ConfigError
from gantry.stack import SUPPORTED_K8S_VERSIONS, load_config, read_stack_file

REPO = Path(__file__).resolve().parents[2]
Raw = dict[str, Any]


def sandbox_raw() -> Raw:
    return copy.deepcopy(read_stack_file(REPO / "Pulumi.sandbox.yaml"))


def _set(path: str, value: Any) -> Callable[[Raw], None]:
    """Mutator: set a dotted/indexed key (e.g. `pools.1.max_size`) to `value`."""

    def apply(raw: Raw) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return apply


def _dup_pool(raw: Raw) -> None:
    raw["pools"].append(copy.deepcopy(raw["pools"][0]))


def _service_on_missing_pool(raw: Raw) -> None:
    raw["services"]["embedder"] = {"pool": "tpu"}


def _only_gpu_pools(raw: Raw) -> None:
    raw["pools"] = [p for p in raw["pools"] if p["kind"] == "gpu"]


def _eks_without_block(raw: Raw) -> None:
    raw["cluster"]["provider"] = "eks"


def _eks_pool_without_instance_type(raw: Raw) -> None:
    raw["cluster"]["provider"] = "eks"
    raw["cluster"]["eks"] = {"region": "us-west-2"}


def _no_pools(raw: Raw) -> None:
    raw["pools"] = []


def _eks(raw: Raw) -> None:
    """The EKS stack instead (both pools Karpenter's by default)."""
    raw.clear()
    raw.update(copy.deepcopy(read_stack_file(REPO / "Pulumi.eks.yaml")))


def _eks_karpenter_without_subnets(raw: Raw) -> None:
    _eks(raw)
    del raw["cluster"]["eks"]["subnet_ids"]


def _eks_pool_named_system(raw: Raw) -> None:
    _eks(raw)
    raw["pools"][1]["name"] = "system"


def _eks_karpenter_bare_instance_type(raw: Raw) -> None:
    _eks(raw)
    raw["pools"][1]["instance_type"] = "g5"


def _eks_without_job_storage_class(raw: Raw) -> None:
    _eks(raw)
    del raw["platform"]["job_storage_class"]


def _job_storage_class_on_kind(raw: Raw) -> None:
    raw.setdefault("platform", {})["job_storage_class"] = "efs-sc"


# (mutation, the key the message must name, a word the message must contain)
BAD_CONFIGS: dict[str, tuple[Callable[[Raw], None], str, str]] = {
    "unknown provider": (_set("cluster.provider", "gke"), "gantry:cluster.provider", "kind"),
    "min > max": (_set("pools.1.min_size", 6), "gantry:pools[1].min_size", "> max_size 5"),
    "duplicate pool": (_dup_pool, "gantry:pools[2].name", "duplicate"),
    "gpu pool without gpus": (
        _set("pools.1.gpus_per_node", 0),
        "gantry:pools[1].gpus_per_node",
        ">= 1",
    ),
    "cpu pool with gpus": (
        _set("pools.0.gpus_per_node", 1),
        "gantry:pools[0].gpus_per_node",
        "gpu",
    ),
    "service on missing pool": (_service_on_missing_pool, "gantry:services.embedder.pool", "tpu"),
    "malformed taint": (_set("pools.0.taints", ["dedicated"]), "gantry:pools[0].taints[0]", "form"),
    "bad taint effect": (
        _set("pools.0.taints", ["team=ml:NoRun"]),
        "gantry:pools[0].taints[0].effect",
        "NoSchedule",
    ),
    "negative size": (_set("pools.0.min_size", -1), "gantry:pools[0].min_size", "0"),
    "unknown k8s version": (
        _set("cluster.kubernetes_version", "1.20"),
        "gantry:cluster.kubernetes_version",
        "1.33",
    ),
    "typo key": (_set("pools.0.max_sise", 3), "gantry:pools[0].max_sise", "unknown key"),
    "desired outside bounds": (
        _set("pools.0.desired_size", 5),
        "gantry:pools[0].desired_size",
        "outside",
    ),
    # The stack's desired_size is applied to the node groups: EKS rejects one below min_size.
    "desired below min": (
        _set("pools.0.desired_size", 0),
        "gantry:pools[0].desired_size",
        "outside min_size..max_size (1..",
    ),
    "version past EKS extended support": (
        _set("cluster.kubernetes_version", "1.31"),
        "gantry:cluster.kubernetes_version",
        "1.36",
    ),
    "bad label key": (_set("pools.0.labels", {"bad key!": "x"}), "gantry:pools[0].labels", "label"),
    "bad pool name": (_set("pools.0.name", "CPU_Pool"), "gantry:pools[0].name", "DNS label"),
    "no cpu pool": (_only_gpu_pools, "gantry:pools", "cpu pool"),
    "no pools": (_no_pools, "gantry:pools", "at least 1"),
    "eks without eks block": (_eks_without_block, "gantry:cluster.eks", "region"),
    "eks pool without instance type": (
        _eks_pool_without_instance_type,
        "gantry:pools[0].instance_type",
        "EC2",
    ),
    "missing cluster": (lambda raw: raw.pop("cluster"), "gantry:cluster", "missing"),
    "karpenter on kind": (
        _set("pools.1.autoscaling", "karpenter"),
        "gantry:pools[1].autoscaling",
        "karpenter needs cluster.provider eks",
    ),
    "spot on kind": (_set("pools.0.capacity_type", "spot"), "gantry:pools[0].capacity_type", "eks"),
    "unknown autoscaling": (
        _set("pools.0.autoscaling", "cluster-autoscaler"),
        "gantry:pools[0].autoscaling",
        "'karpenter' or 'managed'",
    ),
    "karpenter without subnets": (
        _eks_karpenter_without_subnets,
        "gantry:cluster.eks.subnet_ids",
        "karpenter",
    ),
    "eks pool named system": (_eks_pool_named_system, "gantry:pools[1].name", "system node group"),
    "karpenter pool with a bare family": (
        _eks_karpenter_bare_instance_type,
        "gantry:pools[1].instance_type",
        "<family>.<size>",
    ),
    # Teams with a jobs quota and no ReadWriteMany class: their claims would stay Pending.
    "eks jobs without a job storage class": (
        _eks_without_job_storage_class,
        "gantry:platform.job_storage_class",
        "ReadWriteMany StorageClass",
    ),
    "job storage class on kind": (
        _job_storage_class_on_kind,
        "gantry:platform.job_storage_class",
        "kind has its own",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_names_the_key_in_one_line(case: str) -> None:
    mutate, key, word = BAD_CONFIGS[case]
    raw = sandbox_raw()
    mutate(raw)
    with pytest.raises(ConfigError) as err:
        load_config(raw)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(key), message
    assert word in message, message


def test_sandbox_and_eks_stacks_are_valid() -> None:
    for stack in ("sandbox", "eks"):
        cfg = load_config(read_stack_file(REPO / f"Pulumi.{stack}.yaml"))
        assert {p.name for p in cfg.pools} == {"cpu", "gpu"}


def test_pools_default_to_karpenter_on_eks_and_managed_elsewhere() -> None:
    from gantry.pools import autoscaling_of

    eks = load_config(read_stack_file(REPO / "Pulumi.eks.yaml"))
    assert {autoscaling_of(p, "eks") for p in eks.pools} == {"karpenter"}
    sandbox = load_config(sandbox_raw())
    assert {autoscaling_of(p, "kind") for p in sandbox.pools} == {"managed"}
    raw = sandbox_raw()
    raw["pools"][0]["autoscaling"] = "managed"  # fixed is what kind has: accepted
    assert load_config(raw).pools[0].autoscaling == "managed"


def test_taint_accepts_kubectl_form_and_mapping() -> None:
    raw = sandbox_raw()
    raw["pools"][0]["taints"] = ["team=ml:NoSchedule", {"key": "spot", "effect": "NoExecute"}]
    taints = load_config(raw).pools[0].taints
    assert [(t.key, t.value, t.effect) for t in taints] == [
        ("team", "ml", "NoSchedule"),
        ("spot", "", "NoExecute"),
    ]


def test_job_storage_class_is_needed_only_by_teams_with_jobs(tmp_path: Path) -> None:
    teams = yaml.safe_load((REPO / "platform" / "teams.yaml").read_text())
    for team in teams["teams"]:
        team.pop("jobs", None)
    (tmp_path / "platform").mkdir()
    (tmp_path / "platform" / "teams.yaml").write_text(yaml.safe_dump(teams))
    raw: Raw = {}
    _eks_without_job_storage_class(raw)
    assert load_config(raw, tmp_path).platform.job_storage_class is None
    eks = load_config(read_stack_file(REPO / "Pulumi.eks.yaml"))
    assert eks.platform.job_storage_class == "efs-sc"


def test_desired_defaults_to_min() -> None:
    raw = sandbox_raw()
    del raw["pools"][0]["desired_size"]
    raw["pools"][0]["min_size"] = 2
    raw["pools"][0]["max_size"] = 3
    assert load_config(raw).pools[0].desired == 2


def test_missing_stack_file_is_a_config_error(tmp_path: Any) -> None:
    from gantry.stack import load_stack_file

    with pytest.raises(ConfigError, match="does not exist"):
        load_stack_file(tmp_path / "Pulumi.nope.yaml")


@pytest.mark.parametrize("version", SUPPORTED_K8S_VERSIONS)
def test_supported_kubernetes_versions_load_and_have_schemas(version: str) -> None:
    raw = sandbox_raw()
    raw["cluster"]["kubernetes_version"] = version
    assert load_config(raw).cluster.kubernetes_version == version
    # The offline checks validate every object against this version's OpenAPI schemas.
    assert f"{version}.0" in kubernetes_validate.utils.all_versions()
