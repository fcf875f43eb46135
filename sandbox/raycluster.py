"""Ray's head and node pools: the cluster layer's pools as Ray node types.

The head node is the cpu pool (the cluster's system pool). Every other pool becomes a Ray node
type run by Ray's own autoscaler through its fake multi-node provider (`fake_multinode`, which
starts real raylets on this machine), with the pool's min/max node counts and resources: a GPU
pool's nodes advertise `GPU` (the pool's gpus_per_node) and every node advertises its pool
resource `pool:<name>`, which Serve replicas request in place of a nodeSelector.

The autoscaling config is written here: the Ray wheel does not ship the provider's example, and
`ray.cluster_utils.AutoscalingCluster` runs `ray stop --force` (it would kill every Ray on the
machine), so it is not used.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from gantry.pools import PoolScheduling
from gantry.stack import SandboxSettings

HEAD_NODE_TYPE = "ray.head.default"  # the provider's fixed name for the head
LOOPBACK = "127.0.0.1"


def pool_resource(pool: str) -> str:
    """The custom resource every node of `pool` advertises (its sandbox nodeSelector)."""
    return f"pool:{pool}"


# Large enough that the pool resource only says where a replica may run, never how many fit.
POOL_RESOURCE_UNITS = 1000

# Serve's direct ingress: every replica serves HTTP on its own loopback port, from a range of
# REPLICA_PORTS consecutive free ports within Ray's default range [30000, 31000); the gateway
# health-checks each port of it (sandbox/gateway.py). Room for every version's replicas, and
# those draining beside their replacements.
REPLICA_PORT_RANGE = (30000, 31000)
REPLICA_PORTS = 32
# Seconds a stopping replica keeps serving (and answering 503 to the gateway's checks) before it
# closes its port: longer than the gateway's check interval, so no request meets a closed port.
# Ray's default, 30 s, would stretch every scale-in and rollout.
REPLICA_DRAIN_S = 3


def head_pool(pools: dict[str, PoolScheduling]) -> PoolScheduling:
    """The head is the first cpu pool (the cluster's system pool)."""
    return next(p for p in pools.values() if not p.is_gpu)


def node_resources(pool: PoolScheduling, sandbox: SandboxSettings, head: bool) -> dict[str, float]:
    cpus = sandbox.head_cpus if head else sandbox.node_cpus
    res: dict[str, float] = {"CPU": cpus, pool_resource(pool.name): POOL_RESOURCE_UNITS}
    if pool.is_gpu:
        res["GPU"] = pool.gpus_per_node
    return res


def autoscaling_config(
    pools: dict[str, PoolScheduling], sandbox: SandboxSettings, gcs_address: str
) -> dict[str, Any]:
    """The autoscaler config (cluster YAML) for Ray's fake multi-node provider."""
    head = head_pool(pools)
    object_store = sandbox.object_store_mib * 1024 * 1024
    types: dict[str, Any] = {
        HEAD_NODE_TYPE: {
            "resources": node_resources(head, sandbox, head=True),
            "node_config": {},
            "max_workers": 0,
        }
    }
    for pool in pools.values():
        if pool is head:
            continue
        types[pool.name] = {
            "resources": {
                **node_resources(pool, sandbox, head=False),
                "object_store_memory": object_store,
            },
            "labels": dict(pool.node_labels),
            "node_config": {},
            "min_workers": pool.min_nodes,
            "max_workers": pool.max_nodes,
        }
    return {
        "cluster_name": "gantry-sandbox",
        "max_workers": sum(p.max_nodes for p in pools.values() if p is not head),
        "provider": {
            "type": "fake_multinode",
            # Nodes join this GCS (the provider's default is the node IP and port 6379).
            "gcs_address": gcs_address,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": types,
        "head_node_type": HEAD_NODE_TYPE,
        "auth": {},
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": sandbox.idle_timeout_s / 60,
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


def ray_env(
    sandbox: SandboxSettings, ports: dict[str, int], base: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment for the head and everything it starts."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            # The autoscaler's and dashboard's own metrics ports default to fixed numbers
            # (44217, 44227) that another Ray on the machine may hold already.
            "AUTOSCALER_METRIC_PORT": str(ports["autoscaler_metrics"]),
            "DASHBOARD_METRIC_PORT": str(ports["dashboard_metrics"]),
            # Bind every Ray listener to 127.0.0.1 (not the host's interface address).
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            # Explicit: a stray ~/.ray/auth_token must not switch token auth on.
            "RAY_AUTH_MODE": "disabled",
            "RAY_FAKE_CLUSTER": "1",
            "AUTOSCALER_UPDATE_INTERVAL_S": str(sandbox.autoscaler_interval_s),
            "RAY_metrics_report_interval_ms": str(int(sandbox.metrics_report_interval_s * 1000)),
            "RAY_USAGE_STATS_ENABLED": "0",
            # Serve: the model services load weights from an installed package, never a hub.
            "HF_HUB_OFFLINE": "1",
            # Replicas and handles report in-flight requests to Serve's autoscaler every 2 s
            # (default 10 s): the HPA's metrics pipeline is ~15 s end to end, and the sandbox
            # averages over SANDBOX_METRIC_WINDOW_S (gantry/service.py).
            "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "2",
            "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "2",
            # Replicas serve HTTP themselves, on http_options.host (127.0.0.1), so the gateway
            # reaches them without Serve's proxy (each version's backend in gateway.py).
            "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(ports["replicas"]),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(ports["replicas"] + REPLICA_PORTS),
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(REPLICA_DRAIN_S),
        }
    )
    return env


def head_argv(
    pools: dict[str, PoolScheduling],
    sandbox: SandboxSettings,
    ports: dict[str, int],
    temp_dir: Path,
    autoscaler_config: Path,
) -> list[str]:
    head = head_pool(pools)
    res = node_resources(head, sandbox, head=True)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    return [
        ray_bin,
        "start",
        "--head",
        "--block",
        f"--node-ip-address={LOOPBACK}",
        f"--port={ports['gcs']}",
        f"--temp-dir={temp_dir}",
        f"--autoscaling-config={autoscaler_config}",
        f"--num-cpus={res.pop('CPU')}",
        "--num-gpus=0",
        f"--resources={json.dumps(res)}",
        f"--labels={','.join(f'{k}={v}' for k, v in head.node_labels.items())}",
        f"--object-store-memory={sandbox.object_store_mib * 1024 * 1024}",
        "--include-dashboard=true",
        f"--dashboard-host={LOOPBACK}",
        f"--dashboard-port={ports['dashboard']}",
        f"--dashboard-agent-listen-port={ports['agent']}",
        f"--ray-client-server-port={ports['ray_client']}",
        f"--metrics-export-port={ports['metrics']}",
        "--disable-usage-stats",
    ]
