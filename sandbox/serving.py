"""The sandbox's Serve applications, written as one declarative Serve config.

Per service: one application per running version (`<service>-<version>`, route prefix
`/_v/<service>-<version>`), built from the service's own `serve.yaml`, with its `autoscaling`
block mapped onto Serve's replica autoscaler and its pool onto `ray_actor_options`. The gateway
(sandbox/gateway.py) splits `/<service>` between them by weight. The whole config is PUT to
Serve's REST API (`/api/serve/applications/`, the same call `serve deploy` makes); Serve applies
only the difference, so adding a canary leaves the stable version's replicas alone.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import requests
from ray._private.ray_constants import WORKER_PROCESS_SETUP_HOOK_ENV_VAR

from gantry.pools import PoolScheduling
from gantry.sandbox_state import Routing, app_name
from gantry.service import ServiceSpec
from gantry.validation import deep_merge
from sandbox import loopback, retry
from sandbox.errors import SandboxError
from sandbox.raycluster import LOOPBACK, pool_resource

# Every sandbox application's workers keep Serve's replica gRPC port on loopback (loopback.py).
# Ray turns `worker_process_setup_hook` into this env var only for a driver's `ray.init`, not
# for an application's runtime_env, so the sandbox sets the variable itself.
LOOPBACK_ENV_VARS = {WORKER_PROCESS_SETUP_HOOK_ENV_VAR: loopback.HOOK}

# Seconds one PUT of the Serve config may take: the first one starts Serve's controller and proxy,
# slow on a busy machine.
DEPLOY_TIMEOUT_S = 180
# The PUT's retries (sandbox/retry.py): CALL's budget after one PUT that timed out (Serve's
# controller is up by then, so the next PUT is quick).
DEPLOY = dataclasses.replace(retry.CALL, budget_s=DEPLOY_TIMEOUT_S + retry.CALL.budget_s)
# Seconds between two looks at Serve's applications while waiting for them.
POLL_S = 1.0


def version_prefix(service: str, version: str) -> str:
    """Route prefix of one version: where the gateway sends `/<service>`, and the base of direct
    requests to a canary (smoke and load webhooks)."""
    return f"/_v/{app_name(service, version)}"


def _template(spec: ServiceSpec) -> dict[str, Any]:
    apps = spec.serve_config.get("applications") or []
    if len(apps) != 1:
        raise ValueError(f"{spec.serve_config_path}: the sandbox expects exactly one application")
    return apps[0]


def version_app(
    spec: ServiceSpec,
    version: str,
    pool: PoolScheduling,
    user_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One version of a service as a Serve application config."""
    app = copy.deepcopy(_template(spec))
    app["name"] = app_name(spec.name, version)
    app["route_prefix"] = version_prefix(spec.name, version)
    app["args"] = {**(app.get("args") or {}), "version": version}
    if spec.serve_config.get("logging_config"):
        app.setdefault("logging_config", spec.serve_config["logging_config"])
    runtime_env = app.setdefault("runtime_env", {})
    runtime_env["env_vars"] = {**(runtime_env.get("env_vars") or {}), **LOOPBACK_ENV_VARS}
    gpus = spec.resources.gpus / spec.replicas_per_pod if pool.is_gpu else 0
    for dep in app["deployments"]:
        # Replicas follow the service's autoscaling block (HPA's job on the cluster).
        dep.pop("num_replicas", None)
        dep["autoscaling_config"] = spec.serve_autoscaling_config()
        opts = dep.setdefault("ray_actor_options", {})
        # The pool resource plays the nodeSelector; GPU pools also hand out their GPUs.
        opts["resources"] = {**(opts.get("resources") or {}), pool_resource(pool.name): 1}
        opts["num_gpus"] = gpus
        if user_config:
            dep["user_config"] = deep_merge(dep.get("user_config") or {}, user_config)
    return app


def serve_document(
    specs: dict[str, ServiceSpec],
    routing: Routing,
    pools: dict[str, PoolScheduling],
    serve_port: int,
) -> dict[str, Any]:
    """The complete Serve config (ServeDeploySchema) for the sandbox's current routing."""
    apps: list[dict[str, Any]] = []
    for name, spec in specs.items():
        r = routing.services[name]
        pool = pools[spec.pool]
        apps.append(version_app(spec, r.stable, pool, r.stable_user_config))
        if r.canary:
            apps.append(version_app(spec, r.canary, pool, r.canary_user_config))
    http: dict[str, Any] = {"host": LOOPBACK, "port": serve_port}
    if (timeout := request_timeout_s(specs)) is not None:
        http["request_timeout_s"] = timeout
    return {
        # One HTTP proxy, on the head, behind the gateway: pool nodes run replicas only.
        "proxy_location": "HeadOnly",
        "http_options": http,
        "applications": apps,
    }


def request_timeout_s(specs: dict[str, ServiceSpec]) -> float | None:
    """One proxy serves every service: the longest request timeout any service's serve.yaml sets."""
    timeouts = [
        float(t)
        for spec in specs.values()
        if (t := (spec.serve_config.get("http_options") or {}).get("request_timeout_s"))
    ]
    return max(timeouts) if timeouts else None


class ServeApi:
    """Serve's REST API on the Ray dashboard (what `serve deploy` / `serve status` use)."""

    def __init__(self, dashboard_url: str) -> None:
        self._url = f"{dashboard_url}/api/serve/applications/"

    def deploy(self, document: dict[str, Any]) -> None:
        """PUT the config. Idempotent (declarative), so transient failures are retried (`DEPLOY`):
        the dashboard answers 500 while its Serve module (re)starts, which takes long when busy.
        Serve's rejection of the config (a 4xx) is reported at once, in its words."""

        def put() -> None:
            requests.put(self._url, json=document, timeout=DEPLOY_TIMEOUT_S).raise_for_status()

        try:
            retry.call(put, f"Serve's REST API ({self._url})", DEPLOY)
        except requests.HTTPError as err:  # a 4xx: not transient (retry.is_transient)
            r = err.response
            assert r is not None  # raise_for_status() raised it
            raise SandboxError(
                f"Serve rejected the config ({r.status_code}): {r.text[:500]}"
            ) from None

    def status(self) -> dict[str, Any]:
        """One GET, not retried: the waits below poll it (a transient failure is "not yet"), and
        `gantry sandbox status` shows at once what it gets."""
        r = requests.get(self._url, timeout=10)
        r.raise_for_status()
        return dict(r.json())

    def wait_running(self, apps: list[str], timeout_s: float) -> dict[str, Any]:
        """Wait until every app in `apps` is RUNNING; raise with Serve's message if one fails."""
        last: dict[str, Any] = {}

        def states() -> dict[str, Any]:
            return {a: (last.get(a) or {}).get("status") for a in apps}

        def running() -> bool:
            nonlocal last
            last = self.status().get("applications") or {}
            failed = [a for a, s in states().items() if s == "DEPLOY_FAILED"]
            if failed:
                msg = (last[failed[0]].get("message") or "").strip().splitlines()
                raise SandboxError(
                    f"Serve app {failed[0]} failed to deploy: {' '.join(msg)[-600:]}"
                )
            return all(s == "RUNNING" for s in states().values())

        retry.until(
            running, timeout_s, "Serve apps not RUNNING", POLL_S, detail=lambda: str(states())
        )
        return last

    def wait_deleted(self, apps: list[str], timeout_s: float) -> None:
        def gone() -> bool:
            present = self.status().get("applications") or {}
            return not any(a in present for a in apps)

        retry.until(gone, timeout_s, f"Serve apps {apps} were not removed", POLL_S)
