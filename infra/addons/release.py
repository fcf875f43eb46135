"""One Helm release of a pinned chart with its merged values (`helm.v3.Release`).

`helm.v3.Release` (not `helm.v4.Chart`) because Helm then owns hooks, CRDs and upgrades as
`helm upgrade` would, and the release's inputs are visible to the offline render and its tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.addons.charts import CHARTS
from infra.addons.values import addon_values

# Seconds Helm waits for a release's resources to become ready (image pulls on kind are slow).
RELEASE_TIMEOUT_S = 900


@dataclass(frozen=True)
class ClusterTarget:
    """The cluster every release goes to: which provider made it (selects the values overlay)
    and what must be up before any release starts (ClusterOutputs.ready: nodes, storage)."""

    provider_kind: str
    ready: tuple[pulumi.Resource, ...] = ()


def helm_release(
    name: str,
    addon: str,
    namespace: pulumi.Input[str],
    target: ClusterTarget,
    opts: pulumi.ResourceOptions,
    computed: Mapping[str, Any] | None = None,
    skip_crds: bool = False,  # `helm install --skip-crds`: another release owns the CRDs
) -> k8s.helm.v3.Release:
    chart = CHARTS[addon]
    # Explicit on every release: Pulumi does not pass a component's depends_on to its children.
    opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(target.ready)))
    return k8s.helm.v3.Release(
        name,
        k8s.helm.v3.ReleaseArgs(
            name=name,
            chart=chart.chart,
            version=chart.version,
            repository_opts=(
                k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo) if chart.repo else None
            ),
            namespace=namespace,
            create_namespace=False,  # namespaces are ours, with PSS labels
            values=addon_values(addon, target.provider_kind, computed),
            timeout=RELEASE_TIMEOUT_S,
            cleanup_on_fail=True,
            skip_crds=skip_crds,
        ),
        opts=opts,
    )
