"""The service spec: one file per service, merged with the stack entry, clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gantry.project import services_dir
from gantry.service import (
    ServiceSpecError,
    deep_merge,
    duration_s,
    load_service,
    load_services,
)
from gantry.stack import ServiceEntry
from tests.conftest import stack_config

SHIPPED = ("embedder", "classifier")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_services_load(name: str) -> None:
    spec = load_service(name, pools=["cpu", "gpu"])
    assert spec.name == name
    assert spec.serve_config_path == services_dir() / name / "serve.yaml"
    # Canary thresholds default to the SLO: one number, one place.
    assert spec.canary.success_rate_min == spec.slo.success_rate_percent
    assert spec.canary.p99_max_ms == spec.slo.p99_latency_ms
    # The pod outlives Serve's graceful shutdown, so scale-down drops no request.
    assert spec.request_timeout_s == spec.serve_config["http_options"]["request_timeout_s"]
    assert spec.termination_grace_s > spec.pre_stop_s + spec.graceful_shutdown_s


def test_every_field_of_the_shipped_files_is_commented() -> None:
    """The files are documentation: every leaf key line carries a comment (its unit/meaning)."""
    for name in SHIPPED:
        lines = (services_dir() / name / "service.yaml").read_text().splitlines()
        for n, line in enumerate(lines, 1):
            stripped = line.strip()
            is_leaf = (
                ":" in stripped and not stripped.endswith(":") and not stripped.startswith("#")
            )
            in_block = stripped.startswith(("path:", "body:", "repository:", "- name:"))
            if is_leaf and not in_block and "#" not in line:
                # Either commented itself, or described by the comment on the line before.
                assert lines[n - 2].strip().startswith("#") or "#" in lines[n - 2], (
                    f"services/{name}/service.yaml:{n}: {stripped!r} has no comment"
                )


def test_embedder_on_gpu_classifier_on_cpu() -> None:
    specs = load_services(stack_config("sandbox"))
    assert specs["embedder"].pool == "gpu" and specs["embedder"].resources.gpus == 1
    assert specs["classifier"].pool == "cpu" and specs["classifier"].resources.gpus == 0


def test_sandbox_helpers_translate_the_engine_neutral_blocks() -> None:
    spec = load_service("embedder")
    cfg = spec.serve_autoscaling_config()
    assert cfg["min_replicas"] == spec.autoscaling.min_replicas
    assert cfg["max_replicas"] == spec.autoscaling.max_replicas
    assert cfg["target_ongoing_requests"] == spec.autoscaling.target_in_flight
    assert cfg["downscale_delay_s"] == spec.autoscaling.scale_down.stabilization_s
    assert spec.canary.interval_s == duration_s(spec.canary.interval) == 25
    assert spec.canary.steps == [10, 20, 30, 40, 50]
    assert (
        spec.replicas_per_pod
        == spec.serve_config["applications"][0]["deployments"][0]["num_replicas"]
    )


def test_stack_overrides_are_deep_merged(services_dir: Callable[..., Path]) -> None:
    root = services_dir("svc")
    entry = ServiceEntry(pool="gpu", overrides={"autoscaling": {"max_replicas": 7}})
    spec = load_service("svc", entry, root)
    assert spec.pool == "gpu"
    assert spec.autoscaling.max_replicas == 7
    # Keys beside the overridden one keep the file's values.
    original = yaml.safe_load((root / "svc" / "service.yaml").read_text())
    assert spec.autoscaling.min_replicas == original["autoscaling"]["min_replicas"]


def test_deep_merge_replaces_lists_and_scalars_and_merges_maps() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "d": 2}) == {"a": {"b": 1, "c": [3]}, "d": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # not mutated


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"canary__stepWeight": 15}, "canary: stepWeight 15 does not divide maxWeight 50"),
        ({"canary__maxWeight": 120}, "canary.maxWeight: Input should be less than or equal to 100"),
        ({"canary__interval": "soon"}, "canary.interval: duration 'soon' is not like 30s"),
        ({"autoscaling__min_replicas": 5}, "autoscaling: min_replicas 5 > max_replicas 3"),
        ({"autoscaling__targt_in_flight": 3}, "autoscaling.targt_in_flight: unknown key (typo?)"),
        ({"resources__cpu_limit": 0.5}, "resources: cpu_limit 0.5 < cpu 1"),
        (
            {"serve__readiness_path": "ready"},
            "serve.readiness_path: path 'ready' must start with /",
        ),
        ({"slo__success_rate_percent": 101}, "slo.success_rate_percent: Input should be less"),
        ({"retries__per_try_timeout_s": 10}, "retries.per_try_timeout_s: 10 s must exceed"),
        ({"retries__retry_on": ["reset", 200]}, "retries.retry_on[1]: status code 200 is not"),
        ({"retries__retry_on": ["resets"]}, "retries.retry_on[0]: 'resets' is neither an HTTP"),
        (
            {"retries__retry_on": ["retriable-status-codes"]},
            "retries.retry_on: retriable-status-codes needs a status code",
        ),
        ({"retries__attempts": -1}, "retries.attempts: Input should be greater than or equal"),
    ],
)
def test_a_bad_file_names_the_file_and_key(
    services_dir: Callable[..., Path], changes: dict[str, object], expected: str
) -> None:
    root = services_dir("svc", **changes)
    with pytest.raises(ServiceSpecError) as err:
        load_service("svc", None, root)
    message = str(err.value)
    assert message.startswith(f"{root / 'svc' / 'service.yaml'}: ")
    assert expected in message
    assert "\n" not in message


def test_a_bad_override_names_the_stack_key(services_dir: Callable[..., Path]) -> None:
    root = services_dir("svc")
    entry = ServiceEntry(overrides={"autoscaling": {"max_replicas": 0}})
    with pytest.raises(ServiceSpecError, match=r"^gantry:services\.svc\.overrides\.autoscaling"):
        load_service("svc", entry, root)


def test_a_bad_retry_override_names_the_stack_key(services_dir: Callable[..., Path]) -> None:
    root = services_dir("svc")
    entry = ServiceEntry(overrides={"retries": {"per_try_timeout_s": 5}})
    with pytest.raises(
        ServiceSpecError,
        match=r"^gantry:services\.svc\.overrides\.retries\.per_try_timeout_s: 5 s must exceed",
    ):
        load_service("svc", entry, root)


def test_retry_timeouts_derive_from_serve_yaml(services_dir: Callable[..., Path]) -> None:
    """Unset, a try outlasts Serve's request timeout by 5 s; the route outlasts every try."""
    for name in SHIPPED:
        spec = load_service(name)
        assert spec.retries.per_try_timeout_s is None
        assert spec.per_try_timeout_s == spec.request_timeout_s + 5
        assert spec.route_timeout_s == 3 * spec.per_try_timeout_s + 1  # 2 retries' back-off
    spec = load_service("svc", None, services_dir("svc", retries={"per_try_timeout_s": 12}))
    assert spec.per_try_timeout_s == 12
    assert spec.retries.retry_on == ["connect-failure", "refused-stream", "reset"]


def test_missing_files_and_unknown_pools_are_named(services_dir: Callable[..., Path]) -> None:
    with pytest.raises(ServiceSpecError, match=r"service 'ghost' has no service\.yaml"):
        load_service("ghost", None, services_dir("svc"))
    root = services_dir("other", pool="tpu")
    with pytest.raises(ServiceSpecError, match=r"other/service.yaml: pool: pool 'tpu' does not"):
        load_service("other", None, root, pools=["cpu", "gpu"])
    (root / "other" / "serve.yaml").unlink()
    with pytest.raises(ServiceSpecError, match=r"the Serve config named by serve\.config"):
        load_service("other", None, root)


def test_a_metric_check_without_a_slo_default_needs_a_threshold(
    services_dir: Callable[..., Path],
) -> None:
    root = services_dir("svc", canary__metrics=[{"name": "serve-latency-p99"}])
    with pytest.raises(ServiceSpecError, match=r"serve-latency-p99\) needs a thresholdRange"):
        load_service("svc", None, root)


def test_team_must_exist_and_may_use_the_pool(services_dir: Callable[..., Path]) -> None:
    cfg = stack_config("sandbox")
    cfg = cfg.model_copy(update={"services": {"svc": ServiceEntry()}})
    with pytest.raises(ServiceSpecError, match=r"svc/service.yaml: team: 'nobody' is not a team"):
        load_services(cfg, services_dir("svc", team="nobody"))
    # ml-research may use the cpu pool only (platform/teams.yaml).
    root = services_dir("svc2", team="ml-research")
    cfg = cfg.model_copy(update={"services": {"svc2": ServiceEntry(pool="gpu")}})
    with pytest.raises(ServiceSpecError, match=r"^gantry:services\.svc2\.pool: team 'ml-research'"):
        load_services(cfg, root)
