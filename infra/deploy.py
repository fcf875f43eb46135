"""`gantry up|preview|destroy`: the Pulumi Automation API driving this project's Pulumi.yaml.

State lives in a local file backend under `.gantry/pulumi/` unless PULUMI_BACKEND_URL says
otherwise. Only the sandbox stack gets a default passphrase (its only secret is the kubeconfig of
a throwaway local cluster); every other stack must bring PULUMI_CONFIG_PASSPHRASE(_FILE).
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gantry import project
from gantry.console import command_ok, console, err_console, fail, load_stack, require_binary, step
from gantry.errors import EXIT_FAILED

if TYPE_CHECKING:  # pulumi is imported when needed: failing checks answer in well under 1 s
    from pulumi import automation as auto

Operation = Literal["up", "preview", "destroy"]

SANDBOX_STACK = "sandbox"
# Not a secret: it only encrypts the sandbox's local kind kubeconfig in `.gantry/`.
SANDBOX_PASSPHRASE = "gantry-sandbox"
# Seconds the CLI download may take before we give up and print install instructions.
INSTALL_TIMEOUT_S = 60

PULUMI_INSTALL_HINT = (
    "Install it: `curl -fsSL https://get.pulumi.com | sh` (then add ~/.pulumi/bin to PATH), "
    "see https://www.pulumi.com/docs/install/. Without it, `gantry render` still shows what "
    "would be deployed, and `make sandbox` runs the embedded sandbox."
)
SANDBOX_HINT = (
    "The kind stack needs Docker and kind. Without them, run the embedded sandbox instead "
    "(same services, pools and autoscaling on local Ray): make sandbox"
)


def pulumi_command() -> auto.PulumiCommand:
    """The Pulumi CLI: on PATH, in ~/.pulumi, or downloaded now; else exit 2 with instructions."""
    from pulumi import automation as auto

    try:
        if shutil.which("pulumi"):
            return auto.PulumiCommand()
        home_install = Path.home() / ".pulumi"
        if (home_install / "bin" / "pulumi").is_file():
            return auto.PulumiCommand(root=str(home_install))
    except auto.InvalidVersionError as err:
        fail(f"the installed Pulumi CLI is too old: {err}", PULUMI_INSTALL_HINT)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(INSTALL_TIMEOUT_S)
    try:
        with step("Pulumi CLI not found; downloading it to ~/.pulumi/versions"):
            return auto.PulumiCommand.install()
    except Exception as err:  # any failure means: tell the user how to install it
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        fail(
            f"the Pulumi CLI is not installed and could not be downloaded ({reason}).",
            PULUMI_INSTALL_HINT,
        )
    finally:
        socket.setdefaulttimeout(previous)


def check_kind_prerequisites() -> None:
    """Docker (with a reachable daemon) and kind, or exit 2 pointing at the embedded sandbox."""
    require_binary("docker", "the kind stack runs its nodes as Docker containers", SANDBOX_HINT)
    if not command_ok(["docker", "info"]):
        fail(
            "Docker is installed but its daemon is not reachable (`docker info` failed).",
            SANDBOX_HINT,
        )
    from infra.cluster.kind import KIND_VERSION

    require_binary(
        "kind",
        "the kind stack creates its cluster with kind",
        f"Install kind {KIND_VERSION}: "
        "https://kind.sigs.k8s.io/docs/user/quick-start/#installation. " + SANDBOX_HINT,
    )


def workspace_env(stack: str) -> dict[str, str]:
    """Environment for the Pulumi CLI: file backend in `.gantry/`, passphrase for the sandbox."""
    env = {"PULUMI_SKIP_UPDATE_CHECK": "true"}
    if not os.environ.get("PULUMI_BACKEND_URL"):
        backend = project.state_dir() / "pulumi"
        backend.mkdir(parents=True, exist_ok=True)
        env["PULUMI_BACKEND_URL"] = backend.as_uri()
    has_passphrase = any(
        os.environ.get(k) is not None
        for k in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")
    )
    if not has_passphrase:
        if stack != SANDBOX_STACK:
            fail(
                f"stack {stack!r} encrypts its secrets (the cluster kubeconfig) with a passphrase.",
                "Set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) and run again.",
            )
        env["PULUMI_CONFIG_PASSPHRASE"] = SANDBOX_PASSPHRASE
    return env


def open_stack(stack: str, env: dict[str, str], command: auto.PulumiCommand) -> auto.Stack:
    from pulumi import automation as auto

    work_dir = str(project.root())
    opts = auto.LocalWorkspaceOptions(work_dir=work_dir, env_vars=env, pulumi_command=command)
    try:
        return auto.create_or_select_stack(stack_name=stack, work_dir=work_dir, opts=opts)
    except auto.CommandError as err:
        fail(f"cannot open stack {stack!r}: {_last_line(err)}")


def run(operation: Operation, stack_name: str, checks: Callable[[], None] | None = None) -> None:
    """`pulumi <operation>` on the stack, after the config, the cheap prerequisites (tools,
    passphrase, Pulumi CLI) and then `checks` (slower semantic checks of other layers) pass."""
    cfg = load_stack(stack_name)  # a bad config exits 2 before Pulumi starts
    if cfg.cluster.provider == "kind" and operation != "preview":
        check_kind_prerequisites()
    env = workspace_env(stack_name)
    command = pulumi_command()
    if checks is not None:
        checks()
    stack = open_stack(stack_name, env, command)
    from pulumi import automation as auto

    def show(line: str) -> None:
        console.out(line.rstrip("\n"))

    def show_err(line: str) -> None:
        err_console.out(line.rstrip("\n"))

    try:
        if operation == "up":
            stack.up(on_output=show, on_error=show_err)
        elif operation == "preview":
            stack.preview(on_output=show, on_error=show_err)
        else:
            stack.destroy(on_output=show, on_error=show_err)
    except auto.CommandError as err:
        fail(f"pulumi {operation} failed: {_last_line(err)}", code=EXIT_FAILED)


def _last_line(err: auto.CommandError) -> str:
    """The most telling line of a Pulumi CLI failure (its last non-empty stderr line)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else "see the output above"
