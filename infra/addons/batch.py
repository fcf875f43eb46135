"""Batch jobs on a cluster: KubeRay runs a job's Ray cluster, Kueue decides when (docs/jobs.md).

- `kuberay-operator` (namespace kuberay-system) watches the team namespaces: for a RayJob it
  creates the job's Ray cluster (head + workers), submits the job to the head and deletes the
  cluster when the job ends (infra/jobs/rayjob.py renders the RayJob).
- `kueue` (kueue-system) suspends each RayJob created in a team namespace until the team's
  ClusterQueue admits all of its pods at once, within the team's quota.
- Per pool, a ResourceFlavor: the pool as Kueue sees it (node labels, taints, tolerations).
- Per team with a `jobs.quota` (platform/teams.yaml): a ClusterQueue with that nominal quota per
  pool, all of them in one cohort so that idle quota can be borrowed; the LocalQueue `default`
  in the team's namespace; the PVC `job-storage` every job of the team mounts (`JobVolumes`:
  ReadWriteMany, of the cluster layer's job storage class; on kind, whose class has no
  provisioner, also that class and a static PersistentVolume per team, bound to the team's
  claim, on the folder every kind node shares).
- A WorkloadPriorityClass per PriorityClass (gantry/teams.py), same names and values.

RayJobs are not created here: teams submit them (`kubectl create`), `pulumi up` never does.
Kueue's objects are plain dicts from pure functions, so the checks and tests read exactly what
is registered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from gantry.pools import GPU_RESOURCE, PoolScheduling
from gantry.teams import PRIORITY_CLASSES, Team
from infra.addons.monitoring import MONITORING_NAMESPACE, PROMETHEUS_SERVICE_ACCOUNT
from infra.addons.namespaces import NS_NAME_LABEL, namespace
from infra.addons.release import ClusterTarget, helm_release
from infra.cluster import JobStorage

KUBERAY_NAMESPACE = "kuberay-system"
KUEUE_NAMESPACE = "kueue-system"
KUEUE_RELEASE = "kueue"  # also the chart's fullname, which prefixes its objects' names
# The version Kueue 0.19.2's CRDs store (v1beta1 is still served, converted by its webhook).
KUEUE_API = "kueue.x-k8s.io/v1beta2"
# Labels a job carries for Kueue: its LocalQueue and its WorkloadPriorityClass.
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
# Every team's LocalQueue. Named `default`: Kueue gives a RayJob created in the namespace without
# a queue-name label this queue (LocalQueue defaulting), so none runs outside its team's quota.
LOCAL_QUEUE = "default"
COHORT = "gantry"  # every team's ClusterQueue: idle nominal quota is lent within it
# What a ClusterQueue counts, per flavor (Kueue's names: cores, bytes, GPUs).
COVERED_RESOURCES = ("cpu", "memory", GPU_RESOURCE)
# Ray's dashboard on a job's head pod (KubeRay labels that pod): where KubeRay submits the job.
RAY_DASHBOARD_PORT = 8265
RAY_HEAD_LABELS = {"ray.io/node-type": "head"}
# Each team's job volume: checkpoints and outputs, shared by a job's head and workers, kept
# across preemptions (a resumed job finds its checkpoints).
JOB_STORAGE_PVC = "job-storage"
JOB_STORAGE_GIB = 20  # GiB per team (a static kind volume has it as its capacity, unenforced)
# A job's head and workers run on different nodes and write the same run directory.
JOB_STORAGE_ACCESS = "ReadWriteMany"
# Static volumes (kind): made by Gantry, no provisioner; kept (and their files) when the claim is
# deleted.
STATIC_PROVISIONER = "kubernetes.io/no-provisioner"
STATIC_RECLAIM_POLICY = "Retain"
# The Kueue chart's ClusterRole for GETting its /metrics (served with authentication).
KUEUE_METRICS_READER = f"{KUEUE_RELEASE}-metrics-reader"


def _kueue_object(
    kind: str, name: str, spec: dict[str, Any], ns: str | None = None
) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {"apiVersion": KUEUE_API, "kind": kind, "metadata": meta, "spec": spec}


def resource_flavor(pool: PoolScheduling) -> dict[str, Any]:
    """A pool as Kueue sees it. Kueue adds the node labels (as a nodeSelector) and the
    tolerations to the pods it admits on this flavor, so a GPU job needs only request GPUs."""
    spec: dict[str, Any] = {"nodeLabels": dict(pool.node_selector)}
    if pool.taints:
        spec["nodeTaints"] = pool.taints_k8s()
        spec["tolerations"] = [dict(t) for t in pool.tolerations]
    return _kueue_object("ResourceFlavor", pool.name, spec)


def nominal_quota(team: Team) -> dict[str, dict[str, str]]:
    """Per pool (flavor), the team's jobs quota in Kubernetes quantities."""
    return {
        pool: {"cpu": f"{q.cpu:g}", "memory": f"{q.memory_gib:g}Gi", GPU_RESOURCE: str(q.gpus)}
        for pool, q in team.jobs.quota.items()
    }


def cluster_queue(team: Team) -> dict[str, Any]:
    """The team's queue: its nominal quota per pool, in the shared cohort."""
    limit = {} if team.jobs.borrowing else {"borrowingLimit": 0}
    flavors = [
        {
            "name": pool,
            "resources": [
                {"name": r, "nominalQuota": amounts[r], **limit} for r in COVERED_RESOURCES
            ],
        }
        for pool, amounts in nominal_quota(team).items()
    ]
    return _kueue_object(
        "ClusterQueue",
        team.name,
        {
            "cohortName": COHORT,
            # Workloads of the team's own namespace only.
            "namespaceSelector": {"matchLabels": {NS_NAME_LABEL: team.name}},
            # Higher priority first, then the oldest; a job that does not fit yet does not hold
            # back a smaller one queued behind it.
            "queueingStrategy": "BestEffortFIFO",
            "preemption": {
                # Lent quota comes back when the team needs it (borrowers are preempted).
                "reclaimWithinCohort": "Any",
                # A team's job may preempt its own lower-priority jobs ...
                "withinClusterQueue": "LowerPriority",
                # ... but nobody preempts to borrow.
                "borrowWithinCohort": {"policy": "Never"},
            },
            "resourceGroups": [{"coveredResources": list(COVERED_RESOURCES), "flavors": flavors}],
        },
    )


def local_queue(team: Team) -> dict[str, Any]:
    return _kueue_object("LocalQueue", LOCAL_QUEUE, {"clusterQueue": team.name}, team.name)


def workload_priority_classes() -> list[dict[str, Any]]:
    """Kueue's priorities, one per PriorityClass: Kueue orders and preempts queued jobs by these
    (the pods' PriorityClass is what the scheduler uses once they are admitted)."""
    return [
        {
            "apiVersion": KUEUE_API,
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": description,
        }
        for name, (value, _, description) in PRIORITY_CLASSES.items()
    ]


def job_teams(teams: list[Team]) -> list[Team]:
    """The teams that run jobs: those with a jobs quota (a queue without one admits nothing)."""
    return [t for t in teams if t.jobs.quota]


@dataclass(frozen=True)
class JobVolumesArgs:
    storage: JobStorage  # from the cluster layer
    team_namespaces: Mapping[str, pulumi.Resource]  # the job teams' Namespaces, by team name


class JobVolumes(pulumi.ComponentResource):
    """Each job team's `job-storage` claim and, where the class has no provisioner (kind), the
    class and one static volume per team on the folder every node shares."""

    def __init__(
        self, name: str, args: JobVolumesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:platform:JobVolumes", name, None, opts)
        storage_class, node_path = args.storage.storage_class, args.storage.node_path
        # Guaranteed by gantry/stack.py: a stack with job teams names a class where the cluster
        # layer gives none.
        assert storage_class is not None or not args.team_namespaces, "no job storage class"
        size = {"storage": f"{JOB_STORAGE_GIB}Gi"}
        volumes: dict[str, pulumi.Resource] = {}
        if node_path is not None and args.team_namespaces:
            static_class = k8s.storage.v1.StorageClass(
                f"{name}-class",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=storage_class),
                provisioner=STATIC_PROVISIONER,
                reclaim_policy=STATIC_RECLAIM_POLICY,
                # The volumes exist already, each reserved for its claim: bind at once.
                volume_binding_mode="Immediate",
                opts=pulumi.ResourceOptions(parent=self),
            )
            volumes = {
                team: k8s.core.v1.PersistentVolume(
                    f"{team}-job-volume",
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{JOB_STORAGE_PVC}-{team}"),
                    spec=k8s.core.v1.PersistentVolumeSpecArgs(
                        capacity=size,
                        access_modes=[JOB_STORAGE_ACCESS],
                        storage_class_name=storage_class,
                        persistent_volume_reclaim_policy=STATIC_RECLAIM_POLICY,
                        # Reserved for the team's claim: no other claim can take it.
                        claim_ref=k8s.core.v1.ObjectReferenceArgs(
                            namespace=team, name=JOB_STORAGE_PVC
                        ),
                        # Every team's volume is the one folder every node shares (a folder per
                        # team would change the kind config, replacing the cluster, whenever a
                        # team is added): run directories are per job, and kind isolates no
                        # team's files (docs/jobs.md). `Directory`: the mount fails rather than
                        # the kubelet create a root-owned folder the pods cannot write.
                        host_path=k8s.core.v1.HostPathVolumeSourceArgs(
                            path=node_path, type="Directory"
                        ),
                    ),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[static_class]),
                )
                for team in args.team_namespaces
            }
        for team, ns in args.team_namespaces.items():
            # After its static volume (kind), so the claim binds as soon as it exists.
            deps = [ns, *([volumes[team]] if team in volumes else [])]
            k8s.core.v1.PersistentVolumeClaim(
                f"{team}-job-storage",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=JOB_STORAGE_PVC, namespace=team),
                spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                    access_modes=[JOB_STORAGE_ACCESS],
                    storage_class_name=storage_class,
                    resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests=size),
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=deps),
            )
        self.register_outputs({"storage_class": storage_class})


class KubeObject(pulumi.CustomResource):
    """A Kubernetes object given whole, as a dict. `apiextensions.CustomResource` sends only
    `spec`, and a WorkloadPriorityClass has none (its `value` is top-level)."""

    def __init__(self, name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> None:
        super().__init__(f"kubernetes:{obj['apiVersion']}:{obj['kind']}", name, dict(obj), opts)


@dataclass(frozen=True)
class BatchArgs:
    target: ClusterTarget
    pools: list[PoolScheduling]  # every pool of the stack: a flavor each
    teams: list[Team]
    team_namespaces: Mapping[str, pulumi.Resource]  # team -> its Namespace (TeamTenancy)
    job_storage: JobStorage  # the job volumes' class (ReadWriteMany: docs/jobs.md)
    prometheus: pulumi.Resource  # kube-prometheus-stack: the ServiceMonitor CRD


class Batch(pulumi.ComponentResource):
    """KubeRay, Kueue and every team's queue."""

    def __init__(
        self, name: str, args: BatchArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:platform:Batch", name, None, opts)
        target, team_ns = args.target, args.team_namespaces

        def after(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=list(deps))

        # Both controllers run as non-root with every capability dropped (the charts' defaults).
        kuberay_ns = namespace(KUBERAY_NAMESPACE, "restricted", after())
        kueue_ns = namespace(KUEUE_NAMESPACE, "restricted", after())
        # After the team namespaces: the chart puts the operator's Role in each one it watches.
        self.kuberay = helm_release(
            "kuberay-operator",
            "kuberay-operator",
            kuberay_ns.metadata.name,
            target,
            after(kuberay_ns, args.prometheus, *team_ns.values()),
            {"watchNamespace": sorted(team_ns)},
        )
        # After KubeRay: its rayjob integration starts with the RayJob CRD in place.
        self.kueue = helm_release(
            KUEUE_RELEASE,
            "kueue",
            kueue_ns.metadata.name,
            target,
            after(kueue_ns, args.prometheus, self.kuberay),
        )
        # The chart's ServiceMonitor scrapes with Prometheus' token; this lets it read /metrics.
        k8s.rbac.v1.ClusterRoleBinding(
            "kueue-metrics-prometheus",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="kueue-metrics-prometheus"),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io",
                kind="ClusterRole",
                name=KUEUE_METRICS_READER,
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(
                    kind="ServiceAccount",
                    name=PROMETHEUS_SERVICE_ACCOUNT,
                    namespace=MONITORING_NAMESPACE,
                )
            ],
            opts=after(self.kueue),
        )
        # Kueue's objects after its release: its CRDs, and its webhooks that validate them.
        flavors = {
            p.name: KubeObject(f"flavor-{p.name}", resource_flavor(p), after(self.kueue))
            for p in args.pools
        }
        for wpc in workload_priority_classes():
            KubeObject(f"wpc-{wpc['metadata']['name']}", wpc, after(self.kueue))
        teams = job_teams(args.teams)
        JobVolumes(
            "job-storage",
            JobVolumesArgs(args.job_storage, {t.name: team_ns[t.name] for t in teams}),
            after(),
        )
        for team in teams:
            ns = team_ns[team.name]
            queue = KubeObject(
                f"{team.name}-cluster-queue",
                cluster_queue(team),
                after(self.kueue, *(flavors[p] for p in team.jobs.quota)),
            )
            KubeObject(f"{team.name}-local-queue", local_queue(team), after(self.kueue, ns, queue))
        self.register_outputs({"cohort": COHORT, "local_queue": LOCAL_QUEUE})
