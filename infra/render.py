"""Run the Pulumi program offline and write what it defines.

The program runs under `pulumi.runtime.set_mocks`: no Pulumi CLI, no plugins, no cluster. Every
registered resource lands in a `ResourceIndex` (type, name, parent, inputs). From it this module
writes every Kubernetes object as YAML (one file each, grouped by layer), every Helm release
(`releases.yaml`) and `index.json`. `gantry render` and every layer's tests use this one path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks, rpc
from pulumi.runtime.proto import resource_pb2

from gantry.stack import GantryConfig
from gantry.validation import NAMESPACE

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
K8S_PREFIX = "kubernetes:"
# Kubernetes provider resources that are not API objects.
_NOT_OBJECTS = re.compile(
    r"^(pulumi:providers:|kubernetes:helm\.sh/|kubernetes:yaml/|kubernetes:kustomize/)"
)

# A kubeconfig-shaped string for mocked clusters; never reaches a real API server.
FAKE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:6443"}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
users: [{name: offline, user: {token: offline}}]
"""


@dataclass
class Resource:
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    depends_on: list[str] = field(default_factory=list)
    layer: str = "other"

    @property
    def is_k8s_object(self) -> bool:
        return (
            self.custom and self.type.startswith(K8S_PREFIX) and not _NOT_OBJECTS.match(self.type)
        )

    def manifest(self) -> dict[str, Any]:
        """The Kubernetes object as it would be applied (apiVersion/kind from the type token)."""
        _, group_version, kind = self.type.split(":", 2)
        api_version = group_version.removeprefix("core/")
        body = {k: v for k, v in self.inputs.items() if k not in {"apiVersion", "kind"}}
        meta = dict(body.get("metadata") or {})
        meta.setdefault("name", self.name)
        body["metadata"] = meta
        return {"apiVersion": self.inputs.get("apiVersion", api_version), "kind": kind, **body}


class ResourceIndex:
    """Every resource the program registered, in registration order."""

    def __init__(self, resources: list[Resource]) -> None:
        self.resources = resources
        self._by_urn = {r.urn: r for r in resources}

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.resources)

    def __len__(self) -> int:
        return len(self.resources)

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str, type_: str | None = None) -> Resource:
        found = [r for r in self.resources if r.name == name and (type_ is None or r.type == type_)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r} (type {type_})")
        return found[0]

    def parent_of(self, r: Resource) -> Resource | None:
        return self._by_urn.get(r.parent) if r.parent else None

    def children(self, r: Resource) -> list[Resource]:
        return [c for c in self.resources if c.parent == r.urn]

    def k8s_objects(self, layer: str | None = None) -> list[Resource]:
        return [
            r for r in self.resources if r.is_k8s_object and (layer is None or r.layer == layer)
        ]

    def manifests(self, layer: str | None = None) -> list[dict[str, Any]]:
        return [r.manifest() for r in self.k8s_objects(layer)]

    def helm_releases(self) -> list[Resource]:
        return self.of_type(HELM_RELEASE)

    def find_manifests(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.manifests() if m["kind"] == kind]


class _Recorder(mocks.MockMonitor):
    """The mock monitor, also recording each registration's parent and dependencies."""

    def __init__(self, m: mocks.Mocks) -> None:
        super().__init__(m)
        self.meta: dict[str, _Registration] = {}
        self.order: list[str] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            # Children of the root stack count as top-level (no parent). Match any Stack URN:
            # mocks keep the first run's root Stack for later runs in the same process.
            parent = None if "::pulumi:pulumi:Stack::" in request.parent else request.parent
            self.meta[response.urn] = _Registration(
                parent=parent or None,
                depends_on=list(request.dependencies),
                custom=bool(request.custom),
                inputs=rpc.deserialize_properties(request.object),
            )
            self.order.append(response.urn)
        return response

    # Resource references off: resources passed as inputs (e.g. a cluster handed to pulumi_eks'
    # node groups) travel as their ID/URN. With them on, the mock monitor rehydrates each one
    # through a read on another event loop, which fails for remote components such as eks:*.
    def SupportsFeature(self, request: Any) -> Any:
        if request.id == "resourceReferences":
            return type("SupportsFeatureResponse", (object,), {"hasSupport": False})
        return super().SupportsFeature(request)

    def GetDeploymentInfo(self, request: Any) -> Any:
        info = super().GetDeploymentInfo(request)
        features = [
            f
            for f in info.supportedFeatures
            if f != resource_pb2.RESOURCE_MONITOR_FEATURE_RESOURCE_REFERENCES
        ]
        return resource_pb2.DeploymentInfo(supportedFeatures=features)


@dataclass
class _Registration:
    parent: str | None
    depends_on: list[str]
    custom: bool
    inputs: dict[str, Any]


# Outputs a real provider would compute that the program reads back (keyed by type token).
OutputHook = Callable[[mocks.MockResourceArgs], dict[str, Any]]


def _default_outputs(args: mocks.MockResourceArgs) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.typ == "command:local:Command":
        out["stdout"] = FAKE_KUBECONFIG
    if args.typ.startswith("eks:"):
        out["kubeconfig"] = FAKE_KUBECONFIG
        out["kubeconfigJson"] = json.dumps(yaml.safe_load(FAKE_KUBECONFIG))
    if args.typ.startswith(K8S_PREFIX) and isinstance(args.inputs.get("metadata"), dict):
        meta = dict(args.inputs["metadata"])
        meta.setdefault("name", args.name)
        out["metadata"] = meta
    return out


class _Mocks(mocks.Mocks):
    def __init__(self, hooks: dict[str, OutputHook]) -> None:
        self.hooks = hooks

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = {**args.inputs, **_default_outputs(args)}
        hook = self.hooks.get(args.typ)
        if hook:
            state.update(hook(args))
        return f"{args.name}-id", state

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": "000000000000", "arn": "arn:aws:iam::000000000000:root"}, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": "us-west-2", "region": "us-west-2"}, []
        if args.token.startswith("aws:ec2/getAvailabilityZones"):
            return {"names": ["us-west-2a", "us-west-2b", "us-west-2c"]}, []
        return {}, []


def _layer(urn: str, meta: dict[str, _Registration], types: dict[str, str]) -> str:
    """The layer a resource belongs to: the module of its top-level Gantry component."""
    top = urn
    while top in meta and meta[top].parent:
        top = meta[top].parent  # type: ignore[assignment]
    parts = types.get(top, "").split(":")
    return parts[1] if len(parts) == 3 and parts[0] == NAMESPACE else "other"


def run_offline(
    cfg: GantryConfig,
    stack: str,
    program: Callable[[GantryConfig], Any] | None = None,
    hooks: dict[str, OutputHook] | None = None,
) -> ResourceIndex:
    """Run `program(cfg)` (default: the whole Gantry program) under mocks; index what it made."""
    if program is None:
        from infra.program import build

        program = build
    run_program = program

    recorder_mocks = _Mocks(hooks or {})
    monitor = _Recorder(recorder_mocks)
    mocks.set_mocks(recorder_mocks, project=NAMESPACE, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config({}, [])

    @mocks.test
    def _run() -> None:
        run_program(cfg)

    _run()
    types = {urn: urn.split("::")[2].split("$")[-1] for urn in monitor.order}
    resources = []
    for urn in monitor.order:
        reg = monitor.meta[urn]
        resources.append(
            Resource(
                urn=urn,
                type=types[urn],
                name=urn.split("::")[3],
                parent=reg.parent,
                custom=reg.custom,
                inputs=_plain(reg.inputs),
                depends_on=reg.depends_on,
                layer=_layer(urn, monitor.meta, types),
            )
        )
    return ResourceIndex(resources)


def _plain(value: Any) -> Any:
    """Plain data: secrets unwrapped, and whole floats back to ints (the wire has one number type,
    and the Kubernetes provider sends integers for integral values)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        if value.get("4dabf18193072939515e22adb298388d") == "1b47061264138c4ac30d75fd1eb44270":
            return _plain(value.get("value"))
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def object_file_name(m: dict[str, Any]) -> str:
    meta = m["metadata"]
    ns = meta.get("namespace")
    stem = f"{m['kind'].lower()}-{ns + '-' if ns else ''}{meta['name']}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) + ".yaml"


def release_summary(r: Resource) -> dict[str, Any]:
    repo = (r.inputs.get("repositoryOpts") or {}).get("repo")
    return {
        "name": r.inputs.get("name", r.name),
        "namespace": r.inputs.get("namespace"),
        "chart": r.inputs.get("chart"),
        "version": r.inputs.get("version"),
        "repo": repo,
        "layer": r.layer,
        "values": r.inputs.get("values") or {},
        "skip_crds": bool(r.inputs.get("skipCrds")),
    }


def write_render(index: ResourceIndex, out: Path) -> dict[str, int]:
    """Write objects, releases and the index under `out`; return counts for the CLI to print."""
    out.mkdir(parents=True, exist_ok=True)
    objects = index.k8s_objects()
    for r in objects:
        m = r.manifest()
        target = out / r.layer / object_file_name(m)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(m, sort_keys=False))
    releases = [release_summary(r) for r in index.helm_releases()]
    (out / "releases.yaml").write_text(yaml.safe_dump(releases, sort_keys=False))
    parents = {r.urn: index.parent_of(r) for r in index}
    rows = [
        {
            "type": r.type,
            "name": r.name,
            "parent": p.name if (p := parents[r.urn]) else None,
            "layer": r.layer,
            "inputs": r.inputs,
        }
        for r in index
    ]
    (out / "index.json").write_text(json.dumps(rows, indent=1, sort_keys=True, default=str))
    return {"resources": len(index), "objects": len(objects), "releases": len(releases)}
