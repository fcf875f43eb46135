"""`gantry loadtest <scenario> [--target URL] [--ui]` (registered by gantry/cli.py).

Exit codes follow gantry/console.py: 0 every expectation held; 1 the run happened and an
expectation failed or it stopped early (target failing mid-run); 2 nothing was loaded (bad
scenario, no sandbox, a dead target, a remote URL without --target).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from gantry import project
from gantry.console import console, fail
from gantry.errors import EXIT_FAILED, EXIT_OK


def loadtest(
    scenario: Annotated[
        str, typer.Argument(help="A scenario name in loadtests/scenarios/ (e.g. step) or a path.")
    ],
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="Service URL to load instead of the scenario's (the only way to a remote host).",
        ),
    ] = None,
    ui: Annotated[
        bool, typer.Option("--ui", help="Open Locust's web UI on 127.0.0.1:8089 instead.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the run's report (default .gantry/loadtests/)."),
    ] = None,
    stack_file: Annotated[
        Path | None,
        typer.Option(
            "--stack-file",
            help="The stack file the sandbox was started with (for the rollout's canary policy).",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            envvar="GANTRY_SANDBOX_DIR",
            help="The sandbox's state folder (default: .gantry/sandbox in the project).",
        ),
    ] = None,
) -> None:
    """Load-test a service: Locust load, platform observers, expectations, report, verdict."""
    from gantry.sandbox_state import DEFAULT_STATE_DIR
    from loadtests.report import render_verdict
    from loadtests.runner import TargetError, resolve_target, run, run_ui
    from loadtests.scenario import ScenarioError, load_scenario

    root = project.root()
    try:
        scn = load_scenario(scenario)
        tgt = resolve_target(scn, target, state_dir or root / DEFAULT_STATE_DIR, stack_file)
    except (ScenarioError, TargetError) as err:
        fail(str(err))
    folder = out or root / ".gantry" / "loadtests" / f"{scn.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if ui:
        console.print(f"Locust UI: http://127.0.0.1:8089 · target {tgt.host} · Ctrl-C to stop")
        raise typer.Exit(run_ui(scn, tgt, folder))
    console.print(
        f"[bold]{scn.name}[/]: {scn.service} @ {tgt.host} · up to {scn.shape.max_users} users, "
        f"≤ {scn.planned_s:.0f} s · observer: {tgt.observer.name}"
    )
    if scn.rollout and tgt.rollout_cmd is None:
        console.print(
            f"[yellow]note:[/] start the rollout to {scn.rollout.to} yourself at "
            f"{scn.rollout.at_s:g} s (on a cluster: `gantry up` with the new version); the "
            "observer follows Flagger's Canary"
        )
    try:
        summary = run(scn, tgt, folder, console)
    except TargetError as err:
        fail(f"{err} (no load was sent)")
    render_verdict(summary, folder, console)
    raise typer.Exit(EXIT_OK if summary.passed else EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("loadtest")(loadtest)
