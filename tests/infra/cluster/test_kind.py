"""The kind provider: the generated kind config (a pure function) and the registered resources."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry import project
from gantry.pools import FAKE_GPU_POOL_LABEL, POOL_LABEL
from gantry.stack import SUPPORTED_K8S_VERSIONS, GantryConfig, load_config, read_stack_file
from gantry.teams import TeamsFile
from infra.cluster.kind import (
    JOB_STORAGE_NODE_PATH,
    KIND_NODE_IMAGES,
    KindClusterArgs,
    create_command,
    delete_command,
    kind_config,
)
from infra.render import ResourceIndex

REPO = Path(__file__).resolve().parents[3]


def sandbox(**cluster: Any) -> GantryConfig:
    raw = copy.deepcopy(read_stack_file(REPO / "Pulumi.sandbox.yaml"))
    raw["cluster"].update(cluster)
    return load_config(raw)


def workers(config: dict[str, Any], pool: str) -> list[dict[str, Any]]:
    return [n for n in config["nodes"] if n.get("labels", {}).get(POOL_LABEL) == pool]


def join_taints(node: dict[str, Any]) -> list[dict[str, str]]:
    patches = [yaml.safe_load(p) for p in node.get("kubeadmConfigPatches", [])]
    joins = [p for p in patches if p["kind"] == "JoinConfiguration"]
    return [t for j in joins for t in j["nodeRegistration"].get("taints", [])]


def test_one_control_plane_then_desired_workers_per_pool() -> None:
    raw = read_stack_file(REPO / "Pulumi.sandbox.yaml")
    raw["pools"][0]["desired_size"] = 2
    raw["pools"][1]["desired_size"] = 1
    config = kind_config(KindClusterArgs.from_config(load_config(raw)))
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and config["kind"] == "Cluster"
    assert config["name"] == "gantry-sandbox"
    roles = [n["role"] for n in config["nodes"]]
    assert roles == ["control-plane", "worker", "worker", "worker"]
    assert len(workers(config, "cpu")) == 2 and len(workers(config, "gpu")) == 1


def test_gpu_workers_are_tainted_and_labelled_for_the_fake_gpu_operator() -> None:
    config = kind_config(KindClusterArgs.from_config(sandbox()))
    gpus = workers(config, "gpu")
    assert gpus
    for gpu in gpus:
        assert gpu["labels"][FAKE_GPU_POOL_LABEL] == "gpu"
        assert gpu["labels"]["gantry.dev/pool-kind"] == "gpu"
        assert join_taints(gpu) == [
            {"key": "nvidia.com/gpu", "effect": "NoSchedule", "value": "present"}
        ]


def test_cpu_workers_have_no_taints_and_no_fake_gpu_label() -> None:
    config = kind_config(KindClusterArgs.from_config(sandbox()))
    cpus = workers(config, "cpu")
    assert cpus
    for cpu in cpus:
        assert join_taints(cpu) == []
        assert FAKE_GPU_POOL_LABEL not in cpu["labels"]


def test_pool_with_zero_desired_nodes_gets_no_worker() -> None:
    raw = read_stack_file(REPO / "Pulumi.sandbox.yaml")
    raw["pools"][1]["desired_size"] = 0
    config = kind_config(KindClusterArgs.from_config(load_config(raw)))
    assert workers(config, "gpu") == []


def test_node_image_follows_kubernetes_version_unless_pinned() -> None:
    config = kind_config(KindClusterArgs.from_config(sandbox(kubernetes_version="1.34")))
    assert {n["image"] for n in config["nodes"]} == {KIND_NODE_IMAGES["1.34"]}
    assert KIND_NODE_IMAGES["1.34"].startswith("kindest/node:v1.34.")
    pinned = sandbox(kind={"node_image": "kindest/node:v1.33.4"})
    assert {n["image"] for n in kind_config(KindClusterArgs.from_config(pinned))["nodes"]} == {
        "kindest/node:v1.33.4"
    }


def test_kind_config_is_pure() -> None:
    args = KindClusterArgs.from_config(sandbox())
    assert kind_config(args) == kind_config(args)
    assert kind_config(args) is not kind_config(args)


def test_every_worker_mounts_the_one_job_storage_folder() -> None:
    cfg = sandbox()
    args = KindClusterArgs.from_config(cfg)
    host = project.root() / ".gantry" / "kind" / "gantry-sandbox" / "job-storage"
    assert args.job_storage_host == str(host) and host.is_absolute()
    config = kind_config(args)
    control_plane, *nodes = config["nodes"]
    assert "extraMounts" not in control_plane  # tainted: no job pod runs there
    assert nodes and all(n["role"] == "worker" for n in nodes)
    for node in nodes:
        # The same folder on every node: a job's pods share files whatever node they are on.
        assert node["extraMounts"] == [
            {"hostPath": str(host), "containerPath": JOB_STORAGE_NODE_PATH}
        ]
    # One folder for every team: adding a team does not change the config (or replace the
    # cluster).
    no_teams = cfg.model_copy(
        update={"platform": cfg.platform.model_copy(update={"teams": TeamsFile(teams=[])})}
    )
    assert kind_config(KindClusterArgs.from_config(no_teams)) == config


def test_every_supported_kubernetes_version_has_a_pinned_node_image() -> None:
    assert set(KIND_NODE_IMAGES) == set(SUPPORTED_K8S_VERSIONS)
    for version, image in KIND_NODE_IMAGES.items():
        # kind wants the digest: a tag alone may name an image built for another kind release.
        assert re.fullmatch(
            rf"kindest/node:v{re.escape(version)}\.\d+@sha256:[0-9a-f]{{64}}", image
        )


def test_commands_create_from_stdin_print_kubeconfig_and_delete() -> None:
    args = KindClusterArgs.from_config(sandbox(kind={"kubeconfig": "/tmp/my kube"}))
    create = create_command(args)
    assert "kind create cluster --name gantry-sandbox --config - " in create
    assert "--kubeconfig '/tmp/my kube' 1>&2 && kind get kubeconfig --name gantry-sandbox" in create
    assert (
        delete_command(args)
        == "kind delete cluster --name gantry-sandbox --kubeconfig '/tmp/my kube'"
    )


# A stand-in for kind: keeps the clusters it "created" in $FAKE_KIND_STATE (one name a line),
# logs every call to $FAKE_KIND_LOG, and prints chatter on stdout, which the create command must
# keep out of its own stdout (the kubeconfig). FAKE_KIND_FAIL=create|kubeconfig makes a step fail
# after the node containers exist, as an interrupted or half-failed create leaves them.
FAKE_KIND = r"""#!/bin/sh
echo "$*" >> "$FAKE_KIND_LOG"
name=$(echo "$*" | sed -n 's/.*--name \([^ ]*\).*/\1/p')
touch "$FAKE_KIND_STATE"
case "$1 $2" in
  "get clusters") cat "$FAKE_KIND_STATE" ;;
  "delete cluster")
    echo "Deleting cluster $name ..."
    grep -vxF "$name" "$FAKE_KIND_STATE" > "$FAKE_KIND_STATE.new"
    mv "$FAKE_KIND_STATE.new" "$FAKE_KIND_STATE" ;;
  "create cluster")
    if [ -z "$(find "$FAKE_KIND_JOBS" -maxdepth 0 -type d -perm 1777 2>/dev/null)" ]; then
      echo "ERROR: job storage folder $FAKE_KIND_JOBS missing or not mode 1777" >&2; exit 1
    fi
    if grep -qxF "$name" "$FAKE_KIND_STATE"; then
      echo "ERROR: node(s) already exist for a cluster with the name \"$name\"" >&2; exit 1
    fi
    cat > "$FAKE_KIND_STDIN"
    echo "Creating cluster $name ..."
    echo "$name" >> "$FAKE_KIND_STATE"
    [ "$FAKE_KIND_FAIL" = create ] && { echo "ERROR: failed to create cluster" >&2; exit 1; }
    exit 0 ;;
  "get kubeconfig")
    [ "$FAKE_KIND_FAIL" = kubeconfig ] && { echo "ERROR: no kubeconfig" >&2; exit 1; }
    grep -qxF "$name" "$FAKE_KIND_STATE" || exit 1
    printf 'apiVersion: v1\nkind: Config\ncurrent-context: kind-%s\n' "$name" ;;
esac
"""


@pytest.fixture
def fake_kind(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run(existing=[...], fail=None)`: run the create command under /bin/sh (as pulumi-command
    does) with the fake kind first on PATH; `.state`/`.log`/`.stdin` are the fake's files, `.jobs`
    the job storage host folder (which the fake's create wants there, mode 1777)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kind").write_text(FAKE_KIND)
    (bin_dir / "kind").chmod(0o755)
    files = {k: tmp_path / k for k in ("state", "log", "stdin")}
    files["jobs"] = tmp_path / "gantry state" / "kind" / "job-storage"

    def run(
        existing: tuple[str, ...] = (), fail: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        files["state"].write_text("".join(f"{c}\n" for c in existing))
        files["log"].write_text("")
        args = dataclasses.replace(
            KindClusterArgs.from_config(sandbox()), job_storage_host=str(files["jobs"])
        )
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_KIND_STATE": str(files["state"]),
            "FAKE_KIND_LOG": str(files["log"]),
            "FAKE_KIND_STDIN": str(files["stdin"]),
            "FAKE_KIND_JOBS": str(files["jobs"]),
            "FAKE_KIND_FAIL": fail or "",
        }
        return subprocess.run(
            ["/bin/sh", "-c", create_command(args)],
            input="kind: Cluster\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    run.files = files  # type: ignore[attr-defined]
    return run


def clusters(fake_kind: Any) -> list[str]:
    return fake_kind.files["state"].read_text().split()


def calls(fake_kind: Any) -> list[str]:
    return [line.split(" --")[0] for line in fake_kind.files["log"].read_text().splitlines()]


def test_create_prints_only_the_kubeconfig_and_feeds_kind_the_config(fake_kind: Any) -> None:
    done = fake_kind()
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout) == {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "kind-gantry-sandbox",
    }
    assert fake_kind.files["stdin"].read_text() == "kind: Cluster\n"
    assert clusters(fake_kind) == ["gantry-sandbox"]
    assert "delete cluster" not in calls(fake_kind)


def test_create_deletes_a_leftover_cluster_of_the_same_name_first(fake_kind: Any) -> None:
    # Nodes left by an interrupted create: Pulumi has no record, `kind create` would refuse.
    done = fake_kind(existing=("other", "gantry-sandbox"))
    assert done.returncode == 0, done.stderr
    assert calls(fake_kind) == [
        "get clusters",
        "delete cluster",
        "create cluster",
        "get kubeconfig",
    ]
    assert "exists but Pulumi has no record of it" in done.stderr
    assert yaml.safe_load(done.stdout)["kind"] == "Config"
    assert sorted(clusters(fake_kind)) == ["gantry-sandbox", "other"]


def test_create_makes_the_job_storage_folder_writable_by_all_first(fake_kind: Any) -> None:
    jobs: Path = fake_kind.files["jobs"]
    done = fake_kind()  # the fake's create fails unless the folder is there, mode 1777
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(jobs.stat().st_mode) == 0o1777  # the pods' non-root UID writes there
    # A folder left by an earlier cluster (files kept) is opened up again, not recreated.
    (jobs / "digits").mkdir()
    jobs.chmod(0o755)
    done = fake_kind()
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(jobs.stat().st_mode) == 0o1777 and (jobs / "digits").is_dir()


@pytest.mark.parametrize("fail", ["create", "kubeconfig"])
def test_a_failed_create_leaves_no_nodes_behind(fake_kind: Any, fail: str) -> None:
    done = fake_kind(existing=("other",), fail=fail)
    assert done.returncode != 0
    assert calls(fake_kind)[-1] == "delete cluster"
    assert clusters(fake_kind) == ["other"]  # someone else's cluster is left alone
    assert "kind: Config" not in done.stdout
    # ... so the next `up` starts clean.
    again = fake_kind(existing=tuple(clusters(fake_kind)))
    assert again.returncode == 0, again.stderr
    assert "delete cluster" not in calls(fake_kind)


def test_program_runs_kind_through_a_command_and_feeds_a_provider(
    program: Callable[[str], ResourceIndex],
) -> None:
    index = program("sandbox")
    (component,) = index.of_type("gantry:cluster:KindCluster")
    assert component.layer == "cluster"
    (cmd,) = [r for r in index.children(component) if r.type == "command:local:Command"]
    assert yaml.safe_load(cmd.inputs["stdin"]) == kind_config(
        KindClusterArgs.from_config(sandbox())
    )
    assert cmd.inputs["create"] == create_command(KindClusterArgs.from_config(sandbox()))
    assert cmd.inputs["delete"].startswith("kind delete cluster")
    assert cmd.inputs["logging"] == "stderr"  # the kubeconfig on stdout stays out of the logs
    (provider,) = [r for r in index.children(component) if r.type == "pulumi:providers:kubernetes"]
    assert "kind: Config" in provider.inputs["kubeconfig"]
    assert cmd.urn in provider.depends_on
