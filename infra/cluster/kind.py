"""kind provider: a local Kubernetes-in-Docker cluster whose worker nodes mirror the stack's pools.

`kind_config()` is a pure function from the pools to kind's cluster config (tested on its own);
`KindCluster` runs `kind create cluster` / `kind delete cluster` through pulumi_command and feeds
the kubeconfig kind prints to a Kubernetes provider.

Job storage (docs/jobs.md): local-path volumes live on one node, but a job's head and workers
share files across nodes. Every worker binds the same host folder
(`.gantry/kind/<cluster>/job-storage`) at `JOB_STORAGE_NODE_PATH`, so a hostPath there is one
folder on every node: the platform layer puts static ReadWriteMany volumes on it.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pulumi_command import local

from gantry import project
from gantry.pools import FAKE_GPU_POOL_LABEL, Pool, pool_facts, scheduling
from gantry.stack import GantryConfig
from infra.cluster import ClusterOutputs, ImageTarget, JobStorage

# The kind release Gantry pins, and a node image per Kubernetes version, by digest as the release
# notes publish them (kind guarantees an image only with the release it was built for).
KIND_VERSION = "v0.33.0"
KIND_NODE_IMAGES = {
    # kind v0.33.0 publishes no image older than 1.34: this is kind v0.29.0's, which newer
    # kind runs on a best-effort basis (it still bootstraps it with kubeadm v1beta3).
    "1.33": "kindest/node:v1.33.1@sha256:"
    "050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f",
    # kind v0.33.0's release notes ("Images pre-built for this release").
    "1.34": "kindest/node:v1.34.11@sha256:"
    "44e222ee2132dab25ff87301682f89eb82c7880ea3a1bf543bfe9708fd08d67d",
    "1.35": "kindest/node:v1.35.8@sha256:"
    "07b2536e30b803ed61d1677a79df6115f798ce64c80f9e22f6ed45afd09323c0",
    "1.36": "kindest/node:v1.36.4@sha256:"
    "099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed",
    # kind v0.33.0 also has v1.37.0 (sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89
    # adff580ae5): add it here when gantry/stack.py accepts 1.37 (not on EKS yet).
}
# kind's default StorageClass (rancher local-path provisioner).
KIND_STORAGE_CLASS = "standard"
# How long `kind create cluster` waits for the control plane to be Ready.
CREATE_WAIT = "5m"
# Job storage: where every worker sees the one shared host folder, and the StorageClass of the
# static volumes on it (no provisioner: the platform layer creates them).
JOB_STORAGE_NODE_PATH = "/var/gantry-jobs"
JOB_STORAGE_CLASS = "gantry-job-storage"
# The host folder's mode, set before the nodes start: the job pods run as a non-root UID, and a
# folder Docker or the kubelet created would be root's, 0755. Sticky like /tmp.
JOB_STORAGE_HOST_MODE = "1777"


@dataclass(frozen=True)
class KindClusterArgs:
    name: str
    kubernetes_version: str
    pools: tuple[Pool, ...]
    # Absolute host folder every worker shares for job storage (one per cluster, not per team:
    # adding a team must not change the config, which would replace the cluster).
    job_storage_host: str
    node_image: str | None = None  # None: KIND_NODE_IMAGES[kubernetes_version]
    kubeconfig: str | None = None  # None: kind's default (~/.kube/config, context kind-<name>)

    @classmethod
    def from_config(cls, cfg: GantryConfig) -> KindClusterArgs:
        name = cfg.cluster.name
        return cls(
            name=name,
            kubernetes_version=cfg.cluster.kubernetes_version,
            pools=tuple(cfg.pools),
            job_storage_host=str(project.state_dir() / "kind" / name / "job-storage"),
            node_image=cfg.cluster.kind.node_image,
            kubeconfig=cfg.cluster.kind.kubeconfig,
        )

    @property
    def image(self) -> str:
        return self.node_image or KIND_NODE_IMAGES[self.kubernetes_version]


def job_storage_mount(args: KindClusterArgs) -> dict[str, str]:
    """The shared job storage folder as a worker's `extraMounts` entry: the same on every one."""
    return {"hostPath": args.job_storage_host, "containerPath": JOB_STORAGE_NODE_PATH}


def worker_node(pool: Pool, args: KindClusterArgs) -> dict[str, Any]:
    """One kind worker of `pool`: its labels, its taints registered by kubeadm at join, and the
    shared job storage folder."""
    facts = scheduling(pool)
    labels = dict(facts.node_labels)
    if facts.is_gpu:
        labels[FAKE_GPU_POOL_LABEL] = pool.name
    node: dict[str, Any] = {
        "role": "worker",
        "image": args.image,
        "labels": labels,
        "extraMounts": [job_storage_mount(args)],
    }
    if facts.taints:
        # nodeRegistration.taints has the same shape in kubeadm v1beta3 and v1beta4 (unlike
        # kubeletExtraArgs, a map in v1beta3 and a list in v1beta4), so one patch fits every
        # Kubernetes version kind may bootstrap.
        join = {"kind": "JoinConfiguration", "nodeRegistration": {"taints": facts.taints_k8s()}}
        node["kubeadmConfigPatches"] = [yaml.safe_dump(join, sort_keys=False)]
    return node


def kind_config(args: KindClusterArgs) -> dict[str, Any]:
    """kind's `Cluster` config: one control plane, then `desired` workers per pool, in pool order.

    The control plane keeps kubeadm's NoSchedule taint (kind lifts it only on single-node
    clusters), so every workload lands on a pool node.
    """
    nodes: list[dict[str, Any]] = [{"role": "control-plane", "image": args.image}]
    for pool in args.pools:
        nodes.extend(worker_node(pool, args) for _ in range(pool.desired))
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": args.name,
        "nodes": nodes,
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the kubeadm patches) as `|` blocks, as kind's docs write them."""


_Dumper.add_representer(
    str,
    lambda dumper, s: dumper.represent_scalar(
        "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None
    ),
)


def kind_config_yaml(args: KindClusterArgs) -> str:
    return yaml.dump(kind_config(args), Dumper=_Dumper, sort_keys=False)


def _kubeconfig_flag(args: KindClusterArgs) -> str:
    return f" --kubeconfig {shlex.quote(args.kubeconfig)}" if args.kubeconfig else ""


def create_command(args: KindClusterArgs) -> str:
    """Create from the config on stdin, then print the kubeconfig: stdout is the kubeconfig only.

    Pulumi runs this only for a cluster it has no record of, so a cluster of the same name is a
    leftover (an interrupted create, or one whose kubeconfig export failed): delete it first, or
    `kind create` fails with "node(s) already exist". kind deletes the nodes itself when a create
    step fails, but not when the kubeconfig cannot be exported or read afterwards: delete on any
    failure, so the next `up` starts clean.

    First of all it makes the shared job storage folder, writable by the pods' non-root UID:
    left to Docker, a missing bind-mount source is created as root's, 0755.
    """
    name = shlex.quote(args.name)
    host = shlex.quote(args.job_storage_host)
    storage = f"mkdir -p {host} && chmod {JOB_STORAGE_HOST_MODE} {host} || exit 1"
    delete = f"{delete_command(args)} </dev/null 1>&2"
    say = shlex.quote(
        f"kind cluster {args.name} exists but Pulumi has no record of it: deleting it"
    )
    stale = (
        f"if kind get clusters </dev/null 2>/dev/null | grep -qxF {name}; then"
        f" echo {say} >&2; {delete} || exit 1; fi"
    )
    create = (
        f"kind create cluster --name {name} --config - --wait {CREATE_WAIT}"
        f"{_kubeconfig_flag(args)} 1>&2 && kind get kubeconfig --name {name} </dev/null"
    )
    return f"{storage}\n{stale}\n{create} || {{ {delete}; exit 1; }}"


def delete_command(args: KindClusterArgs) -> str:
    return f"kind delete cluster --name {shlex.quote(args.name)}{_kubeconfig_flag(args)}"


def cluster_revision(kubeconfig: pulumi.Input[str]) -> pulumi.Output[str]:
    """A value that changes whenever a kind cluster is created anew: a hash of the kubeconfig kind
    printed for it (a new cluster has a new CA and keys). Not secret: a hash reveals no key."""
    digest = pulumi.Output.from_input(kubeconfig).apply(
        lambda k: hashlib.sha256(k.encode()).hexdigest()[:12]
    )
    return pulumi.Output.unsecret(digest)


class KindCluster(pulumi.ComponentResource):
    """A kind cluster with one worker per desired pool node; exposes `outputs`."""

    outputs: ClusterOutputs

    def __init__(
        self, name: str, args: KindClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:cluster:KindCluster", name, None, opts)
        config_yaml = kind_config_yaml(args)
        cluster = local.Command(
            f"{name}-kind",
            create=create_command(args),
            delete=delete_command(args),
            stdin=config_yaml,
            # stdout is the kubeconfig: keep it out of the logs and secret in the state.
            logging=local.Logging.STDERR,
            opts=pulumi.ResourceOptions(
                parent=self,
                additional_secret_outputs=["stdout"],
                # A changed config means a new cluster of the same name: delete the old first.
                replace_on_changes=["*"],
                delete_before_replace=True,
            ),
        )
        kubeconfig: pulumi.Output[str] = pulumi.Output.secret(cluster.stdout)
        provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=kubeconfig,
            # A sandbox deleted behind Pulumi's back must not block `gantry destroy`.
            delete_unreachable=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.outputs = ClusterOutputs(
            name=args.name,
            provider_kind="kind",
            kubeconfig=kubeconfig,
            k8s_provider=provider,
            pools=pool_facts(list(args.pools)),
            storage_class=KIND_STORAGE_CLASS,
            job_storage=JobStorage(JOB_STORAGE_CLASS, node_path=JOB_STORAGE_NODE_PATH),
            kubernetes_version=args.kubernetes_version,
            images=ImageTarget(
                "kind", kind_cluster=args.name, cluster_revision=cluster_revision(kubeconfig)
            ),
            ready=[cluster],  # kind waits for the nodes (`--wait`) before it prints a kubeconfig
        )
        self.register_outputs({"kubeconfig": kubeconfig, "kindConfig": config_yaml})
