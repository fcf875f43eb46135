"""The cluster's capacity check over what `pulumi up` would apply: the shipped stacks hold their
worst case (services and the teams' job quotas); a pool one GPU short, or a CPU pool too small,
stops `preview` before anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gantry.stack import GantryConfig
from infra.checks.capacity import capacity_problems, demands, supplies
from tests.conftest import STACKS, stack_config

ApplySetOf = Callable[[str], tuple[Any, list[str]]]


def manifests(apply_set: ApplySetOf, stack: str) -> list[dict[str, Any]]:
    objects, _ = apply_set(stack)
    return [e.manifest for e in objects]


def with_pool(cfg: GantryConfig, name: str, **changes: Any) -> GantryConfig:
    """`cfg` with one pool's fields changed (validated again)."""
    raw = cfg.model_dump()
    raw["pools"] = [{**p, **changes} if p["name"] == name else p for p in raw["pools"]]
    return GantryConfig.model_validate(raw)


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stacks_hold_their_worst_case(apply_set: ApplySetOf, stack: str) -> None:
    assert capacity_problems(manifests(apply_set, stack), stack_config(stack)) == []


def test_what_is_counted(apply_set: ApplySetOf) -> None:
    from gantry.pools import pool_facts

    cfg = stack_config("eks")
    objects = manifests(apply_set, "eks")
    by_service = {d.service: d for d in demands(objects, pool_facts(cfg.pools))}
    emb = by_service["embedder"]
    # HPA max 2 + the Flagger canary at minReplicas 1 + maxSurge 1; the sidecar's requests too.
    assert (emb.pool, emb.max_pods, emb.canary, emb.surge) == ("gpu", 2, 1, 1)
    assert emb.per_pod == pytest.approx({"cpu": 2.1, "memory_gib": 4.125, "gpus": 1})
    assert by_service["classifier"].pool == "cpu"
    gpu = next(s for s in supplies(objects, cfg) if s.pool == "gpu")
    # Karpenter grows the pool to max_size; DaemonSets (istio-cni, node exporter, the device
    # plugin, DCGM) take their requests from every GPU node.
    assert gpu.nodes == 5 and gpu.per_node["gpus"] == 1
    assert gpu.overhead["cpu"] > 0 and gpu.per_node["cpu"] == pytest.approx(
        3.5 - gpu.overhead["cpu"]
    )


def test_a_gpu_pool_one_gpu_short(apply_set: ApplySetOf) -> None:
    cfg = with_pool(stack_config("eks"), "gpu", max_size=4)
    (line,) = capacity_problems(manifests(apply_set, "eks"), cfg)
    assert line.startswith("pool gpu: needs 5 GPU, has 4 GPU (4 node(s) x 1 GPU, ")
    # The embedder's worst case, and ml-serving's job quota (platform/teams.yaml: 1 GPU).
    assert "worst case: embedder (2 max + 1 canary + 1 surge); ml-serving jobs quota)" in line
    assert line.endswith(
        "fix: raise gantry:pools[1].max_size to 5, or lower embedder autoscaling.max_replicas to 1"
    )


def test_a_fixed_pool_counts_its_desired_nodes(apply_set: ApplySetOf) -> None:
    """kind creates desired_size workers and nothing adds more."""
    cfg = with_pool(stack_config("sandbox"), "gpu", desired_size=4)
    (line,) = capacity_problems(manifests(apply_set, "sandbox"), cfg)
    assert line.startswith("pool gpu: needs 5 GPU, has 4 GPU (4 node(s)")
    assert "raise gantry:pools[1].desired_size (and max_size) to 5" in line


def test_a_cpu_pool_short_of_cpu_and_memory(apply_set: ApplySetOf) -> None:
    # kind's one cpu node: 4 cores and 8 GiB less istio-cni's 0.1 core and 100 MiB; the
    # classifier's worst case (5.5 cores, 10.62 GiB) and both teams' job quotas on pool cpu
    # (1.5 cores, 5 GiB).
    cfg = with_pool(stack_config("sandbox"), "cpu", desired_size=1)
    (line,) = capacity_problems(manifests(apply_set, "sandbox"), cfg)
    assert line == (
        "pool cpu: needs 7 CPU, has 3.9 CPU, needs 15.62 GiB memory, has 7.9 GiB memory "
        "(1 node(s) x 3.9 CPU, 7.9 GiB memory after DaemonSets; "
        "worst case: classifier (3 max + 1 canary + 1 surge); ml-serving jobs quota; "
        "ml-research jobs quota); "
        "fix: raise gantry:pools[0].desired_size (and max_size) to 2"
    )


def test_preview_stops_naming_the_pool(
    apply_set: ApplySetOf, preflight_fails: Callable[[GantryConfig, str], str]
) -> None:
    """Through `gantry preview`'s checks: the program rendered, the apply set checked, then the
    pools; exit 2 before Pulumi runs."""
    err = preflight_fails(with_pool(stack_config("eks"), "gpu", max_size=4), "eks")
    assert "pool gpu: needs 5 GPU, has 4 GPU" in err
    assert "1 pool(s) of stack 'eks' cannot hold their services" in err


def test_the_teams_job_quotas_are_held_on_their_pools(apply_set: ApplySetOf) -> None:
    """Kueue admits a team's jobs up to its quota at any time: the pools hold that beside the
    services' worst case (platform/teams.yaml `jobs.quota`)."""
    raw = stack_config("sandbox").model_dump()
    serving = next(t for t in raw["platform"]["teams"]["teams"] if t["name"] == "ml-serving")
    serving["jobs"]["quota"]["gpu"]["gpus"] = 2
    (line,) = capacity_problems(manifests(apply_set, "sandbox"), GantryConfig.model_validate(raw))
    assert line.startswith("pool gpu: needs 6 GPU, has 5 GPU (5 node(s)")
    assert "ml-serving jobs quota" in line
