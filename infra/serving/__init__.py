"""Layer 3, serving: one `ModelService` per enabled service of the stack, each with its image.

`Serving(name, ServingArgs.from_layers(cfg, cluster, platform))` on the typed outputs of layers 1
and 2. Services are data (`services/<name>/service.yaml` + the stack's `services` entry): adding
one needs no code here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from gantry.service import ServiceSpec, load_services
from gantry.stack import GantryConfig
from infra.addons import PlatformOutputs
from infra.cluster import ClusterOutputs
from infra.serving.component import ModelService, ModelServiceArgs
from infra.serving.images import ImageArgs, ServiceImage, cluster_revision
from infra.serving.manifests import ServingContext

# What EKS nodes run: every AMI type of infra/cluster/eks.py (AMI_TYPES) is x86_64, so images
# pushed for EKS are built for it whatever machine builds them.
EKS_IMAGE_PLATFORM = "linux/amd64"


@dataclass(frozen=True)
class ServingArgs:
    cfg: GantryConfig
    cluster: ClusterOutputs
    platform: PlatformOutputs
    specs: dict[str, ServiceSpec]

    @staticmethod
    def from_layers(
        cfg: GantryConfig,
        cluster: ClusterOutputs,
        platform: PlatformOutputs,
        specs: dict[str, ServiceSpec] | None = None,
        services_dir: Path | None = None,
    ) -> ServingArgs:
        """`specs`: the stack's services if already loaded (load_services(cfg, services_dir)),
        which also checks each one's team and pool against platform/teams.yaml."""
        specs = load_services(cfg, services_dir) if specs is None else specs
        return ServingArgs(cfg, cluster, platform, specs)

    def context(self, spec: ServiceSpec, image: pulumi.Input[str]) -> ServingContext:
        p = self.platform
        return ServingContext(
            namespace=p.teams[spec.team].namespace,
            pool=self.cluster.pools[spec.pool],
            image=image,
            gateway=p.gateway,
            host=p.host(spec.name),
            loadtester_url=p.loadtester_url,
            prometheus_url=p.prometheus_url,
            in_flight_metric=p.inflight_metric,
            mesh_scrape=p.mesh_scrape,
            priority_class=p.priority_classes[0] if p.priority_classes else None,
        )


class Serving(pulumi.ComponentResource):
    """Every model service of the stack: image + ModelService each."""

    def __init__(
        self, name: str, args: ServingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:serving:Serving", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        image_args = _image_target(args.cfg, args.cluster, child)
        self.services: dict[str, ModelService] = {}
        for svc, spec in args.specs.items():
            # `kind load` needs the cluster: wait for its provider (made from its kubeconfig).
            deps: list[pulumi.Resource] = [args.cluster.k8s_provider]
            image = ServiceImage(
                f"{svc}-image", ImageArgs(spec=spec, depends_on=deps, **image_args), child
            )
            self.services[svc] = ModelService(
                svc,
                ModelServiceArgs(
                    spec=spec,
                    context=args.context(spec, image.ref),
                    provider=args.cluster.k8s_provider,
                    depends_on=[image.build, *args.platform.depends_on],
                ),
                child,
            )
        self.register_outputs({"services": {svc: args.platform.host(svc) for svc in self.services}})


def _image_target(
    cfg: GantryConfig, cluster: ClusterOutputs, opts: pulumi.ResourceOptions
) -> dict[str, Any]:
    """Where images go: kind loads them into its nodes; EKS pushes them to `eks.image_registry`,
    or by default to ECR in the stack's account and region (a repository per service, created
    here, logged in to with the AWS CLI); an existing cluster uses the local Docker daemon's
    images (e.g. Docker Desktop's Kubernetes)."""
    if cfg.cluster.provider == "kind":
        # A replaced cluster (new pools or Kubernetes version) has none of the images: load again.
        revision = cluster_revision(cluster.kubeconfig)
        return {"target": "kind", "kind_cluster": cfg.cluster.name, "cluster_revision": revision}
    eks = cfg.cluster.eks
    if eks is None:
        return {"target": "local"}
    if eks.image_registry:
        return {
            "target": "registry",
            "registry": eks.image_registry,
            "platform": EKS_IMAGE_PLATFORM,
        }
    provider = aws.Provider("serving-aws", region=eks.region, opts=opts)
    account = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(provider=provider))
    registry = account.account_id.apply(lambda a: f"{a}.dkr.ecr.{eks.region}.amazonaws.com")
    login = registry.apply(
        lambda r: (
            f"aws ecr get-login-password --region {eks.region}"
            f" | docker login --username AWS --password-stdin {r}"
        )
    )
    return {
        "target": "registry",
        "registry": registry,
        "login": login,
        "ecr_provider": provider,
        "platform": EKS_IMAGE_PLATFORM,
    }
