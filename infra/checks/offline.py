"""All offline checks of what `pulumi up` would apply, as one call for the CLI and the tests.

    objects, problems = check_apply_set(index, "1.34", jobs=render_jobs(cfg))

Renders every Helm release with real Helm, then checks the whole set: values against their
charts, nothing created twice, apply order, monitors that scrape something, and (optionally,
it takes seconds) every object's schema. The jobs' RayJobs, which teams submit once the set is
applied, are checked with it: schema, what they need (queue, priority, volume), and that their
queues can admit them (infra/checks/jobs.py). One line per problem; empty means all good.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from gantry import project
from infra.addons.charts import addon_of
from infra.checks.apply_order import duplicates, missing_before, release_namespaces
from infra.checks.apply_set import ApplySet, releases_of
from infra.checks.chart_values import schema_problems, unread_keys
from infra.checks.jobs import job_problems
from infra.checks.monitors import monitor_problems
from infra.checks.schemas import crd_schemas, validate_objects
from infra.helm.template import RenderedRelease
from infra.jobs.rayjob import RenderedJob
from infra.render import ResourceIndex


def _has_path(data: Any, path: list[str]) -> bool:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def _where(addon: str, path: str, root: Path) -> str:
    """The values file(s) that set `path`, else the code that computes it."""
    files = [
        f
        for f in sorted((root / addon).glob("values*.yaml"))
        if _has_path(yaml.safe_load(f.read_text()) or {}, path.split("."))
    ]
    rel = [str(f.relative_to(root.parent)) for f in files]
    return ", ".join(rel) or f"computed values of {addon} (infra/addons/)"


def values_problems(releases: dict[str, RenderedRelease], root: Path | None = None) -> list[str]:
    root = root or project.platform_dir()
    problems = []
    for rel in releases.values():
        pinned = rel.inputs.pinned
        addon = addon_of(pinned)
        for path in unread_keys(pinned, rel.inputs.values):
            problems.append(
                f"{_where(addon, path, root)}: values key {path!r} is not read by chart "
                f"{pinned.name} {pinned.version} (release {rel.inputs.name})"
            )
        for err in schema_problems(pinned, rel.inputs.values):
            problems.append(f"release {rel.inputs.name}: values.schema.json: {err}")
    return problems


def check_apply_set(
    index: ResourceIndex,
    kubernetes_version: str,
    schemas: bool = True,
    jobs: Sequence[RenderedJob] = (),
) -> tuple[ApplySet, list[str]]:
    releases = releases_of(index, kubernetes_version)
    return check_rendered(index, releases, kubernetes_version, schemas, jobs)


def check_rendered(
    index: ResourceIndex,
    releases: dict[str, RenderedRelease],
    kubernetes_version: str,
    schemas: bool = True,
    jobs: Sequence[RenderedJob] = (),
) -> tuple[ApplySet, list[str]]:
    """`check_apply_set` on releases already rendered (by `releases_of`)."""
    objects = ApplySet(index, releases, [(j.manifest, j.source) for j in jobs])
    problems = [
        *values_problems(releases),
        *duplicates(objects),
        *release_namespaces(objects),
        *missing_before(objects),
        *monitor_problems(objects),
        *job_problems((e.manifest for e in objects if e.stage != "submitted"), jobs),
    ]
    if schemas:
        # The CRDs in full (the set holds them without their schemas).
        crds = [crd for rel in releases.values() for crd in rel.crds]
        manifests = [*(e.manifest for e in objects if e.stage != "crds"), *crds]
        problems += validate_objects(manifests, kubernetes_version, crds=crd_schemas(manifests))
    return objects, problems
