"""Right-sizing arithmetic on known answers, and the override round-tripping the stack loader."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry.errors import ConfigError
from gantry.pools import Pool
from gantry.rightsizing import Sustained, pods_per_node, propose, stack_override
from gantry.service import ServiceSpec, load_service, load_services
from gantry.stack import ServiceEntry, load_config, read_stack_file

REPO = Path(__file__).resolve().parents[2]

CPU_POOL = Pool(
    name="cpu", kind="cpu", instance_type="m6i.xlarge", cpu=3.5, memory_gib=13,
    min_size=1, max_size=6,
)  # fmt: skip
GPU_POOL = Pool(
    name="gpu", kind="gpu", instance_type="g5.xlarge", cpu=3.5, memory_gib=13, gpus_per_node=1,
    min_size=0, max_size=4,
)  # fmt: skip


def _service(name: str, replicas_per_pod: int, **resources: Any) -> ServiceSpec:
    """A real service with the numbers the sizing reads pinned by overrides."""
    overrides = {
        "serve": {"replicas_per_pod": replicas_per_pod},
        "resources": resources,
        "sidecar": {"cpu": 0.1, "memory_mib": 128},
        "autoscaling": {"min_replicas": 1, "max_replicas": 2, "target_in_flight": 8},
    }
    return load_service(name, ServiceEntry(overrides=overrides))


def test_cpu_pods_the_issue_example() -> None:
    """2 replicas at 140 requests/s within the SLO = 70 per replica; a 500 requests/s peak with
    20 % headroom needs ceil(600 / 70) = 9 pods; 3 fit an m6i.xlarge (3.5 CPU / 1.1), so 3 nodes."""
    spec = _service("classifier", 1, cpu=1, memory_gib=2)
    p = propose(
        Sustained(rps=140 / 2, p50_ms=100, unit="pod"), spec, CPU_POOL,
        peak_rps=500, usd_per_hour=0.192,
    )  # fmt: skip
    assert p.rps_per_pod == p.rps_per_serve_replica == 70
    assert p.in_flight == pytest.approx(7.0)  # Little: 70 requests/s x 0.1 s
    assert p.target_in_flight == 7.0
    assert p.max_replicas == 9
    assert p.pods_per_node == 3  # min(3.5 / 1.1 -> 3, 13 / 2.125 -> 6)
    assert (p.nodes_at_max, p.nodes_at_min, p.gpus_at_max) == (3, 1, 0)
    assert p.usd_per_month_at_max == pytest.approx(3 * 0.192 * 730)  # 420.48
    assert p.usd_per_month_at_min == pytest.approx(0.192 * 730)  # 140.16
    assert (p.now_max_replicas, p.now_target_in_flight, p.now_nodes_at_max) == (2, 8, 1)


def test_gpu_pods_of_two_serve_replicas() -> None:
    """Measured per Serve replica (the sandbox) at 70; a pod of 2 replicas serves 140, so
    ceil(600 / 140) = 5 pods, each a whole A10G: 5 GPUs on 5 g5.xlarge nodes."""
    spec = _service("embedder", 2, cpu=2, memory_gib=4, gpus=1)
    p = propose(
        Sustained(rps=70, p50_ms=100, unit="serve-replica"), spec, GPU_POOL,
        peak_rps=500, usd_per_hour=1.006,
    )  # fmt: skip
    assert (p.rps_per_serve_replica, p.rps_per_pod) == (70, 140)
    assert p.target_in_flight == 7.0  # per Serve replica, as target_in_flight is
    assert (p.max_replicas, p.gpus_at_max, p.pods_per_node, p.nodes_at_max) == (5, 5, 1, 5)
    assert p.usd_per_month_at_max == pytest.approx(5 * 1.006 * 730)  # 3671.90


def test_a_pod_measurement_is_split_over_its_serve_replicas() -> None:
    spec = _service("embedder", 2, cpu=2, memory_gib=4, gpus=1)
    p = propose(
        Sustained(rps=140, p50_ms=50, unit="pod"), spec, GPU_POOL, peak_rps=500, usd_per_hour=1
    )
    assert (p.rps_per_serve_replica, p.rps_per_pod, p.max_replicas) == (70, 140, 5)
    assert p.target_in_flight == 3.5  # 70 x 0.05


def test_time_slicing_packs_pods_per_gpu_until_cpu_runs_out() -> None:
    spec = _service("embedder", 1, cpu=2, memory_gib=4, gpus=1)
    big = GPU_POOL.model_copy(update={"cpu": 7.0, "memory_gib": 26.0})
    assert pods_per_node(spec, big, gpu_slices=1) == 1
    assert pods_per_node(spec, big, gpu_slices=2) == 2
    assert pods_per_node(spec, big, gpu_slices=4) == 3  # 7 CPU / 2.1


def test_rounding_and_the_floor() -> None:
    spec = _service("classifier", 1, cpu=1, memory_gib=2)
    # 33.3 x 0.07 = 2.331 in flight -> 2.3; a tiny peak still keeps min_replicas (1).
    p = propose(
        Sustained(rps=33.3, p50_ms=70, unit="pod"), spec, CPU_POOL, peak_rps=1, usd_per_hour=1
    )
    assert (p.target_in_flight, p.max_replicas) == (2.3, 1)
    # Float noise does not add a replica: 7 x 1.2 / 1.4 is 6.000000000000001 in floats, not 7.
    p = propose(
        Sustained(rps=1.4, p50_ms=1, unit="pod"), spec, CPU_POOL, peak_rps=7, usd_per_hour=1
    )
    assert (p.max_replicas, p.target_in_flight) == (6, 0.1)  # 0.0014 in flight: the floor


def test_a_pod_that_fits_no_node_is_one_line() -> None:
    spec = _service("classifier", 1, cpu=4, cpu_limit=4, memory_gib=2)
    with pytest.raises(ConfigError) as err:
        pods_per_node(spec, CPU_POOL)
    assert str(err.value).startswith("a classifier pod (4.1 CPU")
    assert "does not fit a node of pool cpu (3.5 CPU" in str(err.value)


def test_the_override_round_trips_through_the_stack_loader(tmp_path: Path) -> None:
    raw = copy.deepcopy(read_stack_file(REPO / "Pulumi.eks.yaml"))
    cfg = load_config(raw)
    entry = cfg.services["embedder"]
    spec = load_service("embedder", entry)
    p = propose(
        Sustained(rps=70, p50_ms=100, unit="serve-replica"), spec, cfg.pool(spec.pool),
        peak_rps=500, usd_per_hour=1.006,
    )  # fmt: skip
    path = tmp_path / "overrides.yaml"
    path.write_text(yaml.safe_dump(stack_override("embedder", entry, p), sort_keys=False))

    raw["services"].update(read_stack_file(path)["services"])
    applied = load_services(load_config(raw))["embedder"]
    assert applied.autoscaling.max_replicas == p.max_replicas
    assert applied.autoscaling.target_in_flight == p.target_in_flight
    # The entry's other overrides stay: the file replaces the whole entry.
    assert applied.image.dockerfile == spec.image.dockerfile == "Dockerfile.cuda"
    assert applied.autoscaling.scale_up == spec.autoscaling.scale_up
