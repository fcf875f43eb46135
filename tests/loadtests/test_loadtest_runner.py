"""The runner end to end against a stand-in target: Locust in its own process, the report
files, and a clear verdict (never a hang) when the target is dead, starts failing or hangs."""

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_target import FakeTarget

from loadtests.observers import NullObserver
from loadtests.runner import Target, TargetError, run
from loadtests.scenario import Scenario, parse_scenario


def scenario(**extra: object) -> Scenario:
    raw = {
        "name": "t",
        "service": "embedder",
        "target": "http://127.0.0.1:1",
        "shape": {
            "type": "step",
            "start_users": 1,
            "step_users": 3,
            "step_at_s": 2,
            "duration_s": 6,
        },
        "expectations": {"failed_requests": 0},
        **extra,
    }
    return parse_scenario(raw)


@pytest.fixture
def target() -> Iterator[FakeTarget]:
    t = FakeTarget()
    yield t
    t.close()


def test_a_healthy_run_writes_the_whole_report(tmp_path: Path, target: FakeTarget) -> None:
    summary = run(scenario(), Target(host=target.url, observer=NullObserver("test")), tmp_path)
    assert summary.passed, summary
    assert summary.aborted is None
    assert summary.failures == 0 and summary.requests > 20
    assert target.requests >= summary.requests  # every counted request reached the target
    for name in (
        "locust.html",
        "locust_stats.csv",
        "summary.json",
        "timeline.png",
        "timeline.jsonl",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = [json.loads(x) for x in (tmp_path / "timeline.jsonl").read_text().splitlines()]
    users = [r["users"] for r in rows if r["users"] is not None]
    assert users[0] == 1 and max(users) == 3  # the step happened
    assert any(r["p95_ms"] for r in rows)
    assert json.loads((tmp_path / "summary.json").read_text())["checks"][0]["passed"] is True


def test_a_dead_target_ends_before_any_load(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="not answering"):
        run(scenario(), Target(host="http://127.0.0.1:9", observer=NullObserver("test")), tmp_path)
    assert not (tmp_path / "run.json").exists()


def test_a_target_failing_mid_run_stops_the_run_with_a_verdict(tmp_path: Path) -> None:
    fake = FakeTarget(mode="fail_after", after_s=3)
    try:
        scn = scenario(shape={"type": "soak", "users": 2, "duration_s": 60},
                       abort={"window_s": 3, "fail_ratio": 0.5})  # fmt: skip
        summary = run(scn, Target(host=fake.url, observer=NullObserver("test")), tmp_path)
    finally:
        fake.close()
    # Stopped well before the 60 s the shape asked for (counted from the first user).
    assert summary.duration_s < 40, summary
    assert not summary.passed
    assert summary.aborted is not None and summary.aborted.startswith("target failing")
    assert summary.failures > 0
    assert summary.checks[0].passed is False


def test_a_target_that_hangs_mid_run_stops_the_run(tmp_path: Path) -> None:
    fake = FakeTarget(mode="hang_after", after_s=3)
    try:
        scn = scenario(shape={"type": "soak", "users": 2, "duration_s": 60}, abort={"stall_s": 4})
        summary = run(scn, Target(host=fake.url, observer=NullObserver("test")), tmp_path)
    finally:
        fake.close()
    assert summary.duration_s < 40, summary
    assert summary.aborted is not None and "not answering" in summary.aborted


def test_the_locust_process_imports_neither_ray_nor_httpx(tmp_path: Path) -> None:
    """gevent must patch before anything imports ssl-using clients: the Locust process may load
    only what locustfile.py imports, and none of that may pull ray or httpx in."""
    import subprocess
    import sys

    spec = tmp_path / "run.json"
    scn = scenario()
    spec.write_text(
        json.dumps({"scenario": scn.model_dump(), "host": "http://127.0.0.1:9", "out_dir": "."})
    )
    code = (
        "import sys, runpy; runpy.run_path('loadtests/locustfile.py'); "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'httpx', 'kubernetes'}); "
        "print('BAD', bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        env={"GANTRY_LOADTEST_RUN": str(spec), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert res.returncode == 0, res.stdout + res.stderr


def _fault_cmd(url: str, exit_code: int = 0) -> list[str]:
    """Stands in for `gantry sandbox fault`: PUTs /fault to the fake target, prints what it hit
    as `gantry sandbox fault` does (the kind and target arrive as its arguments)."""
    code = (
        "import json, sys, urllib.request as u; "
        f"u.urlopen(u.Request('{url}/fault', method='PUT')); "
        "print(json.dumps({'hit': sys.argv[1:]})); "
        f"sys.exit({exit_code})"
    )
    return [sys.executable, "-c", code]


def test_a_fault_is_injected_on_time_and_marked_in_the_report(
    tmp_path: Path, target: FakeTarget
) -> None:
    scn = scenario(
        shape={"type": "soak", "users": 2, "duration_s": 6},
        fault={"at_s": 2, "kind": "replica-kill"},
        expectations={"failed_requests": 0, "clean_failures": True, "max_latency_ms": 5000},
    )
    fake = Target(host=target.url, observer=NullObserver("test"), fault_cmd=_fault_cmd(target.url))
    summary = run(scn, fake, tmp_path)
    assert summary.fault_at_s is not None and 2 <= summary.fault_at_s < 3.5
    assert summary.fault == {"hit": ["replica-kill", "embedder"]}  # the scenario's service
    checks = {c.name: c for c in summary.checks}
    # The fake answered 503s with a JSON error for a second: failed, but cleanly and quickly.
    assert summary.failures > 0 and not checks["failed_requests"].passed
    assert checks["clean_failures"].passed and checks["max_latency_ms"].passed
    assert json.loads((tmp_path / "fault.json").read_text())["at_s"] == summary.fault_at_s
    assert (tmp_path / "timeline.png").stat().st_size > 10_000


def test_a_fault_that_cannot_be_injected_fails_the_run(tmp_path: Path, target: FakeTarget) -> None:
    scn = scenario(
        shape={"type": "soak", "users": 1, "duration_s": 30},
        fault={"at_s": 1, "kind": "node-loss", "target": "gpu"},
    )
    broken = _fault_cmd(target.url, exit_code=2)
    summary = run(scn, Target(target.url, NullObserver("test"), fault_cmd=broken), tmp_path)
    assert not summary.passed and summary.duration_s < 20
    assert summary.aborted is not None and summary.aborted.startswith("the node-loss fault failed")
    no_cmd = run(scn, Target(target.url, NullObserver("test")), tmp_path / "k8s")
    assert no_cmd.aborted == "the target cannot inject a node-loss fault (the sandbox can)"


def _job_cmd(state_dir: Path) -> list[str]:
    """Stands in for `gantry job run --detach`: writes the sandbox queue's record of a job that
    was preempted once and resumed (as the controller would), and its result file."""
    code = f"""
import json, sys, time
from pathlib import Path
from gantry.sandbox_state import JobEvent, JobQueueFile, JobRecord
name, now = sys.argv[1], time.time()
run_dir = Path({str(state_dir)!r}) / name
run_dir.mkdir(parents=True)
(run_dir / "result.json").write_text(json.dumps({{"resumed_from": 3}}))
steps = [("queued", ""), ("running", ""), ("queued", "preempted for other (reclaimed)"),
         ("running", "attempt 2"), ("succeeded", "")]
rec = JobRecord(name=name, team="t", pool="cpu", priority="gantry-batch", priority_value=1,
                requests={{}}, run=1, run_dir=str(run_dir), queued_at=now, max_run_s=60,
                submit={{}}, state="succeeded", attempts=2, finished_at=now + 1.0,
                events=[JobEvent(t=now + i * 0.2, state=s, reason=r)
                        for i, (s, r) in enumerate(steps)])
(Path({str(state_dir)!r}) / "jobs").mkdir(exist_ok=True)
(Path({str(state_dir)!r}) / "jobs" / "queue.json").write_text(
    JobQueueFile(jobs={{name: rec}}).model_dump_json())
print("queued", sys.argv[1:])
"""
    return [sys.executable, "-c", code]


def test_a_job_is_queued_on_time_and_its_outcome_checked(
    tmp_path: Path, target: FakeTarget
) -> None:
    scn = scenario(
        shape={"type": "soak", "users": 1, "duration_s": 5},
        jobs=[{"at_s": 1, "name": "train", "set": {"epochs": 2}}],
        expectations={"jobs": {"train": {"min_preemptions": 1, "resumed": True}}},
    )
    state = tmp_path / "state"
    fake = Target(target.url, NullObserver("test"), job_cmd=_job_cmd(state), state_dir=state)
    summary = run(scn, fake, tmp_path / "out")
    (check,) = summary.checks
    assert check.passed, check
    assert check.measured == "succeeded, preempted 1x, resumed from 3"
    assert (tmp_path / "out" / "timeline.png").stat().st_size > 10_000
    # A job that never got queued fails its check, saying so.
    missing = run(scn, Target(target.url, NullObserver("test")), tmp_path / "none")
    assert missing.aborted == "the target cannot run job train (the sandbox can)"
    assert not missing.passed
