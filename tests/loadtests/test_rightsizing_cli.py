"""`gantry capacity`: known answers end to end, the override file, one-line errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from loadtest_timelines import plateau_run
from typer.testing import CliRunner

from gantry.cli import app
from gantry.service import load_services
from gantry.stack import load_config, read_stack_file
from loadtests.timeline import Sample, write_timeline

runner = CliRunner()

# 70 requests/s per replica within the SLO (2 replicas at 140, p99 200 ms), 80 over it.
STEP = plateau_run(
    (30, 1, 1, 10.0, 50.0, 100.0),
    (30, 16, 1, 80.0, 700.0, 900.0),
    (40, 16, 2, 140.0, 100.0, 200.0),
)
POOLS = [
    {"name": "cpu", "kind": "cpu", "instance_type": "m6i.xlarge", "cpu": 3.5, "memory_gib": 13,
     "min_size": 1, "max_size": 6},
    {"name": "gpu", "kind": "gpu", "instance_type": "g5.xlarge", "cpu": 3.5, "memory_gib": 13,
     "gpus_per_node": 1, "min_size": 0, "max_size": 4},
]  # fmt: skip
PRICES = {"on_demand_usd_per_hour": {"m6i.xlarge": 0.192, "g5.xlarge": 1.006}}


def _pinned(replicas_per_pod: int, **resources: Any) -> dict[str, Any]:
    """Overrides fixing every number the sizing reads, whatever service.yaml says."""
    return {
        "serve": {"replicas_per_pod": replicas_per_pod},
        "resources": resources,
        "sidecar": {"cpu": 0.1, "memory_mib": 128},
        "autoscaling": {"min_replicas": 1, "max_replicas": 2, "target_in_flight": 8},
        "slo": {"p99_latency_ms": 250, "success_rate_percent": 99.5},
    }


def _stack(tmp_path: Path, prices: dict[str, Any] | None = PRICES) -> Path:
    config: dict[str, Any] = {
        "gantry:cluster": {"provider": "existing", "name": "prod"},
        "gantry:pools": POOLS,
        # The shipped teams run jobs: their volumes need a ReadWriteMany class (docs/jobs.md).
        "gantry:platform": {"job_storage_class": "nfs"},
        "gantry:services": {
            "classifier": {"overrides": _pinned(1, cpu=1, memory_gib=2)},
            "embedder": {"overrides": _pinned(2, cpu=2, memory_gib=4, gpus=1)},
        },
    }
    if prices is not None:
        config["gantry:prices"] = prices
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    return path


def _report(tmp_path: Path, service: str, observer: str, samples: list[Sample] = STEP) -> Path:
    folder = tmp_path / "step-run"
    folder.mkdir(exist_ok=True)
    summary = {"scenario": "step", "service": service, "observer": observer, "passed": True}
    (folder / "summary.json").write_text(json.dumps(summary))
    write_timeline(folder / "timeline.jsonl", samples)
    return folder


def _capacity(report: Path, stack: Path, *more: str) -> Any:
    args = ["capacity", str(report), "--peak-rps", "500", "--stack", "prod",
            "--stack-file", str(stack), *more]  # fmt: skip
    return runner.invoke(app, args)


def test_classifier_pods_on_a_cluster(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    out = tmp_path / "overrides.yaml"
    res = _capacity(_report(tmp_path, "classifier", "kubernetes (ml-serving/classifier)"), stack,
                    "--out", str(out))  # fmt: skip
    assert res.exit_code == 0, res.output
    # 70 per pod; ceil(500 x 1.2 / 70) = 9 pods, 3 per m6i.xlarge: 3 x 0.192 x 730 USD/month.
    assert "420.48" in res.output and "140.16" in res.output
    assert "lower bound" not in res.output  # the run found the bound (80 per pod)
    written = read_stack_file(out)["services"]["classifier"]["overrides"]
    assert written["autoscaling"] == {
        "min_replicas": 1, "max_replicas": 9, "target_in_flight": 7.0,
    }  # fmt: skip
    assert written["resources"] == {"cpu": 1, "memory_gib": 2}  # the entry's own overrides stay
    assert out.read_text().startswith("# `gantry capacity` for classifier on stack prod")

    raw = read_stack_file(stack)
    raw["services"].update(read_stack_file(out)["services"])
    applied = load_services(load_config(raw))["classifier"]
    assert (applied.autoscaling.max_replicas, applied.autoscaling.target_in_flight) == (9, 7.0)


def test_embedder_gpus_measured_in_the_sandbox(tmp_path: Path) -> None:
    report = _report(tmp_path, "embedder", "sandbox (Ray Serve + Ray nodes)")
    res = _capacity(report, _stack(tmp_path))
    assert res.exit_code == 0, res.output
    # 70 per Serve replica, 140 per pod of 2: 5 pods, 5 GPUs on 5 g5.xlarge (5 x 1.006 x 730).
    assert "3,671.90" in res.output
    assert "raise gantry:pools[1].max_size" in res.output  # the pool holds 4 nodes
    assert "measured in the sandbox, sized for existing nodes" in res.output
    written = read_stack_file(report / "overrides-prod.yaml")["services"]["embedder"]
    assert written["overrides"]["autoscaling"]["max_replicas"] == 5


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no folder", "report folder"),
        ("unknown service", "service 'ranker' (the report's) is not in"),
        (
            "no prices",
            "gantry:prices.on_demand_usd_per_hour has no price for 'm6i.xlarge' (pool cpu)",
        ),
        ("soak", "never rises"),
        ("over the SLO", "no 10 steady seconds within the SLO"),
        ("bad peak", "--peak-rps must be a positive rate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, case: str, message: str) -> None:
    stack = _stack(tmp_path, prices=None if case == "no prices" else PRICES)
    service = "ranker" if case == "unknown service" else "classifier"
    samples = {
        "soak": plateau_run((60, 4, 1, 40.0, 100.0, 200.0)),
        "over the SLO": plateau_run((30, 1, 1, 10.0, 50.0, 900.0), (30, 4, 1, 20.0, 90.0, 900.0)),
    }.get(case, STEP)
    report = _report(tmp_path, service, "kubernetes (ml-serving/x)", samples)
    if case == "no folder":
        report = tmp_path / "gone"
    args = ("--peak-rps", "0") if case == "bad peak" else ()
    res = _capacity(report, stack, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    assert not (report / "overrides-prod.yaml").exists()
