"""`gantry capacity REPORT --peak-rps N [--stack S] [--out FILE]` (registered by gantry/cli.py).

Right-sizes the service a load test ran against: what one replica sustained within its SLO
(loadtests/sustained.py), sized for a peak on the stack's pool at its prices
(gantry/rightsizing.py). Prints a table and writes the service's `gantry:services.<name>` entry
with the proposal merged into its overrides (default REPORT/overrides-<stack>.yaml). Exit 0
when sized; 2 with one line for anything to fix first (gantry/console.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import yaml
from rich.table import Table

from gantry import project
from gantry.console import console, fail, load_stack, step
from gantry.console import report as report_error
from gantry.errors import ConfigError, GantryError

if TYPE_CHECKING:
    from gantry.pools import Pool
    from gantry.rightsizing import Proposal
    from gantry.service import ServiceSpec
    from gantry.stack import GantryConfig
    from loadtests.sustained import Measurement


def capacity(
    report: Annotated[
        Path, typer.Argument(help="A `gantry loadtest` report folder of a step or ramp run.")
    ],
    peak_rps: Annotated[
        float, typer.Option("--peak-rps", help="The peak load to size for, in requests/s.")
    ],
    stack: Annotated[
        str,
        typer.Option("--stack", "-s", help="Stack to size for (its pools and gantry:prices)."),
    ] = "sandbox",
    stack_file: Annotated[
        Path | None,
        typer.Option("--stack-file", help="Read this stack file instead of Pulumi.<stack>.yaml."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="The override file (default REPORT/overrides-<stack>.yaml)."
        ),
    ] = None,
) -> None:
    """Right-size a service from a load test: target_in_flight, max_replicas, nodes, cost."""
    from gantry.rightsizing import propose, stack_override
    from gantry.service import load_service
    from loadtests.sustained import measure, read_report, steady_seconds

    if peak_rps <= 0:
        fail(f"--peak-rps must be a positive rate in requests/s, not {peak_rps:g}")
    cfg = load_stack(stack, stack_file)
    shown = project.shown(stack_file or project.stack_file(stack))
    try:
        with step(f"Measuring {report}"):
            run = read_report(report)
            name = run.head.service
            entry = cfg.services.get(name)
            if entry is None:
                raise ConfigError(
                    f"service {name!r} (the report's) is not in {shown}; "
                    f"gantry:services: {', '.join(cfg.services) or 'none'}"
                )
            spec = load_service(name, entry, pools=[p.name for p in cfg.pools])
            pool = cfg.pool(spec.pool)
            price = cfg.prices.usd_per_hour(pool, shown)
            measured = measure(run, spec.slo, steady_seconds(run))
            proposal = propose(
                measured.sustained,
                spec,
                pool,
                peak_rps=peak_rps,
                usd_per_hour=price,
                gpu_slices=cfg.platform.time_slicing_replicas,
            )
    except GantryError as err:
        report_error(err)

    console.print(_table(f"{name} on stack {stack}", pool, spec, measured, proposal))
    for line in _notes(cfg, pool, measured, proposal, shown):
        console.print(f"[yellow]note:[/] {line}", soft_wrap=True)
    path = out or report / f"overrides-{stack}.yaml"
    header = [
        f"`gantry capacity` for {name} on stack {stack}, measured in {report} (scenario "
        f"{run.head.scenario}), sized for {peak_rps:g} requests/s + "
        f"{proposal.headroom:.0%} headroom.",
        f"Apply: replace `gantry:services.{name}` in {shown} with the entry below (it keeps the "
        f"entry's other overrides), then `gantry preview --stack {stack}`.",
    ]
    text = "".join(f"# {line}\n" for line in header)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            text + yaml.safe_dump(stack_override(name, entry, proposal), sort_keys=False)
        )
    except OSError as err:
        fail(f"cannot write {path}: {err.strerror}", "pass another file with --out")
    console.print(f"Wrote {path}: replace gantry:services.{name} in {shown} with its entry.")


def _n(x: float) -> str:
    return f"{x:.4g}"


def _table(title: str, pool: Pool, spec: ServiceSpec, m: Measurement, p: Proposal) -> Table:
    from gantry.prices import HOURS_PER_MONTH
    from gantry.rightsizing import TARGET_STEP

    unit = "Serve replica" if m.sustained.unit == "serve-replica" else "pod"
    at = m.plateau
    t = Table("", "proposed", "now", "from", title=title, title_justify="left")
    t.add_row(
        "sustained rate",
        f"{_n(p.rps_per_serve_replica)} requests/s per Serve replica, {_n(p.rps_per_pod)} per pod",
        "",
        f"{at.within} s at {at.users} users on {at.replicas} {unit}s, p99 <= "
        f"{_n(at.p99_max_ms or 0)} ms (SLO {_n(spec.slo.p99_latency_ms)} ms); "
        f"{len(m.plateaus)} plateaus of >= {m.steady_s} s steady",
    )
    bound = f"{_n(m.sustained.rps)}-{_n(m.bound_rps)} per {unit}" if m.bound_rps else "not reached"
    t.add_row(
        "SLO bound",
        bound,
        "",
        "the lowest steady rate over the SLO" if m.bound_rps else "a lower bound (see note)",
    )
    t.add_row(
        "in flight",
        f"{_n(p.in_flight)} per Serve replica",
        "",
        f"Little's law: {_n(p.rps_per_serve_replica)} requests/s x "
        f"{_n(m.sustained.p50_ms)} ms (p50)",
    )
    t.add_row(
        "autoscaling.target_in_flight",
        f"{p.target_in_flight:g}",
        f"{p.now_target_in_flight:g}",
        f"in flight, rounded down to {TARGET_STEP:g}",
    )
    t.add_row(
        "autoscaling.max_replicas",
        f"{p.max_replicas} pods",
        f"{p.now_max_replicas}",
        f"ceil({p.peak_rps:g} requests/s x {1 + p.headroom:g} / {_n(p.rps_per_pod)} per pod)"
        + (f", at least min_replicas {p.min_replicas}" if p.max_replicas == p.min_replicas else ""),
    )
    if spec.resources.gpus:
        t.add_row(
            "GPUs at max_replicas",
            f"{p.gpus_at_max}",
            f"{p.now_max_replicas * spec.resources.gpus}",
            f"{spec.resources.gpus} nvidia.com/gpu per pod",
        )
    t.add_row(
        f"{pool.name} nodes at max_replicas",
        f"{p.nodes_at_max} x {pool.instance_type}",
        f"{p.now_nodes_at_max}",
        f"pods per node (with the sidecar): {p.pods_per_node}; pool max_size {pool.max_size}",
    )
    month = f"{p.usd_per_hour:g} USD/h x {HOURS_PER_MONTH} h per node"
    t.add_row(
        "cost at max_replicas",
        f"{p.usd_per_month_at_max:,.2f} USD/month",
        f"{p.now_usd_per_month_at_max:,.2f}",
        month,
    )
    t.add_row(
        "cost at min_replicas",
        f"{p.usd_per_month_at_min:,.2f} USD/month",
        "",
        f"nodes for min_replicas {p.min_replicas}: {p.nodes_at_min}",
    )
    return t


def _notes(cfg: GantryConfig, pool: Pool, m: Measurement, p: Proposal, shown: str) -> list[str]:
    """What the numbers rest on that the table cannot say."""
    out = []
    if m.bound_rps is None:
        out.append(
            f"no steady load went over the SLO: {_n(m.sustained.rps)} requests/s per "
            "replica is a lower bound; step to more users per replica to find the limit"
        )
    if p.nodes_at_max > pool.max_size:
        i = cfg.pools.index(pool)
        out.append(
            f"pool {pool.name} has max_size {pool.max_size}, {p.nodes_at_max} nodes needed at "
            f"max_replicas: raise gantry:pools[{i}].max_size in {shown}"
        )
    if m.sustained.unit == "serve-replica" and cfg.cluster.provider != "kind":
        out.append(
            f"measured in the sandbox, sized for {cfg.cluster.provider} nodes: the sandbox's "
            f"replicas ran on the sandbox's machine, not on {pool.instance_type}; measure there "
            "(`gantry loadtest step --target URL`) before trusting the numbers"
        )
    return out


def register(app: typer.Typer) -> None:
    app.command("capacity")(capacity)
