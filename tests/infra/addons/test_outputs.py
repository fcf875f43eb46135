"""PlatformOutputs, the serving layer's contract, agrees with what the platform renders."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gantry.project import platform_dir
from gantry.validation import deep_merge
from infra.addons import Platform, PlatformArgs, PlatformOutputs
from infra.addons.charts import CHARTS
from infra.addons.values import addon_values
from infra.render import ResourceIndex, run_offline
from tests.conftest import stack_config

Program = Callable[[str], ResourceIndex]


def capture_outputs(stack: str) -> PlatformOutputs:
    from infra.cluster.factory import create_cluster

    captured: list[PlatformOutputs] = []

    def program(cfg):  # type: ignore[no-untyped-def]
        captured.append(
            Platform("platform", PlatformArgs(create_cluster(cfg), cfg.platform)).outputs
        )

    run_offline(stack_config(stack), stack, program=program)
    return captured[0]


@pytest.fixture(scope="module")
def outputs() -> PlatformOutputs:
    return capture_outputs("sandbox")


def test_gateway_in_outputs_is_rendered(outputs: PlatformOutputs, program: Program) -> None:
    (gateway,) = program("sandbox").find_manifests("Gateway")
    ns, name = outputs.gateway.split("/")
    assert (gateway["metadata"]["namespace"], gateway["metadata"]["name"]) == (ns, name)
    assert f"*.{outputs.domain}" in gateway["spec"]["servers"][0]["hosts"]
    assert outputs.host("embedder") == f"embedder.{outputs.domain}"


def test_teams_in_outputs_match_namespaces(outputs: PlatformOutputs, program: Program) -> None:
    namespaces = {m["metadata"]["name"] for m in program("sandbox").find_manifests("Namespace")}
    assert outputs.teams and set(outputs.teams) <= namespaces
    for team in outputs.teams.values():
        assert "requests.nvidia.com/gpu" in team.quota


def test_outputs_are_plain_and_complete(outputs: PlatformOutputs) -> None:
    assert outputs.prometheus_url.startswith("http://kps-prometheus.monitoring")
    assert outputs.loadtester_url and outputs.flagger_namespace == "flagger-system"
    assert outputs.in_flight_metric and outputs.mesh_scrape["scheme"] == "https"
    assert outputs.priority_classes[0] == "gantry-serving"
    assert outputs.depends_on, "serving must be able to wait for the platform"


def test_every_chart_has_its_values_file() -> None:
    for addon in CHARTS:
        assert (platform_dir() / addon / "values.yaml").exists(), addon


def test_overlays_merge_deeply_and_replace_lists() -> None:
    merged = deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2], "e": 3}})
    assert merged == {"a": {"b": 1, "c": [2], "e": 3}, "d": 1}
    kind = addon_values("kube-prometheus-stack", "kind")
    eks = addon_values("kube-prometheus-stack", "eks")
    spec = lambda v: v["prometheus"]["prometheusSpec"]  # noqa: E731
    assert spec(kind)["retention"] != spec(eks)["retention"]
    # The base's discovery settings survive both overlays.
    assert spec(kind)["podMonitorSelectorNilUsesHelmValues"] is False
    assert spec(eks)["podMonitorSelectorNilUsesHelmValues"] is False
