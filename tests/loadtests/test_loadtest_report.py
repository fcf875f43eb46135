"""The report: summary.json with measured values, the timeline PNG, the one-screen verdict."""

import json
from pathlib import Path

import matplotlib.image as mpimg
from loadtest_timelines import step_run
from rich.console import Console

from loadtests.expectations import evaluate
from loadtests.report import Summary, plot_timeline, render_verdict, write_summary
from loadtests.scenario import Expectations


def _summary(failures: int, aborted: str | None = None) -> Summary:
    exp = Expectations(scale_out_within_s=30, failed_requests=0)
    checks = evaluate(exp, step_run(), failures=failures)
    return Summary(
        scenario="step",
        service="embedder",
        target="http://127.0.0.1:8000/embedder",
        observer="sandbox",
        passed=aborted is None and all(c.passed for c in checks),
        aborted=aborted,
        duration_s=120,
        requests=1000,
        failures=failures,
        checks=checks,
    )


def test_summary_json_has_each_expectation_measured_and_judged(tmp_path: Path) -> None:
    doc = json.loads(write_summary(tmp_path, _summary(failures=2)).read_text())
    assert doc["passed"] is False
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["scale_out_within_s"] == {
        "name": "scale_out_within_s",
        "expected": "<= 30 s",
        "measured": 8.0,
        "passed": True,
        "detail": "1 -> 2 replicas at t=18s (load rose at t=10s)",
    }
    assert (checks["failed_requests"]["measured"], checks["failed_requests"]["passed"]) == (
        2,
        False,
    )


def test_timeline_png_has_five_panels_worth_of_pixels(tmp_path: Path) -> None:
    samples = step_run(phases={30: "Progressing"})
    samples[30] = samples[30].model_copy(update={"weights": {"v1": 90.0, "v2": 10.0}})
    png = plot_timeline(tmp_path / "t.png", samples, "step", slo_p99_ms=2000, rollout_at_s=20)
    img = mpimg.imread(png)
    height, width = img.shape[:2]
    assert (width, height) == (1000, 1100)
    # Not a blank canvas: lines were drawn in several colours.
    assert len({tuple(px) for px in img[::10, ::10].reshape(-1, img.shape[2])}) > 20


def test_png_survives_a_run_without_observer_data(tmp_path: Path) -> None:
    blind = [
        s.model_copy(update={"replicas": None, "weights": None, "nodes": None}) for s in step_run()
    ]
    assert plot_timeline(tmp_path / "t.png", blind, "blind").stat().st_size > 10_000


def test_verdict_fits_one_screen_and_says_what_failed(tmp_path: Path) -> None:
    console = Console(record=True, width=100)
    render_verdict(_summary(failures=2, aborted="target failing: 9/10 failed"), tmp_path, console)
    text = console.export_text()
    assert "FAILED" in text and "run stopped early: target failing" in text
    assert "failed_requests" in text and "FAIL" in text
    assert len(text.splitlines()) <= 24


def test_verdict_passes(tmp_path: Path) -> None:
    console = Console(record=True, width=100)
    render_verdict(_summary(failures=0), tmp_path, console)
    assert "PASSED" in console.export_text()
