"""Observers: what the platform did during a run, sampled once a second into `PlatformPoint`s.

Picked from the target, not from a flag: the running sandbox's Serve URL -> `SandboxObserver`
(Ray Serve's REST API and Ray's node list); any other URL -> `KubernetesObserver` (the official
`kubernetes` client on the current kubeconfig context). They run in the parent process, never
in the Locust one (requests/kubernetes must not share a process with gevent).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import requests

from gantry.canary import Outcome
from gantry.pools import POOL_LABEL
from gantry.sandbox_state import Routing, app_name, read_routing
from loadtests.timeline import PlatformPoint, append

# Per request to Ray's REST APIs: a sample that cannot answer in this is recorded as an error.
SAMPLE_TIMEOUT_S = 5.0


class Observer(Protocol):
    name: str

    def sample(self) -> PlatformPoint: ...

    def replica_deaths(self) -> int | None:
        """Replicas of the service that died unintended during the run (None: cannot tell)."""
        ...


class NullObserver:
    """No platform to ask (no sandbox, no kubeconfig): the timeline has load data only."""

    def __init__(self, why: str) -> None:
        self.name = f"none ({why})"
        self.why = why

    def sample(self) -> PlatformPoint:
        return PlatformPoint(ts=time.time(), error=self.why)

    def replica_deaths(self) -> int | None:
        return None


# --- Kubernetes --------------------------------------------------------------------------------

FLAGGER = ("flagger.app", "v1beta1", "canaries")
# Flagger's Canary phases; `Succeeded` = promoted, `Failed` = rolled back (loadtests.expectations).


class KubernetesObserver:
    """HPA current/desired replicas, ready replicas of the primary and canary Deployments,
    Flagger's Canary phase and weight, and ready nodes per pool (`POOL_LABEL`).

    Naming follows Flagger: the service's Deployment, HPA and Canary are `<service>`; Flagger
    runs the stable version as `<service>-primary` and the canary as `<service>`.
    """

    def __init__(self, service: str, namespace: str, apis: Any | None = None) -> None:
        self.name = f"kubernetes ({namespace}/{service})"
        self.service, self.namespace = service, namespace
        if apis is None:
            from kubernetes import client, config

            config.load_kube_config()
            apis = (client.AppsV1Api(), client.AutoscalingV2Api(), client.CustomObjectsApi(),
                    client.CoreV1Api())  # fmt: skip
        self.apps, self.hpa, self.custom, self.core = apis

    def sample(self) -> PlatformPoint:
        from kubernetes.client.exceptions import ApiException

        ts = time.time()
        ns, svc = self.namespace, self.service
        try:
            replicas: dict[str, int] = {}
            for role, name in (("primary", f"{svc}-primary"), ("canary", svc)):
                try:
                    dep = self.apps.read_namespaced_deployment(name, ns)
                except ApiException as err:
                    if err.status == 404:
                        continue
                    raise
                replicas[role] = dep.status.ready_replicas or 0
            desired = None
            for name in (f"{svc}-primary", svc):
                try:
                    hpa = self.hpa.read_namespaced_horizontal_pod_autoscaler(name, ns)
                except ApiException as err:
                    if err.status == 404:
                        continue
                    raise
                desired = hpa.status.desired_replicas
                break
            phase, weights = None, {}
            try:
                canary = self.custom.get_namespaced_custom_object(*FLAGGER[:2], ns, FLAGGER[2], svc)
                status = canary.get("status") or {}
                phase = status.get("phase")
                weight = float(status.get("canaryWeight") or 0)
                weights = {"primary": 100.0 - weight, "canary": weight}
            except ApiException as err:
                if err.status != 404:
                    raise
            return PlatformPoint(
                ts=ts,
                replicas=replicas,
                desired=desired,
                weights=weights,
                phase=phase,
                nodes=nodes_per_pool(self.core.list_node().items),
            )
        except Exception as err:  # the API server can blip mid-run; the gap shows in the plot
            return PlatformPoint(ts=ts, error=f"{type(err).__name__}: {err}"[:200])

    def replica_deaths(self) -> int | None:
        return None  # pod restarts are the kubelet's (restartCount); not counted yet


def nodes_per_pool(nodes: list[Any]) -> dict[str, int]:
    """Ready nodes per value of the pool label (V1Node objects)."""
    out: dict[str, int] = {}
    for node in nodes:
        pool = (node.metadata.labels or {}).get(POOL_LABEL)
        if pool is None:
            continue
        ready = any(
            c.type == "Ready" and c.status == "True" for c in (node.status.conditions or [])
        )
        out[pool] = out.get(pool, 0) + int(ready)
    return out


# --- Sandbox -----------------------------------------------------------------------------------


class SandboxObserver:
    """Ray Serve's REST API (running replicas per version), the gateway's weights
    (`routing.json`) and Ray's node list (alive nodes per pool) of the running sandbox; the
    rollout phase from the driver's event log (`<state>/rollouts/<service>.jsonl`), counting
    only events of this run.

    The sandbox runs each version as the Serve application `<service>-<version>`; its gateway
    splits the service's traffic between them as `routing.json` says (sandbox/gateway.py).
    """

    def __init__(self, state: Any, service: str, state_dir: Path) -> None:
        self.name = "sandbox (Ray Serve + Ray nodes)"
        self.service = service
        self.serve_api: str = state.urls["serve_api"]
        self.nodes_api: str = state.urls["nodes_api"]
        self.actors_api = f"{state.urls['dashboard']}/api/v0/actors"
        self.state_dir = Path(state_dir)
        self.events = self.state_dir / "rollouts" / f"{service}.jsonl"
        self.since = time.time()
        self.client = requests.Session()

    def sample(self) -> PlatformPoint:
        ts = time.time()
        try:
            apps = get_json(self.client, self.serve_api, SAMPLE_TIMEOUT_S)
            replicas = serve_replicas(apps, self.service)
            weights = routing_weights(read_routing(self.state_dir), self.service)
            nodes = ray_nodes_per_pool(get_json(self.client, self.nodes_api, SAMPLE_TIMEOUT_S))
        except (requests.RequestException, OSError, ValueError, KeyError, TypeError) as err:
            return PlatformPoint(ts=ts, error=f"{type(err).__name__}: {err}"[:200])
        phase = rollout_phase(self.events, self.since)
        return PlatformPoint(
            ts=ts,
            replicas=replicas,
            desired=serve_desired(apps, self.service),
            weights=weights,
            nodes=nodes,
            phase=phase,
        )

    def replica_deaths(self) -> int | None:
        """Ray's state API: the service's replica actors that died during the run, other than
        the ones Serve stopped itself (scale-in, a removed version: `ray.kill`)."""
        params = {"detail": "1", "limit": "10000", "filter_keys": "state",
                  "filter_predicates": "=", "filter_values": "DEAD"}  # fmt: skip
        try:
            resp = self.client.get(self.actors_api, params=params, timeout=30)
            resp.raise_for_status()
            actors = resp.json()["data"]["result"]["result"]
        except (requests.RequestException, ValueError, KeyError):
            return None  # the check then says the observer could not count them
        return unintended_deaths(actors, self.service, self.since)


# How Serve ends its own replicas (graceful stop, then `ray.kill`); any other death was a fault.
INTENDED_DEATHS = {"RAY_KILL", "INTENDED_USER_EXIT", "OUT_OF_SCOPE"}


def unintended_deaths(actors: list[dict[str, Any]], service: str, since: float) -> int:
    """From `GET /api/v0/actors?detail=1`: DEAD replicas of `service` that ended after `since`
    (epoch s) for a reason other than Serve stopping them."""
    prefix = f"ServeReplica:{app_name(service, '')}"
    n = 0
    for a in actors:
        context = (a.get("death_cause") or {}).get("actor_died_error_context") or {}
        ended = (a.get("end_time") or 0) / 1000
        if str(a.get("class_name", "")).startswith(prefix) and ended >= since:
            n += context.get("reason") not in INTENDED_DEATHS
    return n


def serve_replicas(doc: dict[str, Any], service: str) -> dict[str, int]:
    """From `GET /api/serve/applications/`: RUNNING replicas per version."""
    prefix = app_name(service, "")
    replicas: dict[str, int] = {}
    for name, app in (doc.get("applications") or {}).items():
        if not name.startswith(prefix):
            continue
        running = sum(
            1
            for dep in (app.get("deployments") or {}).values()
            for r in dep.get("replicas") or []
            if r.get("state") == "RUNNING"
        )
        replicas[name.removeprefix(prefix)] = running
    return replicas


def routing_weights(routing: Routing, service: str) -> dict[str, float]:
    """Percent of the service's traffic per version, as the gateway splits it."""
    r = routing.services.get(service)
    if r is None:
        return {}
    if r.canary is None:
        return {r.stable: 100.0}
    return {r.stable: 100.0 - r.canary_weight, r.canary: float(r.canary_weight)}


def serve_desired(doc: dict[str, Any], service: str) -> int | None:
    """Replicas Serve's autoscaler wants across the service's versions (`target_num_replicas`)."""
    prefix = app_name(service, "")
    wanted = [
        dep.get("target_num_replicas")
        for name, app in (doc.get("applications") or {}).items()
        if name.startswith(prefix)
        for dep in (app.get("deployments") or {}).values()
    ]
    known = [n for n in wanted if isinstance(n, int)]
    return sum(known) if known else None


def ray_nodes_per_pool(doc: dict[str, Any]) -> dict[str, int]:
    """From Ray's state API `GET /api/v0/nodes`: ALIVE nodes per pool (the pool label)."""
    out: dict[str, int] = {}
    for node in doc["data"]["result"]["result"]:
        pool = (node.get("labels") or {}).get(POOL_LABEL)
        if pool is not None:
            out[pool] = out.get(pool, 0) + (node.get("state") == "ALIVE")
    return out


# The driver's events that end a rollout: its outcomes, and an error (its rollback follows).
_DRIVER_ENDS = {*Outcome, "error"}


def rollout_phase(events: Path, since: float) -> str | None:
    """The sandbox driver's last event since `since`: `promoted`, `rolled_back`, `aborted`,
    `error`, or `progressing` while it runs; None if no rollout started."""
    try:
        lines = events.read_text().splitlines()
    except FileNotFoundError:
        return None
    phase = None
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue  # a line being written
        if e.get("ts", 0) < since:
            continue
        kind = e.get("event")
        phase = kind if kind in _DRIVER_ENDS else "progressing"
    return phase


# --- Running one -------------------------------------------------------------------------------


class Sampler:
    """Samples an observer about once a second on a thread, appending to a JSONL file."""

    def __init__(self, observer: Observer, path: Path, period_s: float = 1.0) -> None:
        self.observer, self.path, self.period_s = observer, path, period_s
        self.latest: PlatformPoint | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            point = self.observer.sample()
            self.latest = point
            append(self.path, point)
            self._stop.wait(max(0.0, self.period_s - (time.time() - point.ts)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def get_json(client: requests.Session, url: str, timeout_s: float) -> Any:
    resp = client.get(url, timeout=timeout_s)
    resp.raise_for_status()
    return resp.json()
