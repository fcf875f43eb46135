"""checkov's Kubernetes checks over everything each stack would apply: Gantry's platform and
serving objects (zero failures beyond platform/checkov-skip.yaml) and every Helm release's objects
(only the failures platform/checkov-skip-charts.yaml justifies, and no stale entry there).
checkov runs from its own venv (`make checkov-venv`, part of `make test`); one run covers both
stacks because its start-up dominates."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from infra.checks import CheckovUnavailable, checkov_binary, load_skip_list, run_checkov
from infra.checks.checkov import load_chart_skips, unjustified
from infra.helm.archives import missing_charts

try:
    checkov_binary()
    HAVE_CHECKOV = True
except CheckovUnavailable:
    HAVE_CHECKOV = False
needs_checkov = pytest.mark.skipif(not HAVE_CHECKOV, reason="run `make checkov-venv`")

# A pod checkov must flag (CKV_K8S_16: privileged container): proves failures are reported.
BAD_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "bad", "namespace": "team"},
    "spec": {
        "containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]
    },
}


@pytest.fixture
def checkov_run(rendered: Callable[[str], Path], tmp_path: Path) -> tuple[list[str], Path]:
    """One checkov run over both stacks' objects (Gantry's, and the releases' where the chart
    archives are here), and BAD_POD."""
    bad = tmp_path / "known-bad"
    bad.mkdir()
    (bad / "pod.yaml").write_text(yaml.safe_dump(BAD_POD))
    dirs = []
    for stack in ("sandbox", "eks"):
        # Both layers in one folder: checkov must see the team namespace's NetworkPolicies
        # (platform) beside the pods (serving) to know each pod is covered (CKV2_K8S_6).
        target = tmp_path / stack
        for layer in ("platform", "serving"):
            shutil.copytree(rendered(stack) / layer, target, dirs_exist_ok=True)
        if (rendered(stack) / "releases").is_dir():
            shutil.copytree(rendered(stack) / "releases", target / "releases")
        dirs.append(target)
    return run_checkov(*dirs, bad), bad


def test_skip_list_entries_are_justified(tmp_path: Path) -> None:
    skips = load_skip_list()
    assert all(why for why in skips.values())
    bad = tmp_path / "skip.yaml"
    bad.write_text("CKV_K8S_1: ''\n")
    with pytest.raises(ValueError, match="justification"):
        load_skip_list(bad)


@needs_checkov
def test_rendered_objects_pass_checkov_and_bad_objects_fail(
    checkov_run: tuple[list[str], Path],
) -> None:
    problems, _ = checkov_run
    flagged = [p for p in problems if "pod.yaml" in p]
    assert any(p.startswith("CKV_K8S_16 ") for p in flagged), problems
    skips = {} if missing_charts() else load_chart_skips()
    left, stale = unjustified([p for p in problems if p not in flagged], skips)
    assert left == []
    assert stale == [], "entries of platform/checkov-skip-charts.yaml that no failure needs"


def test_a_chart_failure_is_only_accepted_for_the_releases_listed() -> None:
    skips = {"istio-cni": {"CKV_K8S_16": "why"}}
    cni = "CKV_K8S_16 privileged: DaemonSet.x (/0-sandbox/releases/istio-cni/objects/ds.yaml)"
    other = "CKV_K8S_16 privileged: Deployment.y (/0-sandbox/releases/flagger/objects/d.yaml)"
    own = "CKV_K8S_16 privileged: Deployment.z (/0-sandbox/serving/d.yaml)"
    assert unjustified([cni, other, own], skips) == ([other, own], [])
    assert unjustified([], skips) == ([], ["CKV_K8S_16 istio-cni"])
