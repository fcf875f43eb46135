"""Adding a service is a folder plus one stack entry: no code change in infra/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gantry.pools import pool_facts
from gantry.stack import ServiceEntry
from infra.checks.schedulability import check
from infra.program import build
from infra.render import run_offline
from tests.conftest import stack_config


def test_a_scaffolded_service_is_deployed_and_schedulable(
    services_dir: Callable[..., Path],
) -> None:
    # A third service, copied from the classifier with its own image name, in a throwaway folder.
    root = services_dir("ranker", image__repository="gantry/ranker")
    services_dir("classifier")
    cfg = stack_config("sandbox")
    cfg = cfg.model_copy(
        update={"services": {"classifier": ServiceEntry(), "ranker": ServiceEntry()}}
    )
    index = run_offline(cfg, "scaffold", program=lambda c: build(c, services_dir=root))

    (component,) = [c for c in index.of_type("gantry:serving:ModelService") if c.name == "ranker"]
    kinds = {r.type.split(":")[-1] for r in index.children(component)}
    assert {"Deployment", "HorizontalPodAutoscaler", "Canary", "ServiceMonitor"} <= kinds
    (canary,) = [m for m in index.find_manifests("Canary") if m["metadata"]["name"] == "ranker"]
    assert canary["spec"]["service"]["hosts"][0] == "ranker.gantry.local"
    builds = [r for r in index.of_type("command:local:Command") if r.name == "ranker-image-build"]
    assert "-f services/ranker/Dockerfile" in builds[0].inputs["create"]
    assert "gantry/ranker:" in builds[0].inputs["create"]

    problems = check(index.manifests(), pool_facts(cfg.pools), cfg.platform.time_slicing_replicas)
    assert problems == []
