"""`ModelService`: one model service on the cluster (one ComponentResource, reused per service).

The objects themselves are the pure dicts of manifests.py; this component only registers them
with Pulumi, in order, under one parent, with the options that keep Pulumi and Flagger apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from gantry.service import ServiceSpec
from infra.serving import manifests


@dataclass(frozen=True)
class ModelServiceArgs:
    spec: ServiceSpec
    context: manifests.ServingContext
    provider: k8s.Provider
    # What must exist first: the image build, the team namespace, the platform's CRDs.
    depends_on: list[pulumi.Resource] = field(default_factory=list)


def _register(
    obj: dict[str, Any], name: str, opts: pulumi.ResourceOptions
) -> pulumi.CustomResource:
    """One Kubernetes object as the typed Pulumi resource of its kind."""
    kind, meta = obj["kind"], obj["metadata"]
    body = {k: v for k, v in obj.items() if k not in {"apiVersion", "kind", "metadata"}}
    if kind == "ServiceAccount":
        return k8s.core.v1.ServiceAccount(
            name,
            metadata=meta,
            automount_service_account_token=body["automountServiceAccountToken"],
            opts=opts,
        )
    if kind == "ConfigMap":
        return k8s.core.v1.ConfigMap(name, metadata=meta, data=body["data"], opts=opts)
    if kind == "Deployment":
        return k8s.apps.v1.Deployment(name, metadata=meta, spec=body["spec"], opts=opts)
    if kind == "HorizontalPodAutoscaler":
        return k8s.autoscaling.v2.HorizontalPodAutoscaler(
            name, metadata=meta, spec=body["spec"], opts=opts
        )
    if kind == "PodDisruptionBudget":
        return k8s.policy.v1.PodDisruptionBudget(name, metadata=meta, spec=body["spec"], opts=opts)
    if kind == "Service":
        return k8s.core.v1.Service(name, metadata=meta, spec=body["spec"], opts=opts)
    # Custom resources (Flagger, prometheus-operator): their CRDs come with the platform layer.
    return k8s.apiextensions.CustomResource(
        name, api_version=obj["apiVersion"], kind=kind, metadata=meta, spec=body["spec"], opts=opts
    )


class ModelService(pulumi.ComponentResource):
    """Deployment, HPA, PDB, metrics Service + ServiceMonitor, Flagger Canary + MetricTemplates.

    Pulumi and Flagger never fight (the one place this is explained; docs point here):
    - Pulumi owns what manifests.py renders: the target Deployment `<name>`, its HPA, the serve
      ConfigMap, the metrics Service + ServiceMonitor, the PDB, the Canary and its
      MetricTemplates.
    - Flagger owns what it generates from the Canary: `<name>-primary` (Deployment, HPA,
      ConfigMap), the Services `<name>`, `<name>-canary` and `<name>-primary`, the
      VirtualService and the DestinationRules. Pulumi never creates an object with one of those
      names.
    - The target Deployment's `spec.replicas` belongs to the HPA and Flagger (which scales the
      canary target to zero between rollouts): manifests.py never sets it, so server-side apply
      never claims it, and Pulumi ignores changes to it (`ignore_changes` below).
    - On Pulumi's objects Flagger writes only the Canary's status.
    The program is deterministic (content-hash image tags, no timestamps), so a second
    `pulumi up` with no change plans no change (test_a_second_run_registers_identical_inputs).
    This is argued from the fields each side writes, not observed against a running Flagger
    (docs/limitations.md).
    """

    def __init__(
        self, name: str, args: ModelServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:serving:ModelService", name, None, opts)
        self.objects: dict[str, pulumi.CustomResource] = {}
        previous: list[pulumi.Resource] = list(args.depends_on)
        for obj in manifests.all_objects(args.spec, args.context):
            key = f"{obj['kind'].lower()}-{obj['metadata']['name']}"
            opts_ = pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=previous,
                # Flagger and the HPA own `spec.replicas` (class docstring).
                ignore_changes=["spec.replicas"] if obj["kind"] == "Deployment" else None,
            )
            resource = _register(obj, f"{name}-{key}", opts_)
            self.objects[key] = resource
            # Apply in order: config before the Deployment, the Deployment before its HPA and
            # Canary (Flagger bootstraps from a ready Deployment), templates before the Canary.
            previous = [*args.depends_on, resource]
        self.namespace = args.context.namespace
        self.register_outputs(
            {"namespace": self.namespace, "host": args.context.host, "image": args.context.image}
        )
