"""Render one Helm release the way `helm install` would create it, offline.

Helm's own engine does the work (values coalescing, subchart conditions, templates); this module
adds what `helm install` does around it and `Chart.render` leaves out: the `crds/` of every
enabled chart (installed before the templates), the release namespace on namespaced objects, and
which objects are hooks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import yaml
from helm_python import Chart as HelmChart
from helm_python import _native

from infra.addons.charts import Chart, chart_of
from infra.helm import archives
from infra.helm.kinds import crd_scopes, is_namespaced

HOOK_ANNOTATION = "helm.sh/hook"
# API groups every cluster serves beyond Helm's offline defaults (client-go's built-in groups):
# charts test for them (`.Capabilities.APIVersions.Has`), e.g. prometheus-adapter's APIServices
# fall back to the long-removed v1beta1 without it.
CLUSTER_API_VERSIONS = ("apiregistration.k8s.io/v1",)


@dataclass(frozen=True)
class ReleaseInputs:
    """A `helm.v3.Release` as the program registered it."""

    name: str
    namespace: str
    chart: str
    version: str
    values: dict[str, Any]
    kubernetes_version: str  # the cluster's minor version, "1.34": charts branch on it
    skip_crds: bool = False  # `--skip-crds`: the chart's crds/ are not installed

    @property
    def pinned(self) -> Chart:
        return chart_of(self.chart, self.version)


@dataclass
class RenderedRelease:
    inputs: ReleaseInputs
    values: dict[str, Any]  # the chart's defaults coalesced with the release's values
    crd_files: dict[str, str]  # `crds/` files as the charts ship them: installed first
    objects: list[dict[str, Any]]  # from templates, in Helm's file order; hooks included
    templates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # file -> objects

    @cached_property
    def crd_heads(self) -> list[dict[str, Any]]:
        """The CRDs without their openAPIV3Schema: names, group, kinds, scope, versions.
        Parsing the schemas (megabytes for kube-prometheus-stack) is left to `crds`."""
        return [d for text in self.crd_files.values() for d in parse_documents(_no_schemas(text))]

    @cached_property
    def crds(self) -> list[dict[str, Any]]:
        return [d for text in self.crd_files.values() for d in parse_documents(text)]


def is_hook(obj: dict[str, Any]) -> bool:
    return HOOK_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {})


class _Loader(yaml.CSafeLoader):
    """libyaml's safe loader (CRDs are megabytes), plus YAML's `=` (value) tag, which some
    CRDs contain as a bare `=`."""


def _value_tag(loader: yaml.CSafeLoader, node: yaml.Node) -> Any:
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:value", _value_tag)


def parse_documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=_Loader) if isinstance(d, dict) and d]


def _condition_holds(values: dict[str, Any], condition: str) -> bool:
    """Helm's rule: the first of the comma-separated paths that is a bool decides; else on."""
    for path in condition.split(","):
        node: Any = values
        for part in path.strip().split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, bool):
            return node
    return True


def _enabled_subcharts(values: dict[str, Any], metadata: dict[str, Any]) -> set[str]:
    """Subcharts whose `condition` holds for `values` (Helm drops the others, CRDs included)."""
    return {
        dep.get("alias") or dep["name"]
        for dep in metadata.get("dependencies") or []
        if _condition_holds(values, dep.get("condition") or "")
    }


_SCHEMA_KEY = re.compile(r"^( *)openAPIV3Schema:\s*$")


def _no_schemas(text: str) -> str:
    """Block-style CRD YAML with every `openAPIV3Schema:` block emptied (by indentation)."""
    out: list[str] = []
    inside: int | None = None  # the indentation of the schema key being skipped
    for line in text.splitlines():
        body = line.lstrip(" ")
        if inside is not None and (not body or len(line) - len(body) > inside):
            continue
        inside = None
        if m := _SCHEMA_KEY.match(line):
            inside = len(m[1])
            line += " {}"
        out.append(line)
    return "\n".join(out)


def _crd_enabled(filename: str, enabled: set[str]) -> bool:
    """`<chart>/crds/x.yaml` always; `<chart>/charts/<sub>/...` only when <sub> is enabled."""
    parts = filename.split("/")
    subs = [parts[i + 1] for i in range(len(parts) - 1) if parts[i] == "charts"]
    return not subs or subs[0] in enabled


def _render(chart: HelmChart, inputs: ReleaseInputs) -> dict[str, str]:
    """`helm template --kube-version --api-versions`: helm-python-sdk 0.2.2's `Chart.render`
    does not pass these two options on, though its native render (Helm's SDK) takes them."""
    opts = {
        "name": inputs.name,
        "namespace": inputs.namespace,
        "is_install": True,
        "kube_version": f"v{inputs.kubernetes_version}.0",
        "api_versions": list(CLUSTER_API_VERSIONS),
    }
    out = _native.call_string(
        "helm_render", chart._raw(), json.dumps(inputs.values), json.dumps(opts)
    )
    rendered: dict[str, str] = json.loads(out)
    return rendered


def render_release(inputs: ReleaseInputs) -> RenderedRelease:
    """What installing `inputs` creates. Raises helm_python's errors on values Helm rejects."""
    chart = archives.load(inputs.pinned)
    values = chart.merge_values(inputs.values)
    enabled = _enabled_subcharts(values, chart.metadata)
    crd_files = {
        c["filename"]: c["data"]
        for c in chart.crds
        if _crd_enabled(c["filename"], enabled) and not inputs.skip_crds
    }
    release = RenderedRelease(inputs, values, crd_files, [])
    scopes = crd_scopes(release.crd_heads)
    rendered = _render(chart, inputs)
    for path in sorted(rendered):
        if not path.endswith((".yaml", ".yml", ".json")):  # NOTES.txt
            continue
        docs = parse_documents(rendered[path])
        for doc in docs:
            meta = doc.setdefault("metadata", {})
            if is_namespaced(doc, scopes) and not meta.get("namespace"):
                meta["namespace"] = inputs.namespace  # what `helm install -n` does
        if docs:
            release.templates[path] = docs
            release.objects += docs
    return release
