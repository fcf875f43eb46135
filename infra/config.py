"""The one typed model of a Gantry stack's configuration.

`infra/__main__.py` reads the Pulumi stack config once, validates it here and passes typed
objects down; no component reads config itself. A wrong config raises `ConfigError` with one
line naming the key and what is allowed, before any resource is registered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Kubernetes minor versions Gantry is tested against (kind node images, EKS, kubernetes-validate).
SUPPORTED_K8S_VERSIONS = ("1.31", "1.32", "1.33")

# The Pulumi config namespace (the project name in Pulumi.yaml).
NAMESPACE = "gantry"

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A label/taint key: optional DNS-subdomain prefix, then a name (Kubernetes' qualified name rules).
_QUALIFIED_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

DnsName = Annotated[str, Field(pattern=_DNS_LABEL, max_length=40)]
NonNegInt = Annotated[int, Field(ge=0)]


class ConfigError(ValueError):
    """A stack configuration that Gantry cannot use; the message is one line for the user."""


class _Model(BaseModel):
    # Unknown keys are typos: reject them instead of silently ignoring a setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Taint(_Model):
    """A node taint. In config either a mapping or the kubectl form `key=value:Effect`."""

    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]

    @model_validator(mode="before")
    @classmethod
    def _parse_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            m = re.fullmatch(r"([^=:]+)(?:=([^:]*))?:(\w+)", data.strip())
            if not m:
                raise ValueError(f"taint {data!r} is not of the form key=value:Effect")
            return {"key": m[1], "value": m[2] or "", "effect": m[3]}
        return data

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not _QUALIFIED_KEY.match(v):
            raise ValueError(f"taint key {v!r} is not a valid Kubernetes qualified name")
        return v

    @field_validator("value")
    @classmethod
    def _value(cls, v: str) -> str:
        if not _LABEL_VALUE.match(v):
            raise ValueError(f"taint value {v!r} is not a valid Kubernetes label value")
        return v


class Pool(_Model):
    """A node pool: nodes of one shape. Sizes are node counts; cpu in cores, memory in GiB."""

    name: DnsName
    kind: Literal["cpu", "gpu"]
    # Cloud instance type (EKS); informational for kind/existing.
    instance_type: str = "kind-node"
    # Allocatable per node, used by the schedulability check and the sandbox's Ray node types.
    cpu: Annotated[float, Field(gt=0)]
    memory_gib: Annotated[float, Field(gt=0)]
    gpus_per_node: NonNegInt = 0
    min_size: NonNegInt
    max_size: Annotated[int, Field(ge=1)]
    desired_size: NonNegInt | None = None
    labels: dict[str, str] = {}
    taints: list[Taint] = []

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not _QUALIFIED_KEY.match(key):
                raise ValueError(f"label key {key!r} is not a valid Kubernetes qualified name")
            if not _LABEL_VALUE.match(str(value)):
                raise ValueError(f"label value {value!r} (key {key!r}) is not a valid label value")
        return v

    @model_validator(mode="after")
    def _sizes(self) -> Pool:
        if self.min_size > self.max_size:
            raise ValueError(f"min_size {self.min_size} > max_size {self.max_size}")
        desired = self.desired
        if not self.min_size <= desired <= self.max_size:
            raise ValueError(
                f"desired_size {desired} is outside min_size..max_size "
                f"({self.min_size}..{self.max_size})"
            )
        if self.kind == "gpu" and self.gpus_per_node < 1:
            raise ValueError("a gpu pool needs gpus_per_node >= 1")
        if self.kind == "cpu" and self.gpus_per_node:
            raise ValueError("a cpu pool must have gpus_per_node 0 (use kind: gpu)")
        return self

    @property
    def desired(self) -> int:
        return self.min_size if self.desired_size is None else self.desired_size


class KindSettings(_Model):
    """Local kind cluster (needs Docker and the kind binary)."""

    # kindest/node image tag per Kubernetes minor; override to pin a patch release.
    node_image: str | None = None


class EksSettings(_Model):
    """AWS EKS via pulumi_eks. Never applied in CI."""

    region: str
    vpc_id: str | None = None  # None: pulumi_eks creates a VPC
    subnet_ids: list[str] = []
    # Registry that serving-layer images are pushed to (e.g. an ECR repository URL).
    image_registry: str | None = None


class ExistingSettings(_Model):
    """A cluster that already exists; pools describe its nodes."""

    kubeconfig: str | None = None  # a path; None: the default kubeconfig (~/.kube/config)
    context: str | None = None


class ClusterConfig(_Model):
    provider: Literal["kind", "eks", "existing"]
    name: DnsName = "gantry"
    kubernetes_version: str = "1.33"
    kind: KindSettings = KindSettings()
    eks: EksSettings | None = None
    existing: ExistingSettings = ExistingSettings()

    @field_validator("kubernetes_version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> str:
        v = str(v)
        if v not in SUPPORTED_K8S_VERSIONS:
            raise ValueError(f"unknown Kubernetes version {v!r}; supported: {SUPPORTED_K8S_VERSIONS}")
        return v

    @model_validator(mode="after")
    def _provider_settings(self) -> ClusterConfig:
        if self.provider == "eks" and self.eks is None:
            raise ValueError("provider eks needs an `eks` block with at least `region`")
        return self


class ServiceEntry(_Model):
    """A model service deployed by this stack: `services/<name>/` plus per-stack overrides."""

    enabled: bool = True
    # Pool override; default is the pool in services/<name>/service.yaml.
    pool: DnsName | None = None
    # Deep-merged over services/<name>/service.yaml (same keys as that file).
    overrides: dict[str, Any] = {}


class GantryConfig(_Model):
    """Everything a stack says. Later layers add their own blocks here."""

    cluster: ClusterConfig
    pools: list[Pool] = Field(min_length=1)
    services: dict[DnsName, ServiceEntry] = {}
    # Free-form blocks owned by later layers, validated by their own models.
    platform: dict[str, Any] = {}
    sandbox: dict[str, Any] = {}

    @model_validator(mode="after")
    def _cross_checks(self) -> GantryConfig:
        names = [p.name for p in self.pools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate pool name(s) {dupes}")
        if not any(p.kind == "cpu" for p in self.pools):
            raise ValueError("at least one cpu pool is required (system add-ons run there)")
        for svc, entry in self.services.items():
            if entry.pool is not None and entry.pool not in names:
                raise _KeyedError(
                    f"services.{svc}.pool",
                    f"pool {entry.pool!r} does not exist; pools: {names}",
                )
        return self

    def pool(self, name: str) -> Pool:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(name)


class _KeyedError(ValueError):
    """A cross-field error that knows which key it belongs to."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def format_error(err: ValidationError, prefix: str = NAMESPACE) -> str:
    """One line: the first problem, with its full key (e.g. `gantry:pools[1].max_size`)."""
    first = err.errors()[0]
    ctx_err = (first.get("ctx") or {}).get("error")
    if isinstance(ctx_err, _KeyedError):
        return f"{prefix}:{ctx_err.key}: {ctx_err}"
    key = _loc(tuple(p for p in first["loc"] if p not in {"function-after", "function-before"}))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key (typo?)"
    elif first["type"] == "missing":
        msg = "required key is missing"
    more = len(err.errors()) - 1
    suffix = f" (+{more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{prefix}:{key}: {msg}{suffix}" if key else f"{prefix}: {msg}{suffix}"


def load_config(raw: Mapping[str, Any]) -> GantryConfig:
    """Validate the `gantry:*` keys of a stack (namespace already stripped)."""
    try:
        return GantryConfig.model_validate(dict(raw))
    except ValidationError as err:
        raise ConfigError(format_error(err)) from None


def read_stack_file(path: Path) -> dict[str, Any]:
    """The `gantry:` keys of a `Pulumi.<stack>.yaml`, namespace stripped."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"stack file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: `config` must be a mapping")
    return {
        k.split(":", 1)[1]: v for k, v in config.items() if k.startswith(f"{NAMESPACE}:")
    }


def load_stack_file(path: Path) -> GantryConfig:
    return load_config(read_stack_file(path))
