"""Run a serving pod's container on this machine as the Deployment describes it, and report what
a platform engineer sizes a pod by (no Kubernetes needed).

    .venv/bin/python tests/benchmarks/bench_pod_start.py [embedder|classifier] [--replicas N]

The container, its env and its serve.yaml come from the Pulumi program (sandbox stack, under
mocks); tests/infra/serving/pod.py runs it in a private PID, network and mount namespace, where
pod_driver.py waits for readiness, sends a little load, reads every process's PSS and stops it
with the image's STOPSIGNAL. Printed: start -> readiness (what the startupProbe waits for), PSS
of the whole pod by process (Ray + ingress + replicas), and how long the stop took against the
grace period. Needs `unshare` (user namespaces); one run takes a minute or two.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gantry.service import load_service  # noqa: E402
from gantry.stack import load_stack_file  # noqa: E402
from infra.render import run_offline  # noqa: E402
from tests import netns  # noqa: E402
from tests.benchmarks.image_venv import image_venv  # noqa: E402
from tests.infra.serving.pod import pod_inputs, run_pod  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("service", nargs="?", default="embedder")
    parser.add_argument("--replicas", type=int, default=1, help="Serve replicas in the pod")
    parser.add_argument(
        "--dev-venv",
        action="store_true",
        help="run the pod from the dev venv, not a venv of the image's requirements.txt",
    )
    args = parser.parse_args()
    if not netns.available():
        raise SystemExit("needs unshare with user namespaces (tests/netns.py)")
    index = run_offline(load_stack_file(REPO / "Pulumi.sandbox.yaml"), "sandbox")
    container, config = pod_inputs(index.manifests("serving"), args.service, args.replicas)
    with tempfile.TemporaryDirectory(prefix="gp-", dir="/tmp") as tmp:
        bin_dir = None if args.dev_venv else image_venv(args.service)
        result = run_pod(container, config, Path(tmp), bin_dir)
    if "error" in result:
        raise SystemExit(f"the pod failed: {result['error']}")
    spec = load_service(args.service)
    console = Console()
    pss = result["pss_mib_by_process"]
    table = Table(title=f"{args.service} pod, {args.replicas} replica(s): PSS after load")
    table.add_column("process")
    table.add_column("PSS MiB", justify="right")
    for name, mib in sorted(pss.items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{mib:.0f}")
    table.add_row("total", f"{sum(pss.values()):.0f}", style="bold")
    console.print(table)
    budget = spec.probes.startup.period_s * spec.probes.startup.failure_threshold
    console.print(f"ready after {result['ready_s']} s (startupProbe budget {budget} s)")
    console.print(
        f"stopped {result['stop_s']} s after SIGINT, exit {result['exit_code']} (grace after "
        f"preStop: {spec.termination_grace_s - spec.pre_stop_s} s)"
    )


if __name__ == "__main__":
    main()
