"""Dashboards and alert rules: files under platform/observability, rendered as objects."""

from __future__ import annotations

import json
from collections.abc import Callable

import yaml

from infra.addons.metrics import RAY_IN_FLIGHT_SERIES
from infra.addons.monitoring import dashboard_files, rule_files
from infra.render import ResourceIndex

Program = Callable[[str], ResourceIndex]


def exprs(dashboard: dict) -> list[str]:  # type: ignore[type-arg]
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_dashboards_are_grafana_json_with_queries() -> None:
    files = dashboard_files()
    assert {f.stem for f in files} >= {"serve-overview", "gpu-pool"}
    for path in files:
        board = json.loads(path.read_text())
        assert board["uid"] and board["title"] and board["panels"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        assert all(e.strip() for e in exprs(board)), f"{path.name}: empty query"


def test_serve_overview_shows_what_an_operator_needs() -> None:
    board = json.loads((dashboard_files()[0].parent / "serve-overview.json").read_text())
    queries = " ".join(exprs(board))
    assert "ray_serve_num_http_requests_total" in queries  # RPS
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}," in queries  # p50/p95/p99
    assert RAY_IN_FLIGHT_SERIES in queries  # in-flight, the HPA's signal
    assert "kube_deployment_status_replicas" in queries  # replicas per version
    assert "flagger_canary_weight" in queries  # canary weight


def test_gpu_dashboard_reads_dcgm_and_capacity() -> None:
    board = json.loads((dashboard_files()[0].parent / "gpu-pool.json").read_text())
    queries = " ".join(exprs(board))
    assert "DCGM_FI_DEV_GPU_UTIL" in queries and "nvidia_com_gpu" in queries


def test_rules_cover_slos_gpu_pending_and_hpa_at_max() -> None:
    alerts = {}
    for path in rule_files():
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                assert rule["expr"].strip() and rule.get("for"), rule["alert"]
                alerts[rule["alert"]] = rule
    assert {
        "ServeErrorRateHigh",
        "ServeLatencyP99High",
        "GpuPodPendingTooLong",
        "HpaPinnedAtMax",
    } <= (alerts.keys())
    assert alerts["GpuPodPendingTooLong"]["for"] == "5m"


def test_dashboards_and_rules_are_rendered_for_grafana_and_prometheus(program: Program) -> None:
    index = program("sandbox")
    maps = [
        m
        for m in index.find_manifests("ConfigMap")
        if m["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    assert {next(iter(m["data"])) for m in maps} == {p.name for p in dashboard_files()}
    rules = index.find_manifests("PrometheusRule")
    assert len(rules) == len(rule_files())
    assert all(r["metadata"]["namespace"] == "monitoring" for r in rules + maps)


def test_sidecar_metrics_are_scraped_for_flaggers_builtin_checks(program: Program) -> None:
    """Flagger's request-success-rate/request-duration read Istio's sidecar metrics: without a
    scrape of every sidecar they have no data and every canary would roll back."""
    for stack in ("sandbox", "eks"):
        monitors = [
            m
            for m in program(stack).find_manifests("PodMonitor")
            if m["metadata"]["name"] == "envoy-stats"
        ]
        assert len(monitors) == 1, stack
        spec = monitors[0]["spec"]
        assert spec["namespaceSelector"] == {"any": True}
        # Envoy's own stats port, not the merged 15020 (which would re-export Ray's metrics).
        assert [e["port"] for e in spec["podMetricsEndpoints"]] == ["http-envoy-prom"]
