"""checkov over the serving layer's rendered objects (both stacks, one run), with the shared
justified skip list (platform/checkov-skip.yaml)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.checks import CheckovUnavailable, checkov_binary, run_checkov

try:
    checkov_binary()
    HAVE_CHECKOV = True
except CheckovUnavailable:
    HAVE_CHECKOV = False


@pytest.mark.skipif(not HAVE_CHECKOV, reason="run `make checkov-venv`")
def test_rendered_services_pass_checkov(rendered: Callable[[str], Path], tmp_path: Path) -> None:
    dirs = []
    for stack in ("sandbox", "eks"):
        # The team namespace's NetworkPolicies are platform objects; checkov needs them beside
        # the pods to see that each pod is covered (CKV2_K8S_6).
        target = tmp_path / stack
        shutil.copytree(rendered(stack) / "serving", target)
        for policy in (rendered(stack) / "platform").glob("networkpolicy-*.yaml"):
            shutil.copy(policy, target)
        dirs.append(target)
    assert run_checkov(*dirs) == []
