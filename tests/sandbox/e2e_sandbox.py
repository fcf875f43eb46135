"""The end-to-end tests' sandbox: both real services with short autoscaling and canary timings,
one for the whole session (bringing one up costs about a minute), shared by tests/sandbox and
tests/loadtests (the `e2e_sandbox` fixture in tests/conftest.py). Timings are shortened through the
stack config (`gantry:sandbox` and per-service `overrides`), never by a test mode in code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gantry.sandbox_state import SandboxState
from sandbox.state import Paths
from tests.sandbox.sandbox_helpers import FAST_SANDBOX, gantry, write_stack

INTERVAL_S = 8  # canary interval in this test's stack (s)

# Short autoscaling and canary timings for the test stack. The p99 bound is loose because this
# machine is shared with other test suites; success-rate thresholds stay as the service sets them.
SERVICES: dict[str, Any] = {
    "embedder": {
        "overrides": {
            "autoscaling": {"scale_down": {"stabilization_s": 5}},
            "canary": {
                "interval": f"{INTERVAL_S}s",
                "threshold": 2,
                "stepWeight": 25,
                "maxWeight": 50,
                "metrics": [
                    {"name": "request-success-rate", "interval": "15s"},
                    {
                        "name": "request-duration",
                        "thresholdRange": {"max": 10000},
                        "interval": "15s",
                    },
                    {"name": "serve-error-rate", "thresholdRange": {"max": 1}, "interval": "15s"},
                ],
                "webhooks": {"load": {"rps": 4, "concurrency": 2}},
            },
        }
    },
    "classifier": {"overrides": {"autoscaling": {"scale_down": {"stabilization_s": 5}}}},
}


class Sandbox:
    def __init__(self, root: Path, stack: Path) -> None:
        self.paths = Paths(root)
        self.stack = stack
        self.args = ["--state-dir", str(root)]
        self.stack_args = ["--stack-file", str(stack)]

    @property
    def state(self) -> SandboxState:
        state = self.paths.read_state()
        assert state is not None
        return state

    def status(self) -> dict[str, Any]:
        r = gantry("sandbox", "status", "--json", *self.args, timeout=60)
        assert r.returncode == 0, r.stderr
        return dict(json.loads(r.stdout))

    def replicas(self, app: str, status: dict[str, Any] | None = None) -> int:
        apps = (status or self.status()).get("applications") or {}
        deps = (apps.get(app) or {}).get("deployments") or {}
        return sum(d["replicas"] for d in deps.values())

    def rollout(self, *args: str, timeout: float = 420) -> Any:
        return gantry("rollout", *args, *self.args, *self.stack_args, timeout=timeout)

    def events(self, service: str) -> list[dict[str, Any]]:
        path = self.paths.rollouts / f"{service}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    @property
    def running(self) -> bool:
        state = self.paths.read_state()
        return state is not None and state.ready

    def up(self) -> None:
        r = gantry("sandbox", "up", *self.stack_args, *self.args, timeout=420)
        assert r.returncode == 0, f"up failed:\n{r.stdout}\n{r.stderr}"

    def down(self) -> None:
        gantry("sandbox", "down", *self.args, timeout=120)


def new_sandbox(tmp: Path) -> Sandbox:
    stack = write_stack(tmp / "Pulumi.e2e.yaml", SERVICES, FAST_SANDBOX)
    return Sandbox(tmp / "state", stack)
