"""Values checked against the chart they go to: a key the pinned chart does not read is an error.

A key is read when the chart's defaults (its values.yaml and its subcharts', as Helm coalesces
them) have it, or a template names it (`.Values.a.b`). Below a free-form map (an empty `{}` or
null default, or a key such as `annotations`) any key goes. Charts that ship a
`values.schema.json` also validate the values with it, as `helm install` does.

Istio's charts keep their defaults under `_internal_defaults_do_not_set` and merge the user's
values over them in a template (zzz_profile.yaml): those defaults count as the chart's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from helm_python import HelmValuesError

from infra.addons.charts import Chart
from infra.helm import archives

# Maps whose keys are the user's (labels, selectors, Kubernetes objects passed through whole).
FREE_FORM = frozenset(
    {
        "annotations",
        "labels",
        "podAnnotations",
        "podLabels",
        "commonLabels",
        "nodeSelector",
        "affinity",
        "tolerations",
        "resources",
        "securityContext",
        "podSecurityContext",
        "containerSecurityContext",
        "storageSpec",
        "env",
        "extraArgs",
        "extraEnv",
        "global",
    }
)
# Per chart: maps keyed by the user's names (the fake GPU operator's pools).
FREE_FORM_PATHS = {
    "fake-gpu-operator": {"topology.nodePools"},
    "istiod": {"meshConfig"},  # Istio's MeshConfig, passed through whole
}
ISTIO_DEFAULTS = "_internal_defaults_do_not_set"
_VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


@cache
def _template_refs(chart: Chart) -> frozenset[str]:
    """Every `.Values.a.b.c` the chart's own templates name, as "a.b.c" (and its prefixes)."""
    refs: set[str] = set()
    for template in archives.load(chart).templates:
        for match in _VALUES_REF.finditer(template["data"]):
            parts = match[1].lstrip(".").split(".")
            refs.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return frozenset(refs)


def _paths(values: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in values.items():
        path = (*prefix, str(key))
        yield path
        if isinstance(value, Mapping):
            yield from _paths(value, path)


def unread_keys(chart: Chart, values: Mapping[str, Any]) -> list[str]:
    """The dotted key paths of `values` that `chart` does not read (outermost only)."""
    defaults = archives.load(chart).merge_values({})
    defaults = {**defaults, **(defaults.get(ISTIO_DEFAULTS) or {})}
    refs = _template_refs(chart)
    free = FREE_FORM_PATHS.get(chart.name, set())
    unread: list[str] = []
    for path in _paths(values):
        if any(path[: len(u.split("."))] == tuple(u.split(".")) for u in unread):
            continue  # inside a key already reported
        node: Any = defaults
        for depth, key in enumerate(path):
            free_form = depth and (path[depth - 1] in FREE_FORM or ".".join(path[:depth]) in free)
            if not isinstance(node, Mapping) or not node or free_form:
                break  # below a scalar, list, null, empty or free-form map: the user's keys
            if key in node:
                node = node[key]
                continue
            if ".".join(path[: depth + 1]) not in refs:
                unread.append(".".join(path[: depth + 1]))
            break
    return unread


def schema_problems(chart: Chart, values: Mapping[str, Any]) -> list[str]:
    """The chart's values.schema.json verdict on `values` (none when it ships no schema)."""
    try:
        archives.load(chart).validate_schema(dict(values))
    except HelmValuesError as err:
        return [str(err)]
    return []
