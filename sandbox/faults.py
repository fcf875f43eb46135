"""Faults injected into a running sandbox (`gantry sandbox fault KIND [TARGET]`), for the chaos
scenarios (loadtests/scenarios/) and for rehearsing on-call by hand.

Each one does what the real failure does, to the real process, by PID from what the sandbox
recorded or what Ray reports; never by process name (other Ray clusters on the machine are safe):
- `replica-kill SERVICE`: SIGKILL one running replica of the service's stable version (its Ray
  worker), as the kernel's OOM killer would. Serve's controller sees the actor die and starts a
  replacement; the gateway retries the requests it held on another replica.
- `node-loss POOL`: SIGKILL the raylet of one node of the pool and every process under it (its
  agents and workers), as a lost VM. Ray's autoscaler replaces the node once it stops
  heartbeating; Serve restarts the replicas it held elsewhere.
- `prometheus-down`: SIGKILL the sandbox's Prometheus. `gantry sandbox up` restarts it, keeping
  the rest of the sandbox and the metrics already on disk.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

import psutil
import requests

from gantry.pools import POOL_LABEL
from gantry.sandbox_state import FAULT_KINDS, SandboxState, app_name, read_routing
from sandbox import procs, retry
from sandbox.errors import SandboxError
from sandbox.state import Paths

# The environment variable Ray's fake multi-node provider starts each node's raylet with: the
# node's id, so a node's processes are found by what Ray itself set, not by name.
NODE_ID_ENV = "RAY_OVERRIDE_NODE_ID_FOR_TESTING"
API_TIMEOUT_S = 10.0


def inject(kind: str, target: str | None, paths: Paths, state: SandboxState) -> dict[str, Any]:
    """Inject one fault; returns what was hit (for the scenario's timeline and the user)."""
    if kind == "replica-kill":
        return kill_replica(state, paths, _need(target, "replica-kill", "a service, e.g. embedder"))
    if kind == "node-loss":
        return lose_node(state, _need(target, "node-loss", "a pool, e.g. gpu"))
    if kind == "prometheus-down":
        return stop_recorded(state, "prometheus")
    raise SandboxError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")


def _need(target: str | None, kind: str, what: str) -> str:
    if not target:
        raise SandboxError(f"the {kind} fault needs a target: {what}")
    return target


def kill_replica(state: SandboxState, paths: Paths, service: str) -> dict[str, Any]:
    routing = read_routing(paths.root).services.get(service)
    if routing is None:
        raise SandboxError(f"the sandbox does not run a service {service!r}")
    app = app_name(service, routing.stable)
    apps = _get(state.urls["serve_api"]).get("applications") or {}
    replicas = [
        r
        for dep in ((apps.get(app) or {}).get("deployments") or {}).values()
        for r in dep.get("replicas") or []
        if r.get("state") == "RUNNING" and r.get("pid")
    ]
    if not replicas:
        raise SandboxError(f"{app} has no running replica to kill")
    victim = replicas[0]
    _kill_tree(psutil.Process(int(victim["pid"])), with_children=False)
    return {"app": app, "replica": victim.get("replica_id"), "pid": victim["pid"]}


def lose_node(state: SandboxState, pool: str) -> dict[str, Any]:
    nodes = _get(state.urls["nodes_api"])["data"]["result"]["result"]
    ids = [
        n["node_id"]
        for n in nodes
        if n.get("state") == "ALIVE"
        and (n.get("labels") or {}).get(POOL_LABEL) == pool
        and not n.get("is_head_node")
    ]
    if not ids:
        raise SandboxError(f"no alive node in pool {pool!r} to lose (the head cannot be lost)")
    node_id = ids[0]
    raylet = _raylet(node_id, state)
    if raylet is None:
        raise SandboxError(f"node {node_id[:12]} of pool {pool!r}: its raylet was not found")
    killed = _kill_tree(raylet, with_children=True)
    return {"pool": pool, "node": node_id, "raylet_pid": raylet.pid, "processes": killed}


def _raylet(node_id: str, state: SandboxState) -> psutil.Process | None:
    """The raylet Ray's autoscaler started for `node_id`, among the sandbox's own processes."""
    for p in procs.members(state.procs):
        with contextlib.suppress(psutil.Error):
            if p.name() == "raylet" and p.environ().get(NODE_ID_ENV) == node_id:
                return p
    return None


def stop_recorded(state: SandboxState, name: str) -> dict[str, Any]:
    proc = next((p for p in state.procs if p.name == name and procs.alive(p)), None)
    if proc is None:
        raise SandboxError(f"the sandbox's {name} is not running")
    os.kill(proc.pid, signal.SIGKILL)
    return {"process": name, "pid": proc.pid}


def _kill_tree(root: psutil.Process, with_children: bool) -> int:
    victims = [root, *(root.children(recursive=True) if with_children else [])]
    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(victims, timeout=5)
    return len(victims)


def _get(url: str) -> Any:
    def get() -> Any:
        r = requests.get(url, timeout=API_TIMEOUT_S)
        r.raise_for_status()
        return r.json()

    try:
        return retry.call(get, f"Ray's API ({url})")
    except (requests.RequestException, ValueError) as err:
        raise SandboxError(f"Ray's API ({url}) answered wrongly: {retry.describe(err)}") from None
