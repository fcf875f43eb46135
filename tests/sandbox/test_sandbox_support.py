"""Ports, state paths, Prometheus config and canary checks: the sandbox's small parts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from sandbox import ports, prometheus
from sandbox.analysis import CheckResult, queries
from sandbox.state import Paths


def test_allocate_gives_distinct_free_ports_and_rejects_a_taken_one() -> None:
    got = ports.allocate({"a": 0, "b": 0, "c": 0})
    assert len(set(got.values())) == 3
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        with pytest.raises(ports.PortInUse, match=f"port {taken} \\(serve\\)"):
            ports.allocate({"serve": taken})


def test_long_state_dir_gets_a_short_ray_temp_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 60) / "sandbox"
    deep.mkdir(parents=True)
    temp = Paths(deep).ray_temp_dir()
    assert len(str(temp)) <= 45
    assert (deep / "ray").resolve() == temp.resolve()
    assert Paths(deep).ray_temp_dir() == temp  # stable across calls


def test_prometheus_scrapes_only_rays_discovery_file(tmp_path: Path) -> None:
    cfg = prometheus.config(tmp_path / prometheus.DISCOVERY_FILE, 2, [])
    jobs = cfg["scrape_configs"]
    assert len(jobs) == 1 and "static_configs" not in jobs[0]
    (sd,) = jobs[0]["file_sd_configs"]
    assert sd["files"] == [str(tmp_path / prometheus.DISCOVERY_FILE)]
    assert sd["refresh_interval"] == "2s"  # not Prometheus' default 5m, should an event be lost


def test_prometheus_watches_the_folder_ray_really_writes_the_discovery_file_in(
    tmp_path: Path,
) -> None:
    """Ray 2.60 renames the file into its session dir and leaves a symlink in the temp dir:
    watching the symlink's folder sees no change, so new nodes went unscraped for minutes."""
    session = tmp_path / "ray" / "session_2026-11-30_13-00-00_000000_1"
    session.mkdir(parents=True)
    (tmp_path / "ray" / "session_latest").symlink_to(session.name)
    (tmp_path / "ray" / prometheus.DISCOVERY_FILE).symlink_to(session / prometheus.DISCOVERY_FILE)
    assert prometheus.discovery_file(tmp_path / "ray") == session / prometheus.DISCOVERY_FILE
    assert "--web.listen-address=127.0.0.1:9999" in prometheus.argv("p", Path("c"), Path("d"), 9999)


def test_only_rules_over_ray_metrics_are_loaded(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    rule_file = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "spec": {
            "groups": [
                {
                    "name": "g",
                    "rules": [
                        {
                            "alert": "A",
                            "expr": 'sum(rate(ray_gantry_requests_total{x="y"}[5m])) > 1',
                        },
                        {"alert": "B", "expr": "kube_pod_status_ready == 0"},
                    ],
                }
            ]
        },
    }
    (rules_dir / "r.yaml").write_text(yaml.safe_dump(rule_file))
    groups = prometheus.sandbox_rules(rules_dir)["groups"]
    assert [r["alert"] for r in groups[0]["rules"]] == ["A"]


def test_the_shipped_serving_alerts_load_in_the_sandbox() -> None:
    alerts = {r["alert"] for g in prometheus.sandbox_rules()["groups"] for r in g["rules"]}
    assert {"ServeErrorRateHigh", "ServeLatencyP99High"} <= alerts


def test_canary_queries_select_the_version() -> None:
    q = queries("embedder", "v2", 30)
    assert 'version="v2"' in q["request-success-rate"] and "[30s]" in q["request-success-rate"]
    assert 'application="embedder-v2"' in q["serve-error-rate"]
    assert "or vector(0)" in q["serve-error-rate"]  # no error series yet is 0 %, not no data


@pytest.mark.parametrize(
    ("value", "lo", "hi", "passed"),
    [
        (None, 99, None, False),
        (99.5, 99, None, True),
        (98, 99, None, False),
        (900, None, 750, False),
    ],
)
def test_no_data_fails_a_check(
    value: float | None, lo: float | None, hi: float | None, passed: bool
) -> None:
    assert CheckResult("m", value, lo, hi).passed is passed
