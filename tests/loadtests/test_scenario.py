"""Scenario files: every shipped one loads; a wrong one names the file and the key."""

from pathlib import Path

import pytest

from loadtests.scenario import SCENARIO_DIR, ScenarioError, is_loopback, load_scenario

SHIPPED = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_load_and_are_bounded(name: str) -> None:
    s = load_scenario(name)
    assert s.name == name
    assert 0 < s.planned_s <= 3600
    assert s.shape.max_users <= 256


def test_the_issue_scenarios_exist() -> None:
    assert {"smoke", "step", "rollout", "canary-fault"} <= set(SHIPPED)
    chaos = {"replica-kill", "node-loss", "prometheus-down", "overload"}
    assert chaos <= set(SHIPPED)
    # Each fault scenario injects its own kind of fault.
    assert {load_scenario(n).fault.kind for n in chaos - {"overload"}} == chaos - {"overload"}
    # Issue 16: a service scales out beside a training job that is preempted and resumes.
    jobs = load_scenario("jobs-share-pools")
    assert [j.name for j in jobs.jobs] == ["digits", "embeddings"]
    assert jobs.expectations.jobs["digits"].resumed


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


BASE = "name: x\nservice: embedder\nshape: {type: soak, users: 2, duration_s: 10}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "expectations: {scale_out_within: 30}\n",
         "bad.yaml:expectations.scale_out_within: unknown key (typo?)"),
        (BASE.replace("service: embedder", "service: embeder"), "bad.yaml:service:"),
        ("name: x\nservice: embedder\nshape: {type: step, duration_s: 10}\n",
         "bad.yaml:shape.step.step_users: required key is missing"),
        ("name: x\nservice: embedder\nshape: {type: wave, duration_s: 10}\n", "bad.yaml:shape:"),
        (BASE + "rollout: {at_s: 5, to: v2}\nexpectations: {rollout: promotedd}\n",
         "bad.yaml:expectations.rollout:"),
        (BASE + "expectations: {recover_within_s: 10}\n",
         "bad.yaml:expectations.recover_within_s: recover_within_s needs p99_within_slo"),
        (BASE + "target: http://10.0.0.5:8000\n", "bad.yaml:target: 'http://10.0.0.5:8000' is not"),
        (BASE + "fault: {at_s: 5, kind: disk-full}\n", "bad.yaml:fault.kind:"),
        (BASE + "fault: {at_s: 5, kind: node-loss}\n",
         "bad.yaml:fault: a node-loss fault needs `target: <pool>`"),
        (BASE + "fault: {at_s: 10, kind: replica-kill}\n",
         "bad.yaml: fault.at_s 10 must be before shape.duration_s"),
        (BASE + "expectations: {replaced_within_s: 10}\n",
         "bad.yaml: expectations.replaced_within_s and recover_after: fault need a fault"),
        (BASE + "expectations: {jobs: {train: {state: succeeded}}}\n",
         "bad.yaml: expectations.jobs.train: no `jobs:` step queues 'train'"),
        (BASE + "jobs: [{at_s: 1, name: a}, {at_s: 2, name: a}]\n",
         "bad.yaml: jobs[1]: 'a' is queued twice (one run at a time)"),
        ("name: [unclosed\n", "bad.yaml: not valid YAML"),
        ("- a list\n", "bad.yaml: a scenario must be a mapping"),
    ],
)  # fmt: skip
def test_a_bad_scenario_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario(_write(tmp_path, text))
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_an_unknown_scenario_lists_the_known_ones() -> None:
    with pytest.raises(ScenarioError, match=r"no scenario 'nope'; known: .*smoke"):
        load_scenario("nope")


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost:1", True),
        ("http://[::1]:80/x", True),
        ("http://10.1.2.3", False),
        ("https://example.com", False),
        ("not a url", False),
    ],
)
def test_loopback(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback
