"""The ModelService objects, read like policies, on the whole program of each shipped stack."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry.pools import GPU_RESOURCE, GPU_TAINT, pool_facts
from gantry.service import ServiceSpecError, duration_s, load_services
from gantry.stack import ServiceEntry
from infra.checks import crd_schema_dir, validate_objects
from infra.program import build
from infra.render import ResourceIndex, run_offline
from infra.serving.manifests import RAY_PORTS
from tests.conftest import STACKS, stack_config

Program = Callable[[str], ResourceIndex]
SERVICES = ("embedder", "classifier")


def serving(program: Program, stack: str, kind: str) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["name"]: m for m in program(stack).manifests("serving") if m["kind"] == kind
    }


def pod_specs(program: Program, stack: str) -> dict[str, dict[str, Any]]:
    return {n: d["spec"]["template"] for n, d in serving(program, stack, "Deployment").items()}


@pytest.mark.parametrize("stack", STACKS)
def test_one_model_service_per_enabled_service(program: Program, stack: str) -> None:
    index = program(stack)
    components = index.of_type("gantry:serving:ModelService")
    assert sorted(c.name for c in components) == sorted(SERVICES)
    for c in components:
        kinds = sorted(r.type.split(":")[-1] for r in index.children(c))
        assert kinds == sorted(
            [
                "ServiceAccount",
                "ConfigMap",
                "Deployment",
                "HorizontalPodAutoscaler",
                "PodDisruptionBudget",
                "Service",
                "ServiceMonitor",
                "MetricTemplate",
                "Canary",
            ]
        ), c.name


@pytest.mark.parametrize("stack", STACKS)
def test_names_agree_across_deployment_hpa_canary_and_services(
    program: Program, stack: str
) -> None:
    deployments = serving(program, stack, "Deployment")
    hpas = serving(program, stack, "HorizontalPodAutoscaler")
    canaries = serving(program, stack, "Canary")
    assert deployments.keys() == hpas.keys() == canaries.keys() == set(SERVICES)
    for name, canary in canaries.items():
        spec, dep = canary["spec"], deployments[name]
        assert spec["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert spec["autoscalerRef"]["name"] == hpas[name]["metadata"]["name"] == name
        assert hpas[name]["spec"]["scaleTargetRef"]["name"] == name
        # Flagger's routable Service targets the container's `http` port of this Deployment.
        ports = {
            p["name"]: p["containerPort"]
            for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        assert spec["service"]["name"] == name and spec["service"]["targetPort"] == "http"
        assert spec["service"]["port"] == ports["http"]
        # Flagger selects on a single `app: <name>` label.
        assert dep["spec"]["selector"] == {"matchLabels": {"app": name}}
        namespaces = {o["metadata"]["namespace"] for o in (dep, hpas[name], canary)}
        assert len(namespaces) == 1


@pytest.mark.parametrize("stack", STACKS)
def test_pulumi_never_owns_what_flagger_generates(program: Program, stack: str) -> None:
    names = {(m["kind"], m["metadata"]["name"]) for m in program(stack).manifests()}
    for svc in SERVICES:
        for kind, name in [
            ("Deployment", f"{svc}-primary"),
            ("HorizontalPodAutoscaler", f"{svc}-primary"),
            ("Service", svc),
            ("Service", f"{svc}-primary"),
            ("Service", f"{svc}-canary"),
            ("VirtualService", svc),
            ("DestinationRule", f"{svc}-canary"),
        ]:
            assert (kind, name) not in names
    # The HPA and Flagger own the replica count: Pulumi never sets it, so SSA never takes it back.
    for dep in serving(program, stack, "Deployment").values():
        assert "replicas" not in dep["spec"]


def test_a_second_run_registers_identical_inputs(program: Program) -> None:
    """What makes a second `pulumi up` plan no change: the program is deterministic."""
    again = run_offline(stack_config("sandbox"), "sandbox")
    first = {r.urn: r.inputs for r in program("sandbox") if r.layer == "serving"}
    assert {r.urn: r.inputs for r in again if r.layer == "serving"} == first


@pytest.mark.parametrize("stack", STACKS)
def test_canary_weights_and_thresholds_are_sane(program: Program, stack: str) -> None:
    for name, canary in serving(program, stack, "Canary").items():
        a = canary["spec"]["analysis"]
        assert 0 < a["stepWeight"] <= a["maxWeight"] <= 100
        assert a["maxWeight"] % a["stepWeight"] == 0, name
        assert a["threshold"] >= 1
        metrics = {m["name"]: m for m in a["metrics"]}
        assert 0 < metrics["request-success-rate"]["thresholdRange"]["min"] <= 100
        assert metrics["request-duration"]["thresholdRange"]["max"] > 0
        templates = serving(program, stack, "MetricTemplate")
        for m in a["metrics"]:
            if "templateRef" in m:
                assert m["templateRef"]["name"] in templates
        hooks = {h["type"]: h for h in a["webhooks"]}
        assert f"{name}-canary." in hooks["pre-rollout"]["metadata"]["cmd"]
        assert hooks["rollout"]["metadata"]["cmd"].startswith("hey ")


@pytest.mark.parametrize("stack", STACKS)
def test_canary_retries_only_requests_a_dead_pod_dropped(program: Program, stack: str) -> None:
    """The Canary's `service.retries`/`timeout` (Flagger copies them into the VirtualService)."""
    specs = load_services(stack_config(stack))
    for name, canary in serving(program, stack, "Canary").items():
        svc, spec = canary["spec"]["service"], specs[name]
        retries = svc["retries"]
        assert retries == {
            "attempts": spec.retries.attempts,
            "perTryTimeout": f"{spec.per_try_timeout_s:g}s",
            "retryOn": ",".join(spec.retries.retry_on),
        }
        assert 1 <= retries["attempts"] <= 3, name
        # A live pod answers (Serve's 408 at worst) before its try times out, so a timed-out try
        # is a silent pod's; and the route's timeout never cuts the last retry short.
        per_try = duration_s(retries["perTryTimeout"])
        assert per_try > spec.request_timeout_s
        assert duration_s(svc["timeout"]) >= (retries["attempts"] + 1) * per_try
        # Failures where the pod died or was never reached; no status code, so Serve's overload
        # answer (503 past max_queued_requests) is not multiplied by the retries.
        conditions = set(retries["retryOn"].split(","))
        assert {"connect-failure", "reset"} <= conditions
        assert not {"5xx", "gateway-error", "retriable-status-codes"} & conditions
        assert not any(c.isdigit() for c in conditions)


def _svc_canary(root: Path, name: str = "svc") -> dict[str, Any]:
    """The Canary the whole program renders for service `name` of a services folder."""
    cfg = stack_config("sandbox").model_copy(update={"services": {name: ServiceEntry()}})
    index = run_offline(cfg, "retries", program=lambda c: build(c, services_dir=root))
    (canary,) = [m for m in index.find_manifests("Canary") if m["metadata"]["name"] == name]
    return canary


def test_canary_retries_come_from_service_yaml(services_dir: Callable[..., Path]) -> None:
    retries = {"attempts": 3, "per_try_timeout_s": 12.5, "retry_on": ["connect-failure", 503]}
    canary = _svc_canary(services_dir("svc", retries=retries))
    service = canary["spec"]["service"]
    assert service["retries"] == {
        "attempts": 3,
        "perTryTimeout": "12500ms",
        "retryOn": "connect-failure,503",
    }
    # 4 tries x 12.5 s, plus Envoy's back-off before each of the 3 retries (<= 0.25 s each).
    assert service["timeout"] == "51s"
    if crd_schema_dir() is not None:
        assert validate_objects([canary], stack_config("sandbox").cluster.kubernetes_version) == []
    # attempts 0 is rendered, not left out: without `retries` Istio applies its default policy.
    canary = _svc_canary(services_dir("off", retries={"attempts": 0}), "off")
    assert canary["spec"]["service"]["retries"]["attempts"] == 0


@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        ({"per_try_timeout_s": 8}, "retries.per_try_timeout_s: 8 s must exceed Serve's request"),
        ({"retry_on": ["reset", "teapot"]}, "retries.retry_on[1]: 'teapot' is neither"),
        ({"attempts": 9}, "retries.attempts: Input should be less than or equal to 5"),
    ],
)
def test_a_bad_retry_policy_is_named_by_key(
    services_dir: Callable[..., Path], retries: dict[str, Any], expected: str
) -> None:
    root = services_dir("svc", retries=retries)
    with pytest.raises(ServiceSpecError) as err:
        _svc_canary(root)
    message = str(err.value)
    assert message.startswith(f"{root / 'svc' / 'service.yaml'}: {expected}")
    assert "\n" not in message


@pytest.mark.parametrize("stack", STACKS)
def test_every_gpu_pod_tolerates_the_gpu_taint(program: Program, stack: str) -> None:
    gpu_toleration = {
        "key": GPU_TAINT.key,
        "operator": "Equal",
        "value": GPU_TAINT.value,
        "effect": GPU_TAINT.effect,
    }
    pools = pool_facts(stack_config(stack).pools)
    for name, tpl in pod_specs(program, stack).items():
        pod = tpl["spec"]
        limits = pod["containers"][0]["resources"]["limits"]
        if GPU_RESOURCE in limits:
            assert gpu_toleration in pod["tolerations"], name
            pool = pod["nodeSelector"]
            assert any(p.is_gpu and p.node_selector == pool for p in pools.values()), name


@pytest.mark.parametrize("stack", STACKS)
def test_no_pod_without_requests_and_limits(program: Program, stack: str) -> None:
    for name, tpl in pod_specs(program, stack).items():
        for c in tpl["spec"]["containers"]:
            res = c["resources"]
            assert {"cpu", "memory"} <= res["requests"].keys() <= res["limits"].keys(), name
        # The injected sidecar gets its resources from annotations.
        ann = tpl["metadata"]["annotations"]
        for key in ("proxyCPU", "proxyMemory", "proxyCPULimit", "proxyMemoryLimit"):
            assert f"sidecar.istio.io/{key}" in ann, name


@pytest.mark.parametrize("stack", STACKS)
def test_pods_come_from_the_pool_model(program: Program, stack: str) -> None:
    cfg = stack_config(stack)
    pools = pool_facts(cfg.pools)
    specs = load_services(cfg)
    for name, tpl in pod_specs(program, stack).items():
        pool = pools[specs[name].pool]
        assert tpl["spec"]["nodeSelector"] == pool.node_selector
        assert tpl["spec"]["tolerations"] == pool.tolerations


@pytest.mark.parametrize("stack", STACKS)
def test_pods_shut_down_without_dropping_requests(program: Program, stack: str) -> None:
    specs = load_services(stack_config(stack))
    for name, tpl in pod_specs(program, stack).items():
        pod, spec = tpl["spec"], specs[name]
        c = pod["containers"][0]
        # preStop outlasts endpoint removal plus the longest request; the grace period outlasts
        # preStop plus Serve's own graceful shutdown.
        pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pre_stop >= spec.serve.drain_delay_s + spec.request_timeout_s
        assert pod["terminationGracePeriodSeconds"] > pre_stop + spec.graceful_shutdown_s
        proxy = yaml.safe_load(tpl["metadata"]["annotations"]["proxy.istio.io/config"])
        assert proxy["holdApplicationUntilProxyStarts"] is True
        # Envoy keeps serving in-flight requests for as long as Serve drains them.
        drain = int(proxy["terminationDrainDuration"].rstrip("s"))
        assert spec.graceful_shutdown_s <= drain < pod["terminationGracePeriodSeconds"]
        assert c["startupProbe"]["httpGet"]["path"] == spec.serve.readiness_path
        assert c["readinessProbe"]["httpGet"]["path"] == spec.serve.readiness_path
        assert c["livenessProbe"]["httpGet"]["path"] == spec.serve.health_path


@pytest.mark.parametrize("stack", STACKS)
def test_restricted_security_and_ray_ports_outside_the_mesh(program: Program, stack: str) -> None:
    for name, tpl in pod_specs(program, stack).items():
        pod = tpl["spec"]
        c = pod["containers"][0]
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"]
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        ann = tpl["metadata"]["annotations"]
        excluded = set(ann["traffic.sidecar.istio.io/excludeInboundPorts"].split(","))
        assert {str(p) for p in RAY_PORTS.values()} == excluded
        # Every pinned Ray port in the start command is one of the excluded ones.
        command = c["command"][-1]
        for port in RAY_PORTS.values():
            assert f"={port}" in command, (name, port)
        assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"


@pytest.mark.parametrize("stack", STACKS)
def test_hpa_scales_on_in_flight_requests_fast_up_slow_down(program: Program, stack: str) -> None:
    from infra.addons.metrics import IN_FLIGHT_METRIC

    specs = load_services(stack_config(stack))
    for name, hpa in serving(program, stack, "HorizontalPodAutoscaler").items():
        spec = hpa["spec"]
        pods = [m for m in spec["metrics"] if m["type"] == "Pods"]
        assert pods[0]["pods"]["metric"]["name"] == IN_FLIGHT_METRIC
        assert (
            float(pods[0]["pods"]["target"]["averageValue"])
            == specs[name].hpa_target_in_flight_per_pod
        )
        assert any(m["type"] == "Resource" for m in spec["metrics"])
        up, down = spec["behavior"]["scaleUp"], spec["behavior"]["scaleDown"]
        assert up["stabilizationWindowSeconds"] < down["stabilizationWindowSeconds"]
        assert (spec["minReplicas"], spec["maxReplicas"]) == (
            specs[name].autoscaling.min_replicas,
            specs[name].autoscaling.max_replicas,
        )


@pytest.mark.parametrize("stack", STACKS)
def test_pod_runs_serve_yaml_with_a_fixed_replica_count(program: Program, stack: str) -> None:
    specs = load_services(stack_config(stack))
    maps = serving(program, stack, "ConfigMap")
    for name, spec in specs.items():
        cfg = yaml.safe_load(maps[f"{name}-serve"]["data"]["serve.yaml"])
        assert cfg["http_options"]["port"] == spec.serve.port
        for app in cfg["applications"]:
            assert app["args"].get("version", spec.version) == spec.version
            for d in app["deployments"]:
                assert "autoscaling_config" not in d
                assert d["num_replicas"] == spec.replicas_per_pod


@pytest.mark.parametrize("stack", STACKS)
def test_objects_pass_kubernetes_and_crd_schemas(program: Program, stack: str) -> None:
    if crd_schema_dir() is None:
        pytest.skip("CRD schemas folder absent (run `make crd-schemas`)")
    version = stack_config(stack).cluster.kubernetes_version
    assert validate_objects(program(stack).manifests("serving"), version) == []


def test_images_kind_loads_eks_pushes(program: Program) -> None:
    kind = {
        r.name: r.inputs["create"]
        for r in program("sandbox").of_type("command:local:Command")
        if r.layer == "serving"
    }
    eks = {
        r.name: r.inputs["create"]
        for r in program("eks").of_type("command:local:Command")
        if r.layer == "serving"
    }
    for svc in SERVICES:
        assert f"docker build -f services/{svc}/Dockerfile" in kind[f"{svc}-image-build"]
        assert "kind load docker-image" in kind[f"{svc}-image-build"]
        assert "--name gantry-sandbox" in kind[f"{svc}-image-build"]
        assert "docker push" in eks[f"{svc}-image-build"]
        assert "kind load" not in eks[f"{svc}-image-build"]
    # `kind load` runs only once the cluster (its provider, made from the kubeconfig) exists.
    for r in program("sandbox").of_type("command:local:Command"):
        if r.layer == "serving":
            assert any("pulumi:providers:kubernetes" in d for d in r.depends_on), r.name
    # EKS: one immutable ECR repository per service.
    repos = program("eks").of_type("aws:ecr/repository:Repository")
    assert sorted(r.inputs["name"] for r in repos) == sorted(f"gantry/{s}" for s in SERVICES)
    assert all(r.inputs["imageTagMutability"] == "IMMUTABLE" for r in repos)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Prometheus) not installed")
def test_metric_template_queries_are_valid_promql(program: Program, tmp_path: Path) -> None:
    """Each MetricTemplate's query, with Flagger's variables filled in, parses as PromQL."""
    rules = []
    for name, template in serving(program, "sandbox", "MetricTemplate").items():
        query = template["spec"]["query"]
        for var, value in {
            "namespace": "ml-serving",
            "target": "embedder",
            "interval": "1m",
        }.items():
            query = query.replace(f"{{{{ {var} }}}}", value)
        assert "{{" not in query, name
        rules.append({"record": f"gantry:{name.replace('-', '_')}", "expr": query})
    assert rules
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "templates", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
