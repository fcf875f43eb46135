"""Observers: the Kubernetes one on the official client's models (no cluster here), the
sandbox one on Ray's REST responses."""

import json
from pathlib import Path
from typing import Any

from kubernetes.client import (
    V1Deployment,
    V1DeploymentSpec,
    V1DeploymentStatus,
    V1LabelSelector,
    V1Node,
    V1NodeCondition,
    V1NodeList,
    V1NodeStatus,
    V1ObjectMeta,
    V1PodTemplateSpec,
    V2CrossVersionObjectReference,
    V2HorizontalPodAutoscaler,
    V2HorizontalPodAutoscalerSpec,
    V2HorizontalPodAutoscalerStatus,
)
from kubernetes.client.exceptions import ApiException

from gantry.pools import POOL_LABEL
from gantry.sandbox_state import Routing, ServiceRouting, read_routing
from loadtests.observers import (
    KubernetesObserver,
    NullObserver,
    Sampler,
    nodes_per_pool,
    ray_nodes_per_pool,
    routing_weights,
    serve_desired,
    serve_replicas,
)
from loadtests.timeline import PlatformPoint, read_points


def _node(pool: str | None, ready: bool) -> V1Node:
    labels = {POOL_LABEL: pool} if pool else {"other": "x"}
    cond = V1NodeCondition(type="Ready", status="True" if ready else "False")
    return V1Node(metadata=V1ObjectMeta(labels=labels), status=V1NodeStatus(conditions=[cond]))


class FakeApps:
    def __init__(self, ready: dict[str, int]) -> None:
        self.ready = ready

    def read_namespaced_deployment(self, name: str, ns: str) -> V1Deployment:
        if name not in self.ready:
            raise ApiException(status=404)
        spec = V1DeploymentSpec(selector=V1LabelSelector(), template=V1PodTemplateSpec())
        return V1Deployment(spec=spec, status=V1DeploymentStatus(ready_replicas=self.ready[name]))


class FakeHpa:
    def read_namespaced_horizontal_pod_autoscaler(self, name: str, ns: str) -> Any:
        if name != "embedder-primary":
            raise ApiException(status=404)
        status = V2HorizontalPodAutoscalerStatus(current_replicas=2, desired_replicas=3)
        ref = V2CrossVersionObjectReference(kind="Deployment", name=name)
        spec = V2HorizontalPodAutoscalerSpec(max_replicas=4, scale_target_ref=ref)
        return V2HorizontalPodAutoscaler(spec=spec, status=status)


class FakeCustom:
    def __init__(self, status: dict[str, Any] | None) -> None:
        self.status = status
        self.asked: tuple[Any, ...] = ()

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        self.asked = args
        if self.status is None:
            raise ApiException(status=404)
        return {"status": self.status}


class FakeCore:
    def list_node(self) -> V1NodeList:
        nodes = [_node("cpu", True), _node("gpu", True), _node("gpu", False), _node(None, True)]
        return V1NodeList(items=nodes)


def test_kubernetes_observer_reads_hpa_deployments_canary_and_pools() -> None:
    custom = FakeCustom({"phase": "Progressing", "canaryWeight": 20})
    apps = FakeApps({"embedder-primary": 2, "embedder": 1})
    obs = KubernetesObserver("embedder", "ml", apis=(apps, FakeHpa(), custom, FakeCore()))
    p = obs.sample()
    assert p.error is None
    assert p.replicas == {"primary": 2, "canary": 1}
    assert p.desired == 3
    assert (p.phase, p.weights) == ("Progressing", {"primary": 80.0, "canary": 20.0})
    assert p.nodes == {"cpu": 1, "gpu": 1}
    assert custom.asked == ("flagger.app", "v1beta1", "ml", "canaries", "embedder")


def test_kubernetes_observer_without_flagger_or_canary() -> None:
    apps = FakeApps({"embedder": 3})
    obs = KubernetesObserver("embedder", "ml", apis=(apps, FakeHpa(), FakeCustom(None), FakeCore()))
    p = obs.sample()
    assert (p.replicas, p.phase, p.weights) == ({"canary": 3}, None, {})


def test_an_api_error_is_a_gap_not_a_crash() -> None:
    class Broken(FakeApps):
        def read_namespaced_deployment(self, name: str, ns: str) -> V1Deployment:
            raise ApiException(status=500, reason="etcd timeout")

    obs = KubernetesObserver(
        "embedder", "ml", apis=(Broken({}), FakeHpa(), FakeCustom(None), FakeCore())
    )
    p = obs.sample()
    assert p.error is not None and "etcd timeout" in p.error


def test_nodes_per_pool_counts_ready_nodes_only() -> None:
    assert nodes_per_pool([_node("gpu", False)]) == {"gpu": 0}


# Recorded from a running sandbox (the sandbox tests' echo service, mid-rollout: v2 starting).
DATA = Path(__file__).with_name("data")
SERVE_APPS = json.loads((DATA / "ray_serve_applications.json").read_text())
RAY_NODES = json.loads((DATA / "ray_nodes.json").read_text())


def test_serve_replicas_per_version() -> None:
    assert serve_replicas(SERVE_APPS, "echo") == {"v1": 1, "v2": 0}  # v2 is STARTING
    assert serve_replicas(SERVE_APPS, "embedder") == {}
    assert serve_desired(SERVE_APPS, "echo") == 2  # one replica per version wanted
    assert serve_desired(SERVE_APPS, "embedder") is None


def test_weights_follow_the_gateways_routing(tmp_path: Path) -> None:
    routing = Routing(services={"echo": ServiceRouting(stable="v1")})
    routing.write(tmp_path / "routing.json")
    assert routing_weights(read_routing(tmp_path), "echo") == {"v1": 100.0}
    routing.services["echo"] = ServiceRouting(stable="v1", canary="v2", canary_weight=25)
    routing.write(tmp_path / "routing.json")
    assert routing_weights(read_routing(tmp_path), "echo") == {"v1": 75.0, "v2": 25.0}
    assert routing_weights(routing, "embedder") == {}


def test_ray_nodes_per_pool_counts_alive_nodes() -> None:
    # Recorded: the head (cpu), two alive gpu-pool nodes and one the autoscaler removed.
    assert ray_nodes_per_pool(RAY_NODES) == {"cpu": 1, "gpu": 2}


def test_sampler_writes_a_point_per_period(tmp_path: Path) -> None:
    sampler = Sampler(NullObserver("test"), tmp_path / "p.jsonl", period_s=0.05).start()
    import time

    time.sleep(0.3)
    sampler.stop()
    points = read_points(tmp_path / "p.jsonl", PlatformPoint)
    assert len(points) >= 3 and all(p.error == "test" for p in points)


def test_sandbox_rollout_phase_counts_only_this_runs_events(tmp_path: Path) -> None:
    from loadtests.observers import rollout_phase

    log = tmp_path / "embedder.jsonl"
    assert rollout_phase(log, since=100) is None
    events = [
        {"ts": 50, "event": "rolled_back"},  # an earlier rollout
        {"ts": 101, "event": "canary_ready"},
        {"ts": 102, "event": "weight", "canary_weight": 10},
    ]
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert rollout_phase(log, since=100) == "progressing"
    with log.open("a") as f:
        f.write(json.dumps({"ts": 130, "event": "promoted", "stable": "v2"}) + '\n{"ts": 13')
    assert rollout_phase(log, since=100) == "promoted"
    assert rollout_phase(log, since=200) is None


def test_sandbox_observer_samples_the_recorded_api(tmp_path: Path) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    from loadtests.observers import SandboxObserver

    class Api(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            doc = SERVE_APPS if self.path.startswith("/api/serve/") else RAY_NODES
            raw = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    state = SimpleNamespace(
        urls={
            "serve_api": f"{base}/api/serve/applications/",
            "nodes_api": f"{base}/api/v0/nodes",
            "dashboard": base,
        }
    )
    try:
        obs = SandboxObserver(state, "echo", tmp_path)
        (tmp_path / "rollouts").mkdir()
        mid_rollout = ServiceRouting(stable="v1", canary="v2", canary_weight=0)
        Routing(services={"echo": mid_rollout}).write(tmp_path / "routing.json")
        (tmp_path / "rollouts" / "echo.jsonl").write_text(
            json.dumps({"ts": obs.since + 1, "event": "canary_ready"}) + "\n"
        )
        p = obs.sample()
    finally:
        server.shutdown()
    assert p.error is None
    assert (p.replicas, p.desired, p.weights) == ({"v1": 1, "v2": 0}, 2, {"v1": 100.0, "v2": 0.0})
    assert (p.nodes, p.phase) == ({"cpu": 1, "gpu": 2}, "progressing")
    dead = SandboxObserver(state, "echo", tmp_path).sample()  # the server is gone
    assert dead.error is not None and dead.replicas == {}


def test_replica_deaths_count_only_unintended_ones_of_this_run() -> None:
    from loadtests.observers import unintended_deaths

    def actor(cls: str, reason: str, end_s: float) -> dict[str, object]:
        context = {"reason": reason, "error_message": "..."}
        return {"class_name": cls, "end_time": end_s * 1000,
                "death_cause": {"actor_died_error_context": context}}  # fmt: skip

    actors = [
        actor("ServeReplica:embedder-v1:Embedder", "WORKER_DIED", 120),  # SIGKILLed: counts
        actor("ServeReplica:embedder-v1:Embedder", "NODE_DIED", 130),  # its node lost: counts
        actor("ServeReplica:embedder-v1:Embedder", "RAY_KILL", 140),  # scale-in by Serve
        actor("ServeReplica:embedder-v2:Embedder", "INTENDED_USER_EXIT", 150),  # version removed
        actor("ServeReplica:embedder-v1:Embedder", "WORKER_DIED", 50),  # before this run
        actor("ServeReplica:classifier-v1:Classifier", "WORKER_DIED", 120),  # another service
    ]
    assert unintended_deaths(actors, "embedder", since=100) == 2
