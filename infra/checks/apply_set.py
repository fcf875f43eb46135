"""Everything `pulumi up` would apply, as one set: Gantry's own objects plus every object each
Helm release creates, each with the resource that creates it and what that resource waits for;
and what teams submit once it is applied (every job's RayJob, infra/jobs/rayjob.py).

`what_exists_before(owner)` reads the program's real dependency graph (every registration's
`dependencies`, with a dependency on a component meaning all of its children, as in Pulumi),
so the ordering checks see the program, not a list kept beside it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from infra.checks.schemas import describe
from infra.helm.kinds import crd_scopes, group_kind, is_namespaced
from infra.helm.template import ReleaseInputs, RenderedRelease, is_hook, render_release
from infra.render import ResourceIndex, release_summary

# How an object is created: by Helm from `crds/` (before the templates), a template, a hook; by
# Pulumi as its own resource; or by a team, after `pulumi up` (submitted: a job's RayJob).
Stage = Literal["crds", "template", "hook", "object", "submitted"]


@dataclass(frozen=True)
class Entry:
    manifest: dict[str, Any]
    owner: str  # URN of the resource that creates it (the object itself, or its Helm release)
    owner_name: str
    stage: Stage
    source: str  # for messages: "release flagger, templates/crd.yaml"

    @property
    def key(self) -> tuple[str, str, str, str]:
        group, kind = group_kind(self.manifest)
        meta = self.manifest.get("metadata") or {}
        return group, kind, str(meta.get("namespace") or ""), str(meta.get("name"))

    def describe(self) -> str:
        return describe(self.manifest)


def releases_of(index: ResourceIndex, kubernetes_version: str) -> dict[str, RenderedRelease]:
    """Every Helm release of the program, rendered by Helm (keyed by the release's URN)."""
    out = {}
    for r in index.helm_releases():
        s = release_summary(r)
        inputs = ReleaseInputs(
            s["name"],
            s["namespace"],
            s["chart"],
            s["version"],
            s["values"],
            kubernetes_version,
            skip_crds=s["skip_crds"],
        )
        out[r.urn] = render_release(inputs)
    return out


class ApplySet:
    def __init__(
        self,
        index: ResourceIndex,
        releases: dict[str, RenderedRelease],
        submitted: Sequence[tuple[dict[str, Any], str]] = (),  # (object, where it comes from)
    ) -> None:
        self.index = index
        self.releases = releases
        self.entries: list[Entry] = []
        for r in index.k8s_objects():
            self.entries.append(Entry(r.manifest(), r.urn, r.name, "object", f"object {r.name}"))
        for urn, rel in releases.items():
            name = rel.inputs.name
            for crd in rel.crd_heads:
                self.entries.append(Entry(crd, urn, name, "crds", f"release {name}, crds/"))
            for path, docs in rel.templates.items():
                file = path.split("/", 1)[1]
                for doc in docs:
                    stage: Stage = "hook" if is_hook(doc) else "template"
                    self.entries.append(Entry(doc, urn, name, stage, f"release {name}, {file}"))
        for manifest, source in submitted:
            self.entries.append(
                Entry(manifest, f"submitted:{source}", source, "submitted", f"submitted {source}")
            )

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    @cached_property
    def scopes(self) -> dict[tuple[str, str], bool]:
        return crd_scopes(e.manifest for e in self.entries)

    def namespaced(self, entry: Entry) -> bool:
        return is_namespaced(entry.manifest, self.scopes)

    @cached_property
    def _children(self) -> dict[str, list[str]]:
        children: dict[str, list[str]] = {}
        for r in self.index:
            if r.parent:
                children.setdefault(r.parent, []).append(r.urn)
        return children

    def _descendants(self, urn: str) -> Iterator[str]:
        for child in self._children.get(urn, []):
            yield child
            yield from self._descendants(child)

    @cached_property
    def _before(self) -> dict[str, frozenset[str]]:
        deps = {r.urn: r.depends_on for r in self.index}
        memo: dict[str, frozenset[str]] = {}

        def closure(urn: str) -> frozenset[str]:
            if urn not in memo:
                memo[urn] = frozenset()  # cycles (there should be none) end here
                found: set[str] = set()
                for dep in deps.get(urn, []):
                    # Depending on a component waits for every resource under it.
                    for d in (dep, *self._descendants(dep)):
                        found.add(d)
                        found |= closure(d)
                memo[urn] = frozenset(found)
            return memo[urn]

        return {r.urn: closure(r.urn) for r in self.index}

    def exists_before(self, provider: Entry, consumer: Entry) -> bool:
        """Whether `provider` is created before `consumer` is applied."""
        if consumer.stage == "submitted":  # teams submit once everything `pulumi up` made exists
            return provider.stage != "submitted"
        if provider.owner in self._before.get(consumer.owner, frozenset()):
            return True
        if provider.owner != consumer.owner or provider.stage == "object":
            return False
        # Within one release Helm installs crds/ first, then templates in kind order.
        return provider.stage == "crds" or consumer.stage != "crds"

    def owner_depends_on(self, consumer_owner: str, provider_owner: str) -> bool:
        """Whether `consumer_owner` waits for `provider_owner`. The SDK records a dependency on a
        component as one on the resources under it, so a component counts when all do."""
        before = self._before.get(consumer_owner, frozenset())
        if provider_owner in before:
            return True
        leaves = [d for d in self._descendants(provider_owner) if d not in self._children]
        return bool(leaves) and all(leaf in before for leaf in leaves)
