"""The sandbox's capacity check: Ray's node types can hold every service's worst case.

What the sandbox runs per service (sandbox/serving.py): Serve replicas of the stable version, up
to `autoscaling.max_replicas`, each with the `ray_actor_options` its pool's Serve application
gives it (`num_cpus`, Serve's default 1; `num_gpus`, the pod's GPUs over its replicas), plus
a canary: the rollout driver deploys the new version as its own application beside the stable
one, whose autoscaler starts it at `min_replicas`. No surge: a version never replaces another
in place (the canary becomes the stable one). What a pool holds (sandbox/raycluster.py): the
head, one node of `sandbox.head_cpus`, for the first cpu pool; `max_size` nodes of
`sandbox.node_cpus` and `gpus_per_node` for every other. Memory is no Ray resource here, so it
is not counted. The sums and messages are gantry/capacity.py's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from gantry import capacity
from gantry.pools import PoolScheduling
from gantry.service import ServiceSpec
from gantry.stack import SandboxSettings
from gantry.teams import TeamsFile
from sandbox.raycluster import head_pool, node_resources
from sandbox.serving import version_app

# Serve's default `ray_actor_options.num_cpus` of a replica (ray.serve's DeploymentConfig).
SERVE_DEFAULT_NUM_CPUS = 1.0
RAY_RESOURCES = ("cpu", "gpus")  # what Ray's nodes advertise here (gantry.capacity's names)


def demands(
    specs: Mapping[str, ServiceSpec], pools: Mapping[str, PoolScheduling]
) -> list[capacity.Demand]:
    """Each deployment of each service: its stable replicas at max plus a canary at min."""
    found = []
    for name, spec in specs.items():
        a = spec.autoscaling
        for dep in version_app(spec, spec.version, pools[spec.pool])["deployments"]:
            opts = dep.get("ray_actor_options") or {}
            per_replica = {
                "cpu": float(opts.get("num_cpus", SERVE_DEFAULT_NUM_CPUS)),
                "gpus": float(opts.get("num_gpus") or 0),
            }
            found.append(
                capacity.Demand(
                    service=name,
                    pool=spec.pool,
                    per_pod=per_replica,
                    max_pods=a.max_replicas,
                    canary=a.min_replicas,
                    surge=0,
                    min_pods=a.min_replicas,
                    max_key=f"{name} autoscaling.max_replicas",
                )
            )
    return found


def supplies(
    pools: dict[str, PoolScheduling], settings: SandboxSettings
) -> list[capacity.PoolSupply]:
    """The head's one node, and every other pool's Ray node type at max_size nodes."""
    head = head_pool(pools)
    out = []
    for i, pool in enumerate(pools.values()):  # in the stack's order
        res = node_resources(pool, settings, head=pool is head)
        per_node = {"cpu": float(res["CPU"]), "gpus": float(res.get("GPU", 0))}
        if pool is head:  # one node, its size set by the sandbox settings
            out.append(
                capacity.PoolSupply(
                    pool.name, 1, per_node, None, {"cpu": "gantry:sandbox.head_cpus"}
                )
            )
        else:
            key = f"gantry:pools[{i}].max_size"
            out.append(capacity.PoolSupply(pool.name, pool.max_nodes, per_node, key))
    return out


def job_quotas(teams: TeamsFile, teams_file: str) -> list[capacity.Demand]:
    """Every team's job quota per pool (gantry.capacity.job_demands), in Ray's resources: memory
    is no Ray resource here."""
    return [
        replace(d, per_pod={r: v for r, v in d.per_pod.items() if r in RAY_RESOURCES})
        for d in capacity.job_demands(teams.teams, teams_file)
    ]


def capacity_problems(
    specs: Mapping[str, ServiceSpec],
    pools: dict[str, PoolScheduling],
    settings: SandboxSettings,
    jobs: Iterable[capacity.Demand] = (),
) -> list[str]:
    """One line per pool whose Ray nodes cannot hold its services' worst case and the teams'
    job quotas (`job_quotas`) on it."""
    found = [*demands(specs, pools), *jobs]
    return capacity.problems(capacity.check(supplies(pools, settings), found))
