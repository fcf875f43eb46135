"""The existing provider: no cluster resources, a provider from the configured kubeconfig."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

from gantry.errors import ConfigError
from gantry.stack import GantryConfig, load_config, read_stack_file
from infra.cluster import ImageTarget, JobStorage
from infra.cluster.existing import ExistingCluster, ExistingClusterArgs
from infra.render import FAKE_KUBECONFIG, ResourceIndex, run_offline

REPO = Path(__file__).resolve().parents[3]
RunConfig = Callable[[GantryConfig, str], ResourceIndex]


def existing(kubeconfig: Path, **settings: str) -> GantryConfig:
    raw = copy.deepcopy(read_stack_file(REPO / "Pulumi.sandbox.yaml"))
    raw["cluster"] = {
        "provider": "existing",
        "name": "prod",
        "existing": {"kubeconfig": str(kubeconfig), **settings},
    }
    # The sandbox's teams run jobs: an existing cluster names their ReadWriteMany class.
    raw.setdefault("platform", {})["job_storage_class"] = "nfs"
    return load_config(raw)


def test_existing_cluster_registers_only_a_provider(tmp_path: Path, run_config: RunConfig) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(FAKE_KUBECONFIG)
    index = run_config(existing(kubeconfig, context="offline", storage_class="fast"), "existing")
    (component,) = index.of_type("gantry:cluster:ExistingCluster")
    children = index.children(component)
    assert [c.type for c in children] == ["pulumi:providers:kubernetes"]
    assert children[0].inputs["kubeconfig"] == FAKE_KUBECONFIG
    assert children[0].inputs["context"] == "offline"
    assert not index.of_type("command:local:Command") or all(
        index.parent_of(c) is not component for c in index.of_type("command:local:Command")
    )
    assert not [r for r in index if r.type.startswith(("eks:", "aws:"))]


def test_existing_cluster_has_nothing_to_wait_for(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(FAKE_KUBECONFIG)
    built: list[ExistingCluster] = []

    def program(cfg: GantryConfig) -> None:
        built.append(ExistingCluster("prod", ExistingClusterArgs.from_config(cfg)))

    run_offline(existing(kubeconfig), "existing-ready", program=program)
    assert built[0].outputs.ready == []  # the cluster and its nodes are already up
    # Images stay in this machine's Docker daemon, which the cluster shares: no push, no load.
    assert built[0].outputs.images == ImageTarget("local")
    # Job volumes: the stack's class, which provisions them itself.
    assert built[0].outputs.job_storage == JobStorage("nfs")


def test_missing_kubeconfig_is_a_one_line_config_error(
    tmp_path: Path, run_config: RunConfig
) -> None:
    with pytest.raises(ConfigError, match=r"^gantry:cluster.existing.kubeconfig: cannot read .*"):
        run_config(existing(tmp_path / "nope"), "existing")
