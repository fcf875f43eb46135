"""Pool capacity arithmetic: worst case per pool, needed vs available per resource, the fix."""

from __future__ import annotations

from typing import Any

from gantry.capacity import Demand, PoolSupply, check, problems

# The embedder's pod on a cluster: 2 cores + 0.1 for the sidecar, 4 GiB + 128 MiB, one GPU.
EMBEDDER_POD = {"cpu": 2.1, "memory_gib": 4.125, "gpus": 1.0}
GPU_NODE = {"gpus": 1.0, "cpu": 4.0, "memory_gib": 16.0}


def embedder(**kw: Any) -> Demand:
    base: dict[str, Any] = dict(
        service="embedder",
        pool="gpu",
        per_pod=EMBEDDER_POD,
        max_pods=2,
        canary=1,
        surge=1,
        max_key="embedder autoscaling.max_replicas",
    )
    return Demand(**{**base, **kw})


def gpu_pool(nodes: int) -> PoolSupply:
    return PoolSupply("gpu", nodes, GPU_NODE, "gantry:pools[1].max_size")


def test_worst_case_is_max_plus_canary_plus_surge() -> None:
    d = embedder()
    assert d.pods == 4
    assert d.total("gpus") == 4 and d.total("cpu") == 8.4
    (cap,) = check([gpu_pool(4)], [d])
    assert cap.needed == {"gpus": 4, "cpu": 8.4, "memory_gib": 16.5}
    assert cap.available == {"gpus": 4, "cpu": 16, "memory_gib": 64}
    assert cap.short == [] and cap.problem() is None


def test_one_gpu_short_names_pool_numbers_and_fix() -> None:
    (line,) = problems(check([gpu_pool(3)], [embedder()]))
    assert line == (
        "pool gpu: needs 4 GPU, has 3 GPU (3 node(s) x 1 GPU, 4 CPU, 16 GiB memory; "
        "worst case: embedder (2 max + 1 canary + 1 surge)); "
        "fix: raise gantry:pools[1].max_size to 4, or lower embedder autoscaling.max_replicas to 1"
    )


def test_no_max_below_min_is_suggested() -> None:
    # Two GPUs short: lowering max_replicas to 0 is no fix.
    (line,) = problems(check([gpu_pool(2)], [embedder()]))
    assert line.endswith("fix: raise gantry:pools[1].max_size to 4")


def test_cpu_and_memory_shortfalls_on_a_cpu_pool() -> None:
    pool = PoolSupply(
        "cpu",
        2,
        {"cpu": 3.5, "memory_gib": 6.0},
        "gantry:pools[0].max_size",
        overhead={"cpu": 0.5, "memory_gib": 1.0},
    )
    classifier = Demand(
        "classifier", "cpu", {"cpu": 1.1, "memory_gib": 2.125}, 5, 1, 1, 1, "classifier max"
    )
    (cap,) = check([pool], [classifier])
    assert cap.short == ["cpu", "memory_gib"]
    line = cap.problem()
    assert line is not None
    assert line.startswith(
        "pool cpu: needs 7.7 CPU, has 7 CPU, needs 14.88 GiB memory, has 12 GiB memory "
        "(2 node(s) x 3.5 CPU, 6 GiB memory after DaemonSets; "
        "worst case: classifier (5 max + 1 canary + 1 surge)); "
    )
    assert line.endswith("fix: raise gantry:pools[0].max_size to 3, or lower classifier max to 3")


def test_a_fixed_node_is_grown_by_its_own_key() -> None:
    head = PoolSupply("cpu", 1, {"cpu": 1.0}, None, {"cpu": "gantry:sandbox.head_cpus"})
    classifier = Demand("classifier", "cpu", {"cpu": 0.5}, 3, 1, 0)
    (line,) = problems(check([head], [classifier]))
    assert line.endswith("fix: raise gantry:sandbox.head_cpus to 2")


def test_demands_are_summed_per_pool_and_only_there() -> None:
    small = embedder(service="reranker", max_pods=1, canary=1, surge=0)
    caps = check([gpu_pool(6), PoolSupply("cpu", 1, {"cpu": 4.0}, None)], [embedder(), small])
    assert [c.pool for c in caps] == ["gpu", "cpu"]
    assert caps[0].needed["gpus"] == 6 and caps[0].problem() is None
    # A cpu pool shows no GPUs nobody asks for.
    assert caps[1].needed == {"cpu": 0}
