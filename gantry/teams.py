"""Teams (`platform/teams.yaml`): a namespace each, its group, the pools it may use, its quota."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import Field, ValidationError, model_validator

from gantry.errors import ConfigError
from gantry.validation import DnsName, KeyedError, NonNegInt, StrictModel, format_error

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
        "kuberay-system",
        "kueue-system",
    }
)

# PriorityClasses (Kubernetes) and WorkloadPriorityClasses (Kueue) of the same names and values:
# higher wins; only `serving` preempts pods. Name -> (value, preempts, what).
PRIORITY_CLASSES: dict[str, tuple[int, bool, str]] = {
    "gantry-serving": (100_000, True, "Online model serving: may preempt batch and preemptible"),
    "gantry-batch": (10_000, False, "Batch work: queues rather than preempting"),
    "gantry-preemptible": (100, False, "Best-effort work: first to be preempted"),
}
SERVING_PRIORITY = "gantry-serving"


class TeamQuota(StrictModel):
    """A team namespace's ResourceQuota: the most all its pods may request together."""

    cpu: Annotated[float, Field(ge=0)]  # cores (requests.cpu)
    memory_gib: Annotated[float, Field(ge=0)]  # GiB (requests.memory)
    pods: NonNegInt  # pods
    gpus: NonNegInt = 0  # GPUs (requests.nvidia.com/gpu; time-sliced GPUs count per slice)


class PoolQuota(StrictModel):
    """What a team's admitted jobs may hold at once on one pool (a Kueue flavor's nominal quota)."""

    cpu: Annotated[float, Field(ge=0)] = 0  # cores (requests.cpu)
    memory_gib: Annotated[float, Field(ge=0)] = 0  # GiB (requests.memory)
    gpus: NonNegInt = 0  # GPUs (requests.nvidia.com/gpu)


class TeamJobs(StrictModel):
    """A team's batch queue (Kueue ClusterQueue on a cluster, the sandbox's job queue locally)."""

    # Nominal quota per pool (by pool name): a job is admitted while its team's admitted jobs
    # plus it fit here, or while it can borrow what other teams leave idle.
    quota: dict[DnsName, PoolQuota] = {}
    # May borrow the cohort's idle quota (Kueue: no borrowingLimit); what is borrowed is
    # reclaimed, by preempting the borrower, when its owner's jobs need it.
    borrowing: bool = True


class Team(StrictModel):
    """A team: a namespace of the same name, bound to its identity-provider group."""

    name: DnsName
    group: Annotated[str, Field(min_length=1)]  # group (as the API server sees it) given the Role
    pools: list[DnsName] = Field(min_length=1)  # pools the team's services may be placed on
    quota: TeamQuota
    jobs: TeamJobs = TeamJobs()

    @model_validator(mode="after")
    def _job_pools(self) -> Team:
        for pool in self.jobs.quota:
            if pool not in self.pools:
                raise KeyedError(
                    f"jobs.quota.{pool}",
                    f"pool {pool!r} is not one of the team's pools {self.pools}",
                    relative=True,
                )
        return self


class ContainerDefaults(StrictModel):
    """LimitRange defaults for containers in team namespaces that set no requests/limits."""

    cpu_request: Annotated[float, Field(gt=0)] = 0.1  # cores
    memory_request_mib: Annotated[int, Field(gt=0)] = 128  # MiB
    cpu_limit: Annotated[float, Field(gt=0)] = 1  # cores
    memory_limit_mib: Annotated[int, Field(gt=0)] = 512  # MiB


class TeamsFile(StrictModel):
    """`platform/teams.yaml`."""

    container_defaults: ContainerDefaults = ContainerDefaults()
    teams: list[Team] = []

    @model_validator(mode="after")
    def _unique(self) -> TeamsFile:
        names = [t.name for t in self.teams]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise KeyedError(f"teams[{i}].name", f"duplicate team {name!r}")
            if name in RESERVED_NAMESPACES:
                raise KeyedError(f"teams[{i}].name", f"{name!r} is a platform namespace")
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
