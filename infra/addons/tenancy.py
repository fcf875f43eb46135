"""Team tenancy (from platform/teams.yaml) and the cluster's PriorityClasses.

Per team: a namespace (sidecar injection, Pod Security `restricted`), ResourceQuota, LimitRange
defaults, a Role bound to the team's group in that namespace only, default-deny NetworkPolicies
with explicit allows, and an Istio AuthorizationPolicy admitting the same peers over mTLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from gantry.pools import GPU_RESOURCE
from gantry.teams import PRIORITY_CLASSES, ContainerDefaults, Team
from infra.addons.batch import KUBERAY_NAMESPACE, RAY_DASHBOARD_PORT, RAY_HEAD_LABELS
from infra.addons.delivery import FLAGGER_NAMESPACE
from infra.addons.mesh import GATEWAY_NAMESPACE, ISTIO_NAMESPACE
from infra.addons.monitoring import MONITORING_NAMESPACE
from infra.addons.namespaces import NS_NAME_LABEL, TEAM_LABEL, namespace

# Namespaces whose pods may call into every team namespace (beside the team's own pods).
PLATFORM_PEERS = (GATEWAY_NAMESPACE, MONITORING_NAMESPACE, FLAGGER_NAMESPACE)
ISTIOD_XDS_PORT = 15012  # sidecars fetch config and certificates from istiod here

# What a team may do in its own namespace. No secrets, no RBAC, nothing cluster-wide.
_READ = ["get", "list", "watch"]
_WRITE = ["get", "list", "watch", "create", "update", "patch", "delete"]
RBAC_GROUP = "rbac.authorization.k8s.io"
# What a team member may do in its own namespace (no secrets, no RBAC, no wildcards).
TEAM_RULES: Any = [
    {"apiGroups": [""], "resources": ["pods", "pods/log", "events", "endpoints"], "verbs": _READ},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]},
    {"apiGroups": [""], "resources": ["services", "configmaps"], "verbs": _WRITE},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": _WRITE},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": _READ},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": _WRITE},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _WRITE},
    {"apiGroups": ["flagger.app"], "resources": ["canaries", "metrictemplates"], "verbs": _WRITE},
    {
        "apiGroups": ["monitoring.coreos.com"],
        "resources": ["podmonitors", "servicemonitors", "prometheusrules"],
        "verbs": _WRITE,
    },
    {
        "apiGroups": ["networking.istio.io"],
        "resources": ["virtualservices", "destinationrules"],
        "verbs": _READ,
    },
    # Batch jobs (docs/jobs.md): submit and cancel RayJobs, watch what Kueue and KubeRay make of
    # them. No update: a job's spec (and `suspend`) is Kueue's once it is queued.
    {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": [*_READ, "create", "delete"]},
    {"apiGroups": ["ray.io"], "resources": ["rayclusters"], "verbs": _READ},
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads", "localqueues"], "verbs": _READ},
]


def quota_hard(team: Team) -> dict[str, str]:
    q = team.quota
    return {
        "requests.cpu": f"{q.cpu:g}",
        "requests.memory": f"{q.memory_gib:g}Gi",
        "pods": str(q.pods),
        f"requests.{GPU_RESOURCE}": str(q.gpus),
    }


def _from_namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NS_NAME_LABEL: name}}}


def network_policies(ns: str) -> dict[str, dict[str, Any]]:
    """NetworkPolicy specs by name: deny all, then allow exactly what a served model needs."""
    dns = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    return {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "allow-same-namespace": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [{"to": [{"podSelector": {}}]}],
        },
        "allow-from-platform": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            # The ingress gateway, Prometheus' scrapes, and Flagger's load tester.
            "ingress": [{"from": [_from_namespace(peer) for peer in PLATFORM_PEERS]}],
        },
        # KubeRay submits a job to its Ray head and polls its status over the Ray dashboard's
        # HTTP API (HTTPMode, infra/jobs/rayjob.py); Ray pods already reach each other through
        # allow-same-namespace.
        "allow-kuberay-to-ray-head": {
            "podSelector": {"matchLabels": dict(RAY_HEAD_LABELS)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [_from_namespace(KUBERAY_NAMESPACE)],
                    "ports": [{"protocol": "TCP", "port": RAY_DASHBOARD_PORT}],
                }
            ],
        },
        "allow-egress-dns": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [_from_namespace("kube-system")], "ports": dns}],
        },
        "allow-egress-istiod": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [_from_namespace(ISTIO_NAMESPACE)],
                    "ports": [{"protocol": "TCP", "port": ISTIOD_XDS_PORT}],
                }
            ],
        },
    }


def authorization_policy(ns: str) -> dict[str, Any]:
    """ALLOW from the team's own namespace and the platform peers; everything else is denied."""
    return {
        "action": "ALLOW",
        "rules": [{"from": [{"source": {"namespaces": [ns, *PLATFORM_PEERS]}}]}],
    }


@dataclass(frozen=True)
class TeamTenancyArgs:
    team: Team
    defaults: ContainerDefaults  # the LimitRange's
    mesh_crds: pulumi.Resource  # istio-base: the AuthorizationPolicy CRD


class TeamTenancy(pulumi.ComponentResource):
    """One team's namespace (named after the team) and everything that fences it."""

    def __init__(
        self, name: str, args: TeamTenancyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:platform:Team", name, None, opts)
        team = args.team
        ns = team.name
        self.namespace = namespace(
            ns,
            "restricted",
            pulumi.ResourceOptions(parent=self),
            injection=True,
            labels={TEAM_LABEL: ns},
        )
        inner = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])

        def meta(object_name: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=ns)

        k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=meta("team-quota"),
            spec={"hard": quota_hard(team)},
            opts=inner,
        )
        d = args.defaults
        # Plain camelCase dicts (as the API spells them) rather than the SDK's TypedDicts.
        limit_spec: Any = {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": {
                        "cpu": f"{d.cpu_request:g}",
                        "memory": f"{d.memory_request_mib}Mi",
                    },
                    "default": {"cpu": f"{d.cpu_limit:g}", "memory": f"{d.memory_limit_mib}Mi"},
                }
            ]
        }
        k8s.core.v1.LimitRange(
            f"{name}-limits", metadata=meta("container-defaults"), spec=limit_spec, opts=inner
        )
        role = k8s.rbac.v1.Role(
            f"{name}-role", metadata=meta("team-developer"), rules=TEAM_RULES, opts=inner
        )
        role_ref: Any = {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "team-developer"}
        subjects: Any = [{"kind": "Group", "name": team.group, "apiGroup": RBAC_GROUP}]
        k8s.rbac.v1.RoleBinding(
            f"{name}-rolebinding",
            metadata=meta("team-developer"),
            role_ref=role_ref,
            subjects=subjects,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role]),
        )
        policies: dict[str, Any] = network_policies(ns)
        for policy, spec in policies.items():
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{policy}", metadata=meta(policy), spec=spec, opts=inner
            )
        k8s.apiextensions.CustomResource(
            f"{name}-authz",
            api_version="security.istio.io/v1",
            kind="AuthorizationPolicy",
            metadata={"name": "allow-team-and-platform", "namespace": ns},
            spec=authorization_policy(ns),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace, args.mesh_crds]),
        )
        self.register_outputs({"namespace": ns})


class Priorities(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gantry:platform:Priorities", name, None, opts)
        for class_name, (value, preempts, description) in PRIORITY_CLASSES.items():
            k8s.scheduling.v1.PriorityClass(
                class_name,
                metadata=k8s.meta.v1.ObjectMetaArgs(name=class_name),
                value=value,
                global_default=False,
                preemption_policy="PreemptLowerPriority" if preempts else "Never",
                description=description,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})
