"""The one typed model of a Gantry stack's configuration.

`infra/__main__.py` reads the Pulumi stack config once, validates it here and passes typed
objects down; no component reads config itself. A wrong config raises `ConfigError` with one
line naming the key and what is allowed, before any resource is registered.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Kubernetes minor versions Gantry accepts. 1.34-1.36: EKS standard support as of 2026-11 (it
# ends 2026-12-02, 2027-03-27 and 2027-08 respectively; later, EKS bills extended support).
# 1.33: the newest that the pinned Istio 1.27 documents (1.29-1.33); EKS extended support only.
# Each needs a kind node image (infra/cluster/kind.py) and kubernetes-validate schemas.
SUPPORTED_K8S_VERSIONS = ("1.33", "1.34", "1.35", "1.36")

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
            raise _KeyedError(
                "min_size", f"min_size {self.min_size} > max_size {self.max_size}", relative=True
            )
        desired = self.desired
        if not self.min_size <= desired <= self.max_size:
            raise _KeyedError(
                "desired_size",
                f"desired_size {desired} is outside min_size..max_size "
                f"({self.min_size}..{self.max_size})",
                relative=True,
            )
        if self.kind == "gpu" and self.gpus_per_node < 1:
            raise _KeyedError("gpus_per_node", "a gpu pool needs gpus_per_node >= 1", relative=True)
        if self.kind == "cpu" and self.gpus_per_node:
            raise _KeyedError(
                "gpus_per_node",
                "a cpu pool must have gpus_per_node 0 (use kind: gpu)",
                relative=True,
            )
        return self

    @property
    def desired(self) -> int:
        return self.min_size if self.desired_size is None else self.desired_size


class KindSettings(_Model):
    """Local kind cluster (needs Docker and the kind binary)."""

    # None: the kindest/node image pinned (by digest) for `kubernetes_version`
    # in infra/cluster/kind.py; set to pin another build.
    node_image: str | None = None
    # Where `kind create cluster` writes the kubeconfig. None: kind's default (merged into
    # ~/.kube/config as context `kind-<name>`, so kubectl just works).
    kubeconfig: str | None = None


class EksSettings(_Model):
    """AWS EKS via pulumi_eks. Never applied in CI."""

    region: str
    vpc_id: str | None = None  # None: the account's default VPC in `region`
    subnet_ids: list[str] = []  # None/empty: every subnet of the VPC (pulumi_eks' default)
    # Registry that serving-layer images are pushed to (e.g. an ECR repository URL).
    image_registry: str | None = None


class ExistingSettings(_Model):
    """A cluster that already exists; pools describe its nodes."""

    kubeconfig: str | None = None  # a path; None: $KUBECONFIG, else ~/.kube/config
    context: str | None = None  # None: the kubeconfig's current-context
    # StorageClass the cluster already has for persistent volumes (Prometheus).
    storage_class: DnsName = "standard"


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
            raise ValueError(
                f"unknown Kubernetes version {v!r}; supported: {SUPPORTED_K8S_VERSIONS}"
            )
        return v

    @model_validator(mode="after")
    def _provider_settings(self) -> ClusterConfig:
        if self.provider == "eks" and self.eks is None:
            raise _KeyedError(
                "eks", "provider eks needs an `eks` block with at least `region`", relative=True
            )
        return self


class ServiceEntry(_Model):
    """A model service deployed by this stack: `services/<name>/` plus per-stack overrides."""

    enabled: bool = True
    # Pool override; default is the pool in services/<name>/service.yaml.
    pool: DnsName | None = None
    # Deep-merged over services/<name>/service.yaml (same keys as that file).
    overrides: dict[str, Any] = {}


class SandboxPorts(_Model):
    """Loopback ports of the embedded sandbox; 0 picks a free port at `gantry sandbox up`."""

    serve: Annotated[int, Field(ge=0, le=65535)] = 0  # Ray Serve HTTP proxy
    dashboard: Annotated[int, Field(ge=0, le=65535)] = 0  # Ray dashboard + Serve REST API
    prometheus: Annotated[int, Field(ge=0, le=65535)] = 0


class SandboxSettings(_Model):
    """Sizing and timing of the embedded sandbox (`gantry sandbox`, see infra/sandbox).

    Pools keep their real shapes for the cluster; on one small machine each sandbox node
    advertises these small logical resources instead (Ray schedules by logical resources).
    """

    head_cpus: Annotated[float, Field(gt=0)] = 4  # logical CPUs of the head node (the cpu pool)
    node_cpus: Annotated[float, Field(gt=0)] = 1  # logical CPUs of each other pool's node
    object_store_mib: Annotated[int, Field(ge=80)] = 128  # per node (Ray's minimum is ~75 MiB)
    # Ray's autoscaler: seconds between decisions, and how long a node idles before removal.
    autoscaler_interval_s: Annotated[int, Field(ge=1)] = 5
    idle_timeout_s: Annotated[float, Field(gt=0)] = 60
    scrape_interval_s: Annotated[float, Field(gt=0)] = 5  # Prometheus scrape + rule evaluation
    # How often Ray's processes hand their metrics to the node's exporter (Ray's default: 10 s).
    metrics_report_interval_s: Annotated[float, Field(gt=0)] = 5
    ready_timeout_s: Annotated[float, Field(gt=0)] = 240  # `up` gives up after this long
    ports: SandboxPorts = SandboxPorts()


# --- Platform layer (infra/addons): add-on switches and team tenancy from platform/teams.yaml ---

REPO_ROOT = Path(__file__).resolve().parents[1]
# Alert rules: PrometheusRules on a cluster; the sandbox's Prometheus loads the same files.
RULES_DIR = REPO_ROOT / "platform" / "observability" / "rules"
# Namespaces the platform layer owns; a team may not take one of these names.
RESERVED_NAMESPACES = frozenset(
    {
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "istio-system",
        "istio-ingress",
        "monitoring",
        "flagger-system",
        "gpu-system",
    }
)


class TeamQuota(_Model):
    """A team namespace's ResourceQuota: the most all its pods may request together."""

    cpu: Annotated[float, Field(ge=0)]  # cores (requests.cpu)
    memory_gib: Annotated[float, Field(ge=0)]  # GiB (requests.memory)
    pods: NonNegInt  # pods
    gpus: NonNegInt = 0  # GPUs (requests.nvidia.com/gpu; time-sliced GPUs count per slice)


class Team(_Model):
    """A team: a namespace of the same name, bound to its identity-provider group."""

    name: DnsName
    group: Annotated[str, Field(min_length=1)]  # group (as the API server sees it) given the Role
    pools: list[DnsName] = Field(min_length=1)  # pools the team's services may be placed on
    quota: TeamQuota


class ContainerDefaults(_Model):
    """LimitRange defaults for containers in team namespaces that set no requests/limits."""

    cpu_request: Annotated[float, Field(gt=0)] = 0.1  # cores
    memory_request_mib: Annotated[int, Field(gt=0)] = 128  # MiB
    cpu_limit: Annotated[float, Field(gt=0)] = 1  # cores
    memory_limit_mib: Annotated[int, Field(gt=0)] = 512  # MiB


class TeamsFile(_Model):
    """`platform/teams.yaml`."""

    container_defaults: ContainerDefaults = ContainerDefaults()
    teams: list[Team] = []

    @model_validator(mode="after")
    def _unique(self) -> TeamsFile:
        names = [t.name for t in self.teams]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise _KeyedError(f"teams[{i}].name", f"duplicate team {name!r}")
            if name in RESERVED_NAMESPACES:
                raise _KeyedError(f"teams[{i}].name", f"{name!r} is a platform namespace")
        return self


def load_teams(path: Path) -> TeamsFile:
    """Read and validate a teams file; ConfigError names the file and the entry."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: {err}".replace("\n", " ")) from None
    try:
        return TeamsFile.model_validate(raw)
    except ValidationError as err:
        message = format_error(err, prefix=str(path)).replace(f"{path}:", f"{path}: ", 1)
        teams = raw.get("teams") if isinstance(raw, dict) else None
        m = re.search(r"(?<=: )teams\[(\d+)\]", message)
        if m and isinstance(teams, list) and isinstance(teams[int(m[1])], dict):
            # Name the team too: "teams[2] (research).quota.gpus: ...".
            message = message.replace(m[0], f"{m[0]} ({teams[int(m[1])].get('name')})", 1)
        raise ConfigError(message) from None


class AddonToggles(_Model):
    """Optional parts of the platform layer (the mesh, Prometheus and Flagger are not optional)."""

    grafana: bool = True
    alertmanager: bool = True
    loadtester: bool = True  # Flagger's load tester, for canary webhooks
    gpu_metrics: bool = True  # DCGM exporter (EKS) / the fake operator's exporter (kind)


class PlatformConfig(_Model):
    """The `gantry:platform` block; teams come from `teams_file`."""

    teams_file: str = "platform/teams.yaml"  # relative to the repo root
    domain: str = "gantry.local"  # services answer at <service>.<domain> on the ingress gateway
    # GPU add-ons: auto = run:ai's fake GPU operator on kind, NVIDIA's device plugin elsewhere.
    gpu_stack: Literal["auto", "fake", "nvidia", "none"] = "auto"
    # Time-slicing: pods that share one physical GPU (1 = off). Quotas count slices.
    time_slicing_replicas: Annotated[int, Field(ge=1, le=32)] = 1
    addons: AddonToggles = AddonToggles()
    teams: TeamsFile = TeamsFile()

    @model_validator(mode="before")
    @classmethod
    def _read_teams(cls, data: Any) -> Any:
        if isinstance(data, dict) and "teams" not in data:
            path = REPO_ROOT / data.get("teams_file", "platform/teams.yaml")
            try:
                data = {**data, "teams": load_teams(path)}
            except ConfigError as err:
                raise _KeyedError("platform.teams_file", str(err)) from None
        return data


class GantryConfig(_Model):
    """Everything a stack says. Later layers add their own blocks here."""

    cluster: ClusterConfig
    pools: list[Pool] = Field(min_length=1)
    services: dict[DnsName, ServiceEntry] = {}
    platform: PlatformConfig = Field(default_factory=PlatformConfig)  # reads teams.yaml
    sandbox: SandboxSettings = SandboxSettings()

    @model_validator(mode="after")
    def _cross_checks(self) -> GantryConfig:
        names = [p.name for p in self.pools]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise _KeyedError(f"pools[{i}].name", f"duplicate pool name {name!r}")
        if not any(p.kind == "cpu" for p in self.pools):
            raise _KeyedError(
                "pools", "at least one cpu pool is required (system add-ons run there)"
            )
        if self.cluster.provider == "eks":
            for i, p in enumerate(self.pools):
                if p.instance_type == Pool.model_fields["instance_type"].default:
                    raise _KeyedError(
                        f"pools[{i}].instance_type",
                        "an eks pool needs an EC2 instance type (e.g. m6i.xlarge, g5.xlarge)",
                    )
        for i, team in enumerate(self.platform.teams.teams):
            where = f"{self.platform.teams_file}: teams[{i}] ({team.name}).pools"
            for pool in team.pools:
                if pool not in names:
                    raise _KeyedError(
                        "platform.teams_file",
                        f"{where}: pool {pool!r} does not exist; pools: {names}",
                    )
            if team.quota.gpus and not any(self.pool(p).kind == "gpu" for p in team.pools):
                raise _KeyedError(
                    "platform.teams_file", f"{where}: quota.gpus > 0 but none of its pools has GPUs"
                )
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
    """A cross-field error that knows which key it belongs to: `key` is absolute (from the
    stack's top), or with `relative=True` a key inside the model that raised it."""

    def __init__(self, key: str, message: str, relative: bool = False) -> None:
        super().__init__(message)
        self.key = key
        self.relative = relative


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
    key = _loc(tuple(p for p in first["loc"] if p not in {"function-after", "function-before"}))
    if isinstance(ctx_err, _KeyedError):
        full = f"{key}.{ctx_err.key}" if ctx_err.relative and key else ctx_err.key
        return f"{prefix}:{full}: {ctx_err}"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key (typo?)"
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif first["type"] == "string_pattern_mismatch" and first["ctx"]["pattern"] == _DNS_LABEL:
        msg = f"{first['input']!r} is not a DNS label (lowercase letters, digits and '-')"
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
    return {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith(f"{NAMESPACE}:")}


def load_stack_file(path: Path) -> GantryConfig:
    return load_config(read_stack_file(path))


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: mappings recursively, everything else replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
