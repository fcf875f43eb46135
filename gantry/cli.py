"""The `gantry` command line: the one entry point to every engine, each loaded only when used.

Commands: up / preview / destroy (Pulumi Automation API, infra/), render (offline, infra/),
schema (JSON schemas of Gantry's files), and those the other engines register at the bottom,
one line each (sandbox + rollout: sandbox/cli.py; job: sandbox/job_cli.py; loadtest:
loadtests/cli.py; capacity: loadtests/rightsizing_cli.py). Every command module imports its engine
inside the command, so `gantry --help` loads neither Pulumi nor Ray.
Shared helpers: gantry/console.py; exit codes and the error type: gantry/errors.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gantry.console import console, err_console, fail, load_stack, print_error, report
from gantry.errors import EXIT_FAILED, GantryError

app = typer.Typer(
    name="gantry",
    help="Gantry: a reference ML platform (cluster -> platform -> serving) on Ray Serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# `--stack S` reads Pulumi.<S>.yaml; the default is the local kind sandbox stack.
Stack = Annotated[str, typer.Option("--stack", "-s", help="Stack name: reads Pulumi.<stack>.yaml.")]


@app.command()
def up(stack: Stack = "sandbox") -> None:
    """Create or update the stack's cluster, platform and services (`pulumi up`)."""
    from infra.deploy import run

    run("up", stack, checks=lambda: _preflight(stack, "up"))


@app.command()
def preview(stack: Stack = "sandbox") -> None:
    """Show what `up` would change (`pulumi preview`)."""
    from infra.deploy import run

    run("preview", stack, checks=lambda: _preflight(stack, "preview"))


@app.command()
def destroy(stack: Stack = "sandbox") -> None:
    """Delete everything the stack created, the cluster included (`pulumi destroy`)."""
    from infra.deploy import run

    run("destroy", stack)


@app.command()
def render(
    stack: Stack = "sandbox",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        ".gantry/render"
    ),
    stack_file: Annotated[
        Path | None,
        typer.Option("--stack-file", help="Read this stack file instead of Pulumi.<stack>.yaml."),
    ] = None,
) -> None:
    """Write every object the stack would apply: Gantry's own and each Helm release's (rendered
    by real Helm), and every job's RayJob (submitted by teams, never applied by `up`), then
    check them as one set (offline: no Pulumi CLI, no cluster)."""
    from infra.checks.offline import check_apply_set
    from infra.helm.output import write_releases
    from infra.jobs import render_jobs, write_jobs
    from infra.preflight import stop_on_capacity
    from infra.render import run_offline, write_render

    cfg = load_stack(stack, stack_file)
    try:
        index = run_offline(cfg, stack)
        jobs = render_jobs(cfg)
        objects, problems = check_apply_set(
            index, cfg.cluster.kubernetes_version, schemas=False, jobs=jobs
        )
    except GantryError as err:  # found while building (an unreadable kubeconfig, no charts)
        report(err)
    stop_on_capacity(objects, cfg, stack)
    counts = write_render(index, out)
    chart_objects = write_releases(list(objects.releases.values()), out)
    job_count = write_jobs(jobs, out)
    console.print(
        f"Rendered stack [bold]{stack}[/]: {counts['resources']} resources, "
        f"{counts['objects']} Gantry objects, {counts['releases']} Helm releases creating "
        f"{chart_objects} objects, {job_count} jobs' RayJobs -> {out}/"
    )
    if problems:
        for problem in problems:
            err_console.print(f"[bold red]error:[/] {problem}", soft_wrap=True)
        fail(f"{len(problems)} problem(s) in what stack {stack} would apply", code=EXIT_FAILED)


def _preflight(stack: str, operation: str) -> None:
    """The serving layer's schedulability (+ Docker for images) check: after the cheap
    prerequisites, before any change. Imported late: it loads the whole program."""
    from infra.preflight import preflight

    preflight(stack, operation)


SchemaOf = Annotated[
    str,
    typer.Argument(
        help="Which file: service (services/<name>/service.yaml) or job (jobs/<name>/job.yaml)."
    ),
]


@app.command()
def schema(of: SchemaOf = "service") -> None:
    """Print the JSON schema of a Gantry file, for editors and linters."""
    import json

    from gantry.jobs import job_file_schema
    from gantry.service import service_file_schema

    schemas = {"service": service_file_schema, "job": job_file_schema}
    if of not in schemas:
        fail(f"no schema for {of!r}; choose: {', '.join(schemas)}")
    console.print_json(json.dumps(schemas[of]()))


def job_render(
    name: Annotated[str, typer.Argument(help="The job: a folder of jobs/, e.g. digits.")],
    stack: Stack = "sandbox",
    stack_file: Annotated[
        Path | None,
        typer.Option("--stack-file", help="Read this stack file instead of Pulumi.<stack>.yaml."),
    ] = None,
) -> None:
    """Print the RayJob a cluster would queue for this job (`kubectl apply -f -`)."""
    from infra.jobs import render_job_yaml

    cfg = load_stack(stack, stack_file)
    try:
        typer.echo(render_job_yaml(name, cfg, stack), nl=False)
    except GantryError as err:
        report(err)


def main() -> None:
    try:
        app()
    except GantryError as err:  # an expected failure a command did not handle itself
        print_error(str(err), err.hint)
        raise SystemExit(err.exit_code) from None


# Commands owned by other layers register here, one line each.
from loadtests.cli import register as register_loadtest  # noqa: E402
from loadtests.rightsizing_cli import register as register_capacity  # noqa: E402
from sandbox.cli import register as register_sandbox  # noqa: E402  (sandbox + rollout)
from sandbox.job_cli import register as register_job  # noqa: E402

register_sandbox(app)
register_job(app, render=job_render)
register_loadtest(app)
register_capacity(app)
