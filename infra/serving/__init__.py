"""Layer 3, serving: one `ModelService` per enabled service of the stack, each with its image.

`Serving(name, ServingArgs(specs, cluster, platform))` on the typed outputs of layers 1 and 2:
it never reads the stack's config nor asks which cluster provider made the cluster (where images
go is `cluster.images`). Services are data (`services/<name>/service.yaml` + the stack's
`services` entry): adding one needs no code here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from gantry.service import ServiceSpec
from infra.addons import PlatformOutputs
from infra.cluster import ClusterOutputs
from infra.serving.component import ModelService, ModelServiceArgs
from infra.serving.images import ImageArgs, ServiceImage
from infra.serving.manifests import ServingContext


@dataclass(frozen=True)
class ServingArgs:
    # The stack's enabled services, already checked against the teams and pools
    # (`gantry.service.load_services`).
    specs: dict[str, ServiceSpec]
    cluster: ClusterOutputs
    platform: PlatformOutputs

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
            in_flight_metric=p.in_flight_metric,
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
        self.services: dict[str, ModelService] = {}
        for svc, spec in args.specs.items():
            # `kind load` needs the cluster: wait for its provider (made from its kubeconfig).
            deps: list[pulumi.Resource] = [args.cluster.k8s_provider]
            image = ServiceImage(
                f"{svc}-image",
                ImageArgs(spec=spec, target=args.cluster.images, depends_on=deps),
                child,
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
