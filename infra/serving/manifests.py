"""The Kubernetes objects of one model service, as plain dicts: pure functions of the spec.

`ModelService` (component.py) registers them with Pulumi; the schedulability check and the tests
read the same dicts. Nothing here touches Pulumi, so values may be plain strings or Outputs.
Which objects are Pulumi's and which Flagger's (so they never fight): `ModelService`.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from gantry.canary import METRIC_NAMES, cluster_query
from gantry.pools import GPU_RESOURCE, PoolScheduling
from gantry.service import ServiceSpec, duration_s

# Label Flagger selects on (the target Deployment needs a single `app: <name>` selector).
APP_LABEL = "app"
# Label on every pod of a service, primary and canary alike (Flagger rewrites only `app`).
SERVICE_LABEL = "gantry.dev/service"
VERSION_LABEL = "gantry.dev/version"
CONTAINER = "serve"
# Where the pod's Serve config is mounted.
SERVE_CONFIG_DIR = "/etc/gantry"
# Ray's ports inside the pod, pinned so the sidecar can leave them alone. Intra-pod traffic on
# loopback is never redirected by Istio's iptables; excluding these keeps anything else that
# reaches them (and Ray's own pod-IP connections) out of Envoy and mTLS.
RAY_PORTS = {
    "gcs": 6379,
    "node-manager": 6380,
    "object-manager": 6381,
    "agent-grpc": 6382,
    "runtime-env-agent": 6383,
    "agent-http": 52365,
    "client": 10001,
}
RAY_WORKER_PORTS = (10002, 10101)  # min..max worker port: one per Ray worker process
RAY_TEMP_DIR = "/tmp/ray"  # an emptyDir: the root filesystem is read-only
# UID/GID the serving container runs as: non-root, and above 10000 so it never shares a UID
# with a host user. Image files must be world-readable (they are, from a plain COPY).
RUN_AS_USER = 10001
# Pod Security Standards `restricted`, as every Gantry pod (serving and job) runs: non-root with
# a fixed UID, no privilege escalation, no capabilities, the runtime's seccomp profile.
RESTRICTED_POD_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "fsGroup": RUN_AS_USER,  # mounted volumes are writable by the pod
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class ServingContext:
    """What the platform layer and the cluster tell a service (no Pulumi types required)."""

    namespace: str
    pool: PoolScheduling
    image: Any  # image reference (a string, or a Pulumi Output of one)
    # Istio ingress gateway (`<namespace>/<name>`) and the external host of this service.
    gateway: str
    host: str
    # Flagger load tester base URL, e.g. http://flagger-loadtester.flagger-system/; None: the
    # platform runs no load tester, so the Canary has no webhooks (analysis needs real traffic).
    loadtester_url: str | None
    # Prometheus the MetricTemplates query.
    prometheus_url: str
    # Custom metric (prometheus-adapter) with in-flight requests per pod.
    in_flight_metric: str
    # Endpoint fields (scheme, tlsConfig) Prometheus needs to scrape a meshed pod.
    mesh_scrape: dict[str, Any]
    priority_class: str | None = None


def labels(spec: ServiceSpec) -> dict[str, str]:
    return {
        APP_LABEL: spec.name,
        SERVICE_LABEL: spec.name,
        "app.kubernetes.io/name": spec.name,
        "app.kubernetes.io/part-of": "gantry",
        "app.kubernetes.io/managed-by": "pulumi",
    }


def _meta(spec: ServiceSpec, ctx: ServingContext, name: str | None = None) -> dict[str, Any]:
    return {"name": name or spec.name, "namespace": ctx.namespace, "labels": labels(spec)}


def cpu_quantity(cores: float) -> str:
    return f"{round(cores * 1000)}m"


def memory_quantity(gib: float) -> str:
    return f"{round(gib * 1024)}Mi"


def ray_num_cpus(spec: ServiceSpec) -> int:
    """Logical CPUs Ray advertises in the pod: what the container may burst to, at least 1."""
    return max(1, math.ceil(spec.resources.cpu_max))


def pod_serve_config(spec: ServiceSpec) -> dict[str, Any]:
    """The service's serve.yaml as the pod runs it: a fixed replica count (the HPA scales pods,
    so Serve's own autoscaler is off), the proxy on all interfaces at the service port, and the
    model version from the spec."""
    cfg = copy.deepcopy(spec.serve_config)
    cfg["http_options"] = {
        **(cfg.get("http_options") or {}),
        "host": "0.0.0.0",
        "port": spec.serve.port,
    }
    for app in cfg.get("applications") or []:
        args = app.get("args")
        if isinstance(args, dict) and "version" in args:
            args["version"] = spec.version
        for dep in app.get("deployments") or []:
            dep.pop("autoscaling_config", None)
            dep["num_replicas"] = spec.replicas_per_pod
    return cfg


def config_map(spec: ServiceSpec, ctx: ServingContext) -> dict[str, Any]:
    # Flagger tracks ConfigMaps a Deployment mounts: a change here starts a canary analysis.
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(spec, ctx, f"{spec.name}-serve"),
        "data": {"serve.yaml": yaml.safe_dump(pod_serve_config(spec), sort_keys=False)},
    }


def ray_start_command(spec: ServiceSpec) -> str:
    p = RAY_PORTS
    flags = [
        "--head",
        "--disable-usage-stats",
        "--include-dashboard=false",
        f"--temp-dir={RAY_TEMP_DIR}",
        f"--num-cpus={ray_num_cpus(spec)}",
        f"--num-gpus={spec.resources.gpus}",
        f"--port={p['gcs']}",
        f"--node-manager-port={p['node-manager']}",
        f"--object-manager-port={p['object-manager']}",
        f"--dashboard-agent-grpc-port={p['agent-grpc']}",
        f"--dashboard-agent-listen-port={p['agent-http']}",
        f"--runtime-env-agent-port={p['runtime-env-agent']}",
        f"--ray-client-server-port={p['client']}",
        # No autoscaler monitor (~50 MiB): a pod's Ray is one node; the HPA scales pods.
        "--no-monitor",
        f"--min-worker-port={RAY_WORKER_PORTS[0]}",
        f"--max-worker-port={RAY_WORKER_PORTS[1]}",
        f"--metrics-export-port={spec.serve.metrics_port}",
    ]
    # `serve run` attaches to this head (fixed ports, metrics port) and blocks; exec makes it PID 1.
    return (
        f"ray start {' '.join(flags)} && "
        f"exec serve run --address=auto {SERVE_CONFIG_DIR}/serve.yaml"
    )


def _probe(spec: ServiceSpec, kind: str, path: str) -> dict[str, Any]:
    p = getattr(spec.probes, kind)
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": p.period_s,
        "timeoutSeconds": p.timeout_s,
        "failureThreshold": p.failure_threshold,
        "initialDelaySeconds": p.initial_delay_s,
    }


def sidecar_annotations(spec: ServiceSpec) -> dict[str, str]:
    """Istio sidecar settings Ray needs (annotation names from Istio's resource annotations)."""
    sc = spec.sidecar
    ray_ports = ",".join(str(p) for p in RAY_PORTS.values())
    # Envoy keeps carrying in-flight requests until just before the pod's grace period ends.
    drain_s = spec.termination_grace_s - 5
    return {
        "sidecar.istio.io/inject": "true",
        # Ray's internal ports never go through Envoy. The metrics port does: Prometheus scrapes
        # it over mTLS like any other meshed port.
        "traffic.sidecar.istio.io/excludeInboundPorts": ray_ports,
        "traffic.sidecar.istio.io/excludeOutboundPorts": ray_ports,
        # Serve must not start before Envoy can carry traffic, and Envoy keeps draining in-flight
        # requests for as long as Serve does on shutdown.
        "proxy.istio.io/config": (
            f"holdApplicationUntilProxyStarts: true\nterminationDrainDuration: {drain_s}s\n"
        ),
        "sidecar.istio.io/proxyCPU": cpu_quantity(sc.cpu),
        "sidecar.istio.io/proxyMemory": f"{sc.memory_mib}Mi",
        "sidecar.istio.io/proxyCPULimit": cpu_quantity(sc.cpu_limit),
        "sidecar.istio.io/proxyMemoryLimit": f"{sc.memory_limit_mib}Mi",
    }


def container_resources(spec: ServiceSpec, pool: PoolScheduling) -> dict[str, Any]:
    r = spec.resources
    requests: dict[str, Any] = {
        "cpu": cpu_quantity(r.cpu),
        "memory": memory_quantity(r.memory_gib),
    }
    limits: dict[str, Any] = {
        "cpu": cpu_quantity(r.cpu_max),
        "memory": memory_quantity(r.memory_max_gib),
    }
    if r.gpus:
        # A GPU service asks for the GPU resource by the pool model's name; request = limit.
        gpu = pool.gpu_resource or GPU_RESOURCE
        requests[gpu] = limits[gpu] = str(r.gpus)
    return {"requests": requests, "limits": limits}


def deployment(spec: ServiceSpec, ctx: ServingContext) -> dict[str, Any]:
    s = spec.serve
    pod_labels = {**labels(spec), VERSION_LABEL: spec.version}
    annotations = sidecar_annotations(spec)
    container = {
        "name": CONTAINER,
        "image": ctx.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", ray_start_command(spec)],
        "ports": [
            {"name": "http", "containerPort": s.port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": s.metrics_port, "protocol": "TCP"},
        ],
        "env": [
            {"name": "GANTRY_SERVICE", "value": spec.name},
            {"name": "GANTRY_VERSION", "value": spec.version},
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "RAY_AUTH_MODE", "value": "disabled"},
            {"name": "HOME", "value": "/tmp"},
            *({"name": k, "value": v} for k, v in s.ray_env().items()),
        ],
        "resources": container_resources(spec, ctx.pool),
        "startupProbe": _probe(spec, "startup", s.readiness_path),
        "readinessProbe": _probe(spec, "readiness", s.readiness_path),
        "livenessProbe": _probe(spec, "liveness", s.health_path),
        # Scale-down and rollouts drop no request: preStop waits until endpoints and Envoy stop
        # sending new requests and those in flight have finished; only then does the image's
        # STOPSIGNAL (SIGINT) make `serve run` shut Serve down (see ServiceSpec.pre_stop_s).
        "lifecycle": {"preStop": {"sleep": {"seconds": spec.pre_stop_s}}},
        "securityContext": copy.deepcopy(RESTRICTED_CONTAINER_CONTEXT),
        "volumeMounts": [
            {"name": "serve-config", "mountPath": SERVE_CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            # Ray's object store; /dev/shm of a container is 64 MiB by default.
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": spec.name,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": spec.termination_grace_s,
        **({"priorityClassName": ctx.priority_class} if ctx.priority_class else {}),
        "nodeSelector": dict(ctx.pool.node_selector),
        "tolerations": [dict(t) for t in ctx.pool.tolerations],
        "securityContext": copy.deepcopy(RESTRICTED_POD_CONTEXT),
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                # Spread when possible; never block a scale-up on a one-node pool.
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {APP_LABEL: spec.name}},
                "matchLabelKeys": ["pod-template-hash"],
            }
        ],
        "containers": [container],
        "volumes": [
            {"name": "serve-config", "configMap": {"name": f"{spec.name}-serve"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec, ctx),
        "spec": {
            # No `replicas`: the HPA and Flagger own it (ModelService in component.py).
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {APP_LABEL: spec.name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": pod_labels, "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }


def service_account(spec: ServiceSpec, ctx: ServingContext) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(spec, ctx),
        "automountServiceAccountToken": False,
    }


def metrics_service(spec: ServiceSpec, ctx: ServingContext) -> dict[str, Any]:
    """Headless Service over every pod of the service (primary and canary) for Ray's metrics port.

    Not the routable Service: Flagger generates `<name>`, `<name>-primary` and `<name>-canary`
    from the Canary's `service` block.
    """
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, ctx, f"{spec.name}-metrics"),
        "spec": {
            "clusterIP": "None",
            "selector": {SERVICE_LABEL: spec.name},
            "ports": [
                {
                    "name": "metrics",
                    "port": spec.serve.metrics_port,
                    "targetPort": "metrics",
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }


def service_monitor(spec: ServiceSpec, ctx: ServingContext) -> dict[str, Any]:
    """Prometheus scrapes Ray's metrics port of every pod (primary and canary), each exactly once.

    Through the sidecar over mTLS (the mesh is STRICT) with the platform's scrape settings; a
    ServiceMonitor, not a PodMonitor, because only its tlsConfig takes certificate files. The
    operator adds `namespace` and `pod` labels: the adapter's in-flight metric and Flagger's
    canary queries rely on both.
    """
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(spec, ctx),
        "spec": {
            "selector": {"matchLabels": {SERVICE_LABEL: spec.name}},
            "namespaceSelector": {"matchNames": [ctx.namespace]},
            "endpoints": [
                {"port": "metrics", "path": "/metrics", "interval": "15s", **ctx.mesh_scrape}
            ],
            "podTargetLabels": [SERVICE_LABEL, VERSION_LABEL],
        },
    }


def _behaviour(b: Any, select: str) -> dict[str, Any]:
    policies = []
    if b.max_percent is not None:
        policies.append({"type": "Percent", "value": b.max_percent, "periodSeconds": b.period_s})
    if b.max_replicas_step is not None:
        policies.append({"type": "Pods", "value": b.max_replicas_step, "periodSeconds": b.period_s})
    return {
        "stabilizationWindowSeconds": b.stabilization_s,
        "selectPolicy": select,
        "policies": policies,
    }


def hpa(spec: ServiceSpec, ctx: ServingContext) -> dict[str, Any]:
    a = spec.autoscaling
    metrics: list[dict[str, Any]] = [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": ctx.in_flight_metric},
                "target": {
                    "type": "AverageValue",
                    "averageValue": _quantity(spec.hpa_target_in_flight_per_pod),
                },
            },
        }
    ]
    if a.target_cpu_percent is not None:
        metrics.append(
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": a.target_cpu_percent},
                },
            }
        )
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(spec, ctx),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": a.min_replicas,
            "maxReplicas": a.max_replicas,
            "metrics": metrics,
            "behavior": {
                # Up: the larger of the policies (fast); down: the smaller (gentle).
                "scaleUp": _behaviour(a.scale_up, "Max"),
                "scaleDown": _behaviour(a.scale_down, "Min"),
            },
        },
    }


def _quantity(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{round(value * 1000)}m"


def pdb(spec: ServiceSpec, ctx: ServingContext) -> dict[str, Any]:
    # maxUnavailable 1, not minAvailable: a one-replica service must not block node drains forever.
    # Selects by the service label, so it covers the Flagger-made primary pods as well.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(spec, ctx),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {SERVICE_LABEL: spec.name}},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


# A Flagger MetricTemplate per check Flagger has no built-in for; the queries are generated from
# the one table of checks (gantry/canary.py, METRIC_CHECKS).
METRIC_QUERIES = {m: q for m in METRIC_NAMES if (q := cluster_query(m)) is not None}
BUILTIN_METRICS = {m for m in METRIC_NAMES if cluster_query(m) is None}


def metric_template_name(spec: ServiceSpec, metric: str) -> str:
    return f"{spec.name}-{metric}"


def metric_templates(spec: ServiceSpec, ctx: ServingContext) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": _meta(spec, ctx, metric_template_name(spec, m.name)),
            "spec": {
                "provider": {"type": "prometheus", "address": ctx.prometheus_url},
                "query": METRIC_QUERIES[m.name],
            },
        }
        for m in spec.canary.metrics
        if m.name not in BUILTIN_METRICS
    ]


def _curl(spec: ServiceSpec, ctx: ServingContext, timeout_s: int) -> str:
    r = spec.canary.webhooks.smoke.request  # type: ignore[union-attr]
    url = f"http://{spec.name}-canary.{ctx.namespace}:{spec.serve.port}{r.path}"
    body = (
        f" -H 'Content-Type: application/json' -d '{_json(r.body)}'" if r.body is not None else ""
    )
    return f"curl -sSf --max-time {timeout_s} -X {r.method}{body} {url}"


def _hey(spec: ServiceSpec, ctx: ServingContext) -> str:
    load = spec.canary.webhooks.load
    assert load is not None
    r = load.request
    url = f"http://{spec.name}-canary.{ctx.namespace}:{spec.serve.port}{r.path}"
    per_client = load.rps / load.concurrency
    body = f" -T application/json -d '{_json(r.body)}'" if r.body is not None else ""
    # hey: -z duration, -c clients, -q requests/s per client. One interval of load per call.
    return (
        f"hey -z {spec.canary.interval} -c {load.concurrency} -q {per_client:g}"
        f" -m {r.method}{body} {url}"
    )


def _json(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration Istio accepts: `35s`, or `2500ms` for a fraction."""
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


def retry_policy(spec: ServiceSpec) -> dict[str, Any]:
    """The Canary's `service.retries` (Istio HTTPRetry). Always rendered, so the policy is the
    service.yaml's: with none, Istio applies its own default (no per-try timeout, no `reset`).
    `attempts: 0` turns retries off."""
    r = spec.retries
    return {
        "attempts": r.attempts,
        "perTryTimeout": go_duration(spec.per_try_timeout_s),
        "retryOn": ",".join(r.retry_on),
    }


def canary(spec: ServiceSpec, ctx: ServingContext) -> dict[str, Any]:
    c = spec.canary
    metrics = []
    for m in c.metrics:
        entry: dict[str, Any] = {
            "name": m.name,
            "interval": m.interval,
            "thresholdRange": m.threshold_range.model_dump(exclude_none=True),  # type: ignore[union-attr]
        }
        if m.name not in BUILTIN_METRICS:
            entry["templateRef"] = {
                "name": metric_template_name(spec, m.name),
                "namespace": ctx.namespace,
            }
        metrics.append(entry)
    webhooks = []
    if c.webhooks.smoke is not None and ctx.loadtester_url:
        timeout = c.webhooks.smoke.timeout
        webhooks.append(
            {
                "name": "smoke",
                "type": "pre-rollout",
                "url": ctx.loadtester_url,
                "timeout": timeout,
                "metadata": {"type": "bash", "cmd": _curl(spec, ctx, duration_s(timeout))},
            }
        )
    if c.webhooks.load is not None and ctx.loadtester_url:
        webhooks.append(
            {
                "name": "load",
                "type": "rollout",
                "url": ctx.loadtester_url,
                "timeout": c.webhooks.load.timeout,
                "metadata": {"type": "cmd", "cmd": _hey(spec, ctx)},
            }
        )
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": _meta(spec, ctx),
        "spec": {
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "autoscalerRef": {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "name": spec.name,
            },
            "progressDeadlineSeconds": spec.probes.startup.period_s
            * spec.probes.startup.failure_threshold
            + 60,
            "service": {
                "name": spec.name,
                "port": spec.serve.port,
                "targetPort": "http",
                "portName": "http",
                "gateways": [ctx.gateway, "mesh"],
                "hosts": [ctx.host, spec.name],
                # Flagger copies both into the VirtualService's route (service.yaml `retries`).
                "retries": retry_policy(spec),
                "timeout": go_duration(spec.route_timeout_s),
            },
            "analysis": {
                "interval": c.interval,
                "threshold": c.threshold,
                "stepWeight": c.step_weight,
                "maxWeight": c.max_weight,
                "metrics": metrics,
                "webhooks": webhooks,
            },
        },
    }


def all_objects(spec: ServiceSpec, ctx: ServingContext) -> list[dict[str, Any]]:
    """Every object of one service, in apply order."""
    return [
        service_account(spec, ctx),
        config_map(spec, ctx),
        deployment(spec, ctx),
        hpa(spec, ctx),
        pdb(spec, ctx),
        metrics_service(spec, ctx),
        service_monitor(spec, ctx),
        *metric_templates(spec, ctx),
        canary(spec, ctx),
    ]
