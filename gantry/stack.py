"""The one typed model of a Gantry stack (`Pulumi.<stack>.yaml`, the `gantry:` keys).

The CLI and `infra/__main__.py` read a stack once, validate it here and pass typed objects
down; no component reads config itself. A wrong config raises `ConfigError` with one line naming
the key and what is allowed, before any resource is registered. Validators do no I/O: the
loader reads `teams.yaml` and hands it in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from gantry import project
from gantry.errors import ConfigError
from gantry.pools import Pool, autoscaling_of, check_autoscaling
from gantry.prices import Prices
from gantry.teams import TeamsFile, load_teams
from gantry.validation import (
    NAMESPACE,
    DnsName,
    KeyedError,
    StrictModel,
    format_error,
)

# Kubernetes minor versions Gantry accepts. 1.34-1.36: EKS standard support as of 2026-11 (it
# ends 2026-12-02, 2027-03-27 and 2027-08 respectively; later, EKS bills extended support).
# 1.33: the newest that the pinned Istio 1.27 documents (1.29-1.33); EKS extended support only.
# Each needs a kind node image (infra/cluster/kind.py) and kubernetes-validate schemas.
SUPPORTED_K8S_VERSIONS = ("1.33", "1.34", "1.35", "1.36")


class KindSettings(StrictModel):
    """Local kind cluster (needs Docker and the kind binary)."""

    # None: the kindest/node image pinned (by digest) for `kubernetes_version`
    # in infra/cluster/kind.py; set to pin another build.
    node_image: str | None = None
    # Where `kind create cluster` writes the kubeconfig. None: kind's default (merged into
    # ~/.kube/config as context `kind-<name>`, so kubectl just works).
    kubeconfig: str | None = None


class EksSettings(StrictModel):
    """AWS EKS via pulumi_eks. Never applied in CI."""

    region: str
    vpc_id: str | None = None  # None: the account's default VPC in `region`
    subnet_ids: list[str] = []  # None/empty: every subnet of the VPC (pulumi_eks' default)
    # Registry that serving-layer images are pushed to (e.g. an ECR repository URL).
    image_registry: str | None = None


class ExistingSettings(StrictModel):
    """A cluster that already exists; pools describe its nodes."""

    kubeconfig: str | None = None  # a path; None: $KUBECONFIG, else ~/.kube/config
    context: str | None = None  # None: the kubeconfig's current-context
    # StorageClass the cluster already has for persistent volumes (Prometheus).
    storage_class: DnsName = "standard"


class ClusterConfig(StrictModel):
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
            raise KeyedError(
                "eks", "provider eks needs an `eks` block with at least `region`", relative=True
            )
        return self


class ServiceEntry(StrictModel):
    """A model service deployed by this stack: `services/<name>/` plus per-stack overrides."""

    enabled: bool = True
    # Pool override; default is the pool in services/<name>/service.yaml.
    pool: DnsName | None = None
    # Deep-merged over services/<name>/service.yaml (same keys as that file).
    overrides: dict[str, Any] = {}


class SandboxPorts(StrictModel):
    """Loopback ports of the embedded sandbox; 0 picks a free port at `gantry sandbox up`."""

    serve: Annotated[int, Field(ge=0, le=65535)] = 0  # the gateway (HAProxy) users reach
    dashboard: Annotated[int, Field(ge=0, le=65535)] = 0  # Ray dashboard + Serve REST API
    prometheus: Annotated[int, Field(ge=0, le=65535)] = 0


class SandboxSettings(StrictModel):
    """Sizing and timing of the embedded sandbox (`gantry sandbox`, see sandbox).

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


class AddonToggles(StrictModel):
    """Optional parts of the platform layer (the mesh, Prometheus and Flagger are not optional)."""

    grafana: bool = True
    alertmanager: bool = True
    loadtester: bool = True  # Flagger's load tester, for canary webhooks
    gpu_metrics: bool = True  # DCGM exporter (EKS) / the fake operator's exporter (kind)


class PlatformConfig(StrictModel):
    """The `gantry:platform` block; teams come from `teams_file`."""

    teams_file: str = "platform/teams.yaml"  # relative to the project root
    domain: str = "gantry.local"  # services answer at <service>.<domain> on the ingress gateway
    # GPU add-ons: auto = run:ai's fake GPU operator on kind, NVIDIA's device plugin elsewhere.
    gpu_stack: Literal["auto", "fake", "nvidia", "none"] = "auto"
    # Time-slicing: pods that share one physical GPU (1 = off). Quotas count slices.
    time_slicing_replicas: Annotated[int, Field(ge=1, le=32)] = 1
    # The ReadWriteMany StorageClass the teams' job volumes (`job-storage`, docs/jobs.md) use
    # where the cluster provider gives none: eks (e.g. an EFS class of the EFS CSI driver, both
    # yours to install) and existing clusters; required there once a team has a `jobs.quota`.
    # kind has its own (static volumes on a folder all nodes share): not allowed there.
    job_storage_class: DnsName | None = None
    addons: AddonToggles = AddonToggles()
    teams: TeamsFile = TeamsFile()


class GantryConfig(StrictModel):
    """Everything a stack says. Later layers add their own blocks here."""

    cluster: ClusterConfig
    pools: list[Pool] = Field(min_length=1)
    services: dict[DnsName, ServiceEntry] = {}
    platform: PlatformConfig = PlatformConfig()  # `teams` read by load_config
    sandbox: SandboxSettings = SandboxSettings()
    prices: Prices = Prices()  # node prices for cost estimates (gantry/prices.py)

    @model_validator(mode="after")
    def _cross_checks(self) -> GantryConfig:
        names = [p.name for p in self.pools]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise KeyedError(f"pools[{i}].name", f"duplicate pool name {name!r}")
        if not any(p.kind == "cpu" for p in self.pools):
            raise KeyedError(
                "pools", "at least one cpu pool is required (system add-ons run there)"
            )
        if self.cluster.provider == "eks":
            for i, p in enumerate(self.pools):
                if p.instance_type == Pool.model_fields["instance_type"].default:
                    raise KeyedError(
                        f"pools[{i}].instance_type",
                        "an eks pool needs an EC2 instance type (e.g. m6i.xlarge, g5.xlarge)",
                    )
        for i, p in enumerate(self.pools):
            check_autoscaling(f"pools[{i}]", p, self.cluster.provider)
        eks = self.cluster.eks
        provider = self.cluster.provider
        karpenter = [p.name for p in self.pools if autoscaling_of(p, provider) == "karpenter"]
        if eks is not None and karpenter and not eks.subnet_ids:
            raise KeyedError(
                "cluster.eks.subnet_ids",
                f"pools {karpenter} use karpenter: list the cluster's subnets (Gantry tags them "
                "karpenter.sh/discovery so that Karpenter launches nodes there)",
            )
        for i, team in enumerate(self.platform.teams.teams):
            where = f"{self.platform.teams_file}: teams[{i}] ({team.name}).pools"
            for pool in team.pools:
                if pool not in names:
                    raise KeyedError(
                        "platform.teams_file",
                        f"{where}: pool {pool!r} does not exist; pools: {names}",
                    )
            if team.quota.gpus and not any(self.pool(p).kind == "gpu" for p in team.pools):
                raise KeyedError(
                    "platform.teams_file", f"{where}: quota.gpus > 0 but none of its pools has GPUs"
                )
            for pool, quota in team.jobs.quota.items():
                if quota.gpus and self.pool(pool).kind != "gpu":
                    raise KeyedError(
                        "platform.teams_file",
                        f"{self.platform.teams_file}: teams[{i}] ({team.name}).jobs.quota.{pool}"
                        f".gpus: {quota.gpus} GPUs on pool {pool!r}, which has none",
                    )
        self._check_job_storage()
        for svc, entry in self.services.items():
            if entry.pool is not None and entry.pool not in names:
                raise KeyedError(
                    f"services.{svc}.pool",
                    f"pool {entry.pool!r} does not exist; pools: {names}",
                )
        return self

    def _check_job_storage(self) -> None:
        """kind makes its own job storage class; every other provider needs one named as soon
        as a team runs jobs, or their claims stay Pending and so do the jobs' pods."""
        key, storage_class = "platform.job_storage_class", self.platform.job_storage_class
        if self.cluster.provider == "kind":
            if storage_class is not None:
                raise KeyedError(
                    key, "kind has its own job storage class (a folder all nodes share): remove it"
                )
            return
        job_teams = [t.name for t in self.platform.teams.teams if t.jobs.quota]
        if job_teams and storage_class is None:
            raise KeyedError(
                key,
                f"teams {job_teams} have a jobs.quota: set it to a ReadWriteMany StorageClass "
                f"of the cluster for their job-storage volumes (on eks an EFS class such as "
                f"efs-sc, from the EFS CSI driver you install: docs/jobs.md)",
            )

    def pool(self, name: str) -> Pool:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(name)


def load_config(raw: Mapping[str, Any], root: Path | None = None) -> GantryConfig:
    """Validate the `gantry:*` keys of a stack (namespace already stripped), with the teams of
    the `platform.teams_file` it names, read from the project `root` (default: project.root())."""
    raw = dict(raw)
    platform = raw.get("platform") or {}
    if isinstance(platform, Mapping):
        if "teams" in platform:
            raise ConfigError(
                f"{NAMESPACE}:platform.teams: unknown key (teams are read from teams_file)"
            )
        teams_file = platform.get("teams_file", PlatformConfig.model_fields["teams_file"].default)
        try:
            teams = load_teams((root or project.root()) / str(teams_file))
        except ConfigError as err:
            raise ConfigError(f"{NAMESPACE}:platform.teams_file: {err}", err.hint) from None
        raw["platform"] = {**platform, "teams": teams}
    try:
        return GantryConfig.model_validate(raw)
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


def load_stack_file(path: Path, root: Path | None = None) -> GantryConfig:
    """A validated stack file; its teams file is read from `root` (default: project.root())."""
    return load_config(read_stack_file(path), root)
