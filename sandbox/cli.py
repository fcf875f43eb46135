"""`gantry sandbox up|status|down` and `gantry rollout` (registered by gantry/cli.py).

Exit codes follow gantry/console.py: 0 done, 1 the operation ran and failed (e.g. a rollout
rolled back), 2 fix something first (port in use, missing binary, already running, bad config).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gantry import project
from gantry.console import console, err_console, fail, load_stack, step

sandbox_app = typer.Typer(
    help="The embedded sandbox: the services, pools, autoscaling and canary policy on local Ray "
    "+ Prometheus (no Docker, no Kubernetes).",
    no_args_is_help=True,
)

Stack = Annotated[str, typer.Option("--stack", "-s", help="Stack name: reads Pulumi.<stack>.yaml.")]
StackFile = Annotated[
    Path | None, typer.Option("--stack-file", help="Read this stack file instead.")
]
StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar="GANTRY_SANDBOX_DIR",
        help="Where the sandbox keeps its state (default: .gantry/sandbox in the project).",
    ),
]


def _paths(state_dir: Path | None):  # -> Paths
    from gantry.sandbox_state import DEFAULT_STATE_DIR
    from sandbox.state import Paths

    return Paths(state_dir or project.root() / DEFAULT_STATE_DIR)


def _plan(stack: str, stack_file: Path | None):  # -> Plan
    from gantry.errors import ConfigError
    from sandbox.lifecycle import Plan

    cfg = load_stack(stack, stack_file)
    try:
        return Plan.from_config(cfg)
    except ConfigError as err:
        fail(str(err))


@sandbox_app.command()
def up(stack: Stack = "sandbox", stack_file: StackFile = None, state_dir: StateDir = None) -> None:
    """Start Ray (pools as Ray node types), Prometheus and the services; print the URLs."""
    from sandbox.errors import SandboxError
    from sandbox.lifecycle import up as sandbox_up

    paths = _paths(state_dir)
    plan = _plan(stack, stack_file)
    try:
        state = sandbox_up(plan, paths, step)
    except SandboxError as err:
        fail(str(err), err.hint)
    except KeyboardInterrupt:
        fail("interrupted: everything `up` had started was stopped", code=130)
    table = Table(title="Gantry sandbox is up", show_header=False, title_justify="left")
    for name, url in state.routes.items():
        table.add_row(f"service {name}", url)
    table.add_row("gateway (HAProxy)", state.urls["serve"])
    table.add_row("Ray Serve (HTTP proxy)", state.urls["serve_proxy"])
    table.add_row("Ray dashboard", state.urls["dashboard"])
    table.add_row("Prometheus", state.urls["prometheus"])
    table.add_row("state file", str(paths.state_file))
    console.print(table)
    console.print(
        "Next: `gantry sandbox status`, `gantry loadtest ...`, "
        "`gantry rollout embedder --to v2 --watch`, and `gantry sandbox down` when done."
    )


@sandbox_app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    state_dir: StateDir = None,
) -> None:
    """Processes, URLs, Serve applications (replicas per version), canary weights, pool nodes."""
    from sandbox.lifecycle import status as sandbox_status

    info = sandbox_status(_paths(state_dir))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    if info.get("problem"):
        # One line that says what is wrong and what recovers it; status exits 1.
        err_console.print(
            f"[bold red]The sandbox is broken:[/] {info['problem']}; "
            "`gantry sandbox up` recovers it (or `gantry sandbox down`).",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    if not info["running"]:
        console.print(f"The sandbox is not running (state dir {info['state_dir']}).")
        return
    _print_status(info)


def _print_status(info: dict[str, Any]) -> None:
    console.print(f"[bold]Gantry sandbox[/] ({'ready' if info['ready'] else 'starting'})")
    for name, url in info["urls"].items():
        console.print(f"  {name:<11} {url}")
    apps = Table(
        "application", "status", "deployment", "replicas", title="Serve", title_justify="left"
    )
    for app, a in (info.get("applications") or {}).items():
        for dep, d in a["deployments"].items():
            apps.add_row(app, a["status"], dep, str(d["replicas"]))
    console.print(apps)
    for svc, r in (info.get("routing") or {}).items():
        split = f"{r['stable']} {100 - r['canary_weight']} %"
        if r.get("canary"):
            split += f", {r['canary']} {r['canary_weight']} %"
        console.print(f"  gateway {svc}: {split}")
    console.print(f"  nodes per pool: {info.get('nodes', {})}")


@sandbox_app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop exactly the processes `up` started (by recorded PID) and free their ports."""
    from sandbox.lifecycle import down as sandbox_down

    paths = _paths(state_dir)
    with step("Stopping the sandbox's processes"):
        n = sandbox_down(paths)
    console.print(f"Stopped {n} processes." if n else "The sandbox was not running.")


@sandbox_app.command()
def fault(
    kind: Annotated[
        str, typer.Argument(help="replica-kill, node-loss or prometheus-down.", show_default=False)
    ],
    target: Annotated[
        str | None,
        typer.Argument(help="replica-kill: a service (embedder); node-loss: a pool (gpu)."),
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Inject a fault into the running sandbox (SIGKILL, as the real failure): rehearse on-call,
    or what the chaos scenarios (`gantry loadtest replica-kill`) do under load."""
    from sandbox.errors import SandboxError
    from sandbox.faults import inject
    from sandbox.lifecycle import running_state

    paths = _paths(state_dir)
    state = running_state(paths)
    if state is None or not state.ready:
        fail("the sandbox is not running", "start it first: gantry sandbox up")
    try:
        hit = inject(kind, target, paths, state)
    except SandboxError as err:
        fail(str(err), err.hint)
    typer.echo(json.dumps({"fault": kind, **hit}))


def rollout(
    service: Annotated[str, typer.Argument(help="Service to roll out, e.g. embedder.")],
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="Version to roll out, e.g. v2. Without it: resume the unfinished rollout."
        ),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch/--detach",
            help="Run in the foreground printing each step (default), or in the background "
            "(events in <state>/rollouts/<service>.jsonl; stopped by `sandbox down`).",
        ),
    ] = True,
    user_config: Annotated[
        str | None,
        typer.Option(
            "--user-config",
            help='JSON merged over the canary\'s user_config, e.g. \'{"faults": {"error_rate": '
            "0.5}}' (TEST-ONLY: rehearse a rollback).",
        ),
    ] = None,
    abort: Annotated[
        bool,
        typer.Option("--abort", help="Roll back the rollout: the stable version at 100 %."),
    ] = False,
    pause: Annotated[
        bool, typer.Option("--pause", help="Hold the rollout where it is (no step, no check).")
    ] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a paused rollout.")] = False,
    stack: Stack = "sandbox",
    stack_file: StackFile = None,
    state_dir: StateDir = None,
) -> None:
    """Canary-roll a service in the sandbox, per its service.yaml `canary` policy; run it again
    to resume a rollout whose driver was killed."""
    from gantry.canary import Outcome
    from sandbox.errors import SandboxError
    from sandbox.lifecycle import running_state
    from sandbox.rollout import request_pause, running_driver, sandbox_driver

    paths = _paths(state_dir)
    state = running_state(paths)
    if state is None or not state.ready:
        fail("the sandbox is not running", "start it first: gantry sandbox up")
    if pause or resume:
        try:
            status = request_pause(paths, service, paused=pause)
        except SandboxError as err:
            fail(str(err), err.hint)
        what = "pauses" if pause else "resumes"
        console.print(f"The {service} rollout to {status.canary} {what} at its next tick.")
        return
    try:
        extra = json.loads(user_config) if user_config else None
    except json.JSONDecodeError as err:
        fail(f"--user-config is not valid JSON: {err}")
    if extra is not None and not isinstance(extra, dict):
        fail("--user-config must be a JSON object")
    if not watch and not abort:
        if (pid := running_driver(paths, service)) is not None:
            fail(f"a rollout driver for {service} is already running (pid {pid})")
        _detach(paths, state, service, sys.argv[1:])
        return
    plan = _plan(stack, stack_file)
    try:
        driver = sandbox_driver(plan, paths, state, service, _print_event)
        result = driver.abort() if abort else driver.run(to, extra)
    except SandboxError as err:
        fail(str(err), err.hint)
    if abort and result is not Outcome.ABORTED:
        console.print(f"{service}: no rollout left; the stable version serves all traffic.")
        return
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _detach(paths: Any, state: Any, service: str, args: list[str]) -> None:
    """Start the same ticker in the background; `sandbox down` stops it with the rest."""
    from sandbox import procs

    argv = [sys.executable, "-c", "from gantry.cli import main; main()", *args, "--watch"]
    log = paths.logs / f"rollout-{service}.log"
    proc = procs.start("rollout", argv, dict(os.environ), log)
    state.procs.append(proc)
    paths.write_state(state)
    console.print(f"Rollout running in the background (pid {proc.pid}); output: {log}")


def _print_event(e: dict[str, Any]) -> None:
    from gantry.canary import Outcome

    style = {Outcome.PROMOTED: "bold green", Outcome.ROLLED_BACK: "bold red",
             Outcome.ABORTED: "bold yellow"}  # fmt: skip
    kind = e["event"]
    if kind == "check":
        mark = "[green]pass[/]" if e["passed"] else "[red]FAIL[/]"
        detail = "; ".join(f"{r['name']}={_value(r)}" for r in e["results"])
        err_console.print(f"  check at {e['canary_weight']:>3} %: {mark}  {detail}")
    elif kind == "weight":
        err_console.print(f"  weight -> canary {e['canary_weight']} %")
    else:
        rest = {k: v for k, v in e.items() if k not in {"ts", "event"}}
        err_console.print(f"[{style.get(kind, 'bold')}]{kind}[/] {rest}")


def _value(result: dict[str, Any]) -> str:
    """A check's value, or why it has none (no data; the query failed)."""
    if result["value"] is None:
        return str(result.get("detail") or "no data")
    return format(result["value"], ".4g")


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")
    app.command("rollout")(rollout)
