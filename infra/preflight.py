"""What `gantry preview|up` checks before Pulumi touches anything, for the serving layer.

1. Schedulability: the program rendered offline (the same engine-less run as `gantry render`),
   every pod template placed on the pool model and every quota summed (infra/checks/
   schedulability.py). Problems print one line each and stop the command (exit 2).
2. For `up` with services to build: Docker, which builds the images. (On the kind stack the
   cluster prerequisites already demand it.)
3. The whole apply set (infra/checks/offline.py): every Helm release rendered by real Helm from
   the pinned archives (`make charts` fetches them), values checked against their charts,
   nothing created twice, apply order, monitors, schemas; with every job's RayJob, as teams
   submit them afterwards: each must land on its pools and fit what its queue can admit.
4. Capacity (infra/checks/capacity.py): every pool holds its services at maxReplicas plus a
   canary plus the rolling-update surge, and the teams' job quotas, after DaemonSets (also run
   by `gantry render`).
"""

from __future__ import annotations

from gantry.console import command_ok, console, err_console, fail, load_stack, require_binary
from gantry.errors import ConfigError
from gantry.pools import pool_facts
from gantry.stack import GantryConfig
from infra.checks.apply_set import ApplySet
from infra.checks.capacity import capacity_problems
from infra.checks.offline import check_apply_set
from infra.checks.schedulability import check
from infra.helm.archives import ChartsUnavailable
from infra.jobs import render_jobs
from infra.render import ResourceIndex, run_offline

DOCKER_HINT = (
    "Service images are built with Docker: install it (https://docs.docker.com/engine/install/) "
    "and start its daemon. Without Docker, `make sandbox` runs the same services on local Ray."
)


def schedulability_problems(cfg: GantryConfig, stack: str) -> tuple[ResourceIndex, list[str]]:
    index = run_offline(cfg, stack)
    pools = pool_facts(cfg.pools)
    return index, check(index.manifests(), pools, cfg.platform.time_slicing_replicas)


def preflight(stack: str, operation: str) -> None:
    """Exit 2 with one line per problem if the stack cannot be scheduled or built."""
    cfg = load_stack(stack)
    with console.status("Checking that every pod fits a pool and its quota (offline render)"):
        try:
            index, problems = schedulability_problems(cfg, stack)
        except ConfigError as err:
            fail(str(err))
    _stop_on(
        problems,
        f"{len(problems)} scheduling problem(s) in stack {stack!r}; nothing was applied.",
        "Fix the service's service.yaml, the stack's pools or platform/teams.yaml quotas.",
    )
    console.print(f"[green]ok[/] every pod of stack [bold]{stack}[/] fits a pool and its quota")
    builds_images = bool(index.of_type("gantry:serving:ServiceImage"))
    if operation == "up" and builds_images and cfg.cluster.provider != "kind":
        require_binary("docker", "it builds the service images", DOCKER_HINT)
        if not command_ok(["docker", "info"]):
            fail(
                "Docker is installed but its daemon is not reachable (`docker info`).", DOCKER_HINT
            )
    with console.status("Rendering every Helm release and checking the whole apply set"):
        try:
            jobs = render_jobs(cfg)
            objects, problems = check_apply_set(index, cfg.cluster.kubernetes_version, jobs=jobs)
        except (ChartsUnavailable, ConfigError) as err:  # no charts, a bad job.yaml
            fail(str(err))
    _stop_on(
        problems, f"{len(problems)} problem(s) in what stack {stack!r} would apply; none applied."
    )
    console.print(f"[green]ok[/] every object stack [bold]{stack}[/] would apply checks out")
    stop_on_capacity(objects, cfg, stack)
    console.print(
        f"[green]ok[/] every pool of stack [bold]{stack}[/] holds its services' worst case "
        "and the teams' job quotas"
    )


CAPACITY_HINT = (
    "Each line names the fix; what is counted and why: docs/autoscaling.md (Capacity check)."
)


def stop_on_capacity(objects: ApplySet, cfg: GantryConfig, stack: str) -> None:
    """Exit 2 with one line per pool that cannot hold its services' worst case."""
    problems = capacity_problems((e.manifest for e in objects), cfg)
    _stop_on(
        problems,
        f"{len(problems)} pool(s) of stack {stack!r} cannot hold their services at max replicas "
        "+ canary + surge and the teams' job quotas; nothing was applied.",
        CAPACITY_HINT,
    )


def _stop_on(problems: list[str], message: str, hint: str | None = None) -> None:
    """Print each problem on its own line, then exit 2, when there are any."""
    if problems:
        for line in problems:
            err_console.print(f"  {line}", soft_wrap=True, markup=False)
        fail(message, hint)
