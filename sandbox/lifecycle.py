"""`up`, `down` and `status` of the embedded sandbox (the CLI in cli.py only presents them).

`up`: Ray head (the cpu pool) with the autoscaler config for the other pools -> Prometheus ->
the gateway (HAProxy: each service's weighted split, gateway.py) -> the services' Serve
applications -> readiness through the gateway. PIDs are
recorded in `state.json` as soon as a process starts, and a failed `up` stops what it started,
so no step leaves an orphan. `down` stops exactly the recorded processes and their sessions.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from gantry.capacity import Demand
from gantry.errors import ConfigError
from gantry.pools import PoolScheduling, pool_facts
from gantry.sandbox_state import Proc, Routing, SandboxState, ServiceRouting
from gantry.service import ServiceSpec, load_services
from gantry.stack import GantryConfig, SandboxSettings
from sandbox import capacity, gateway, procs, prometheus, raycluster, retry
from sandbox import ports as portlib
from sandbox.errors import SandboxError
from sandbox.raycluster import LOOPBACK
from sandbox.serving import ServeApi, request_timeout_s, serve_document
from sandbox.state import Paths

Step = Callable[[str], AbstractContextManager[None]]


@contextlib.contextmanager
def _quiet_step(_: str) -> Iterator[None]:
    yield


@dataclass(frozen=True)
class Plan:
    """What `up` builds, derived once from the stack config."""

    settings: SandboxSettings
    pools: dict[str, PoolScheduling]
    head: PoolScheduling
    specs: dict[str, ServiceSpec]
    job_quotas: tuple[Demand, ...] = ()  # the teams' job quotas, held beside services

    @classmethod
    def from_config(cls, cfg: GantryConfig, services_dir: Path | None = None) -> Plan:
        pools = pool_facts(cfg.pools)
        specs = load_services(cfg, services_dir) if services_dir else load_services(cfg)
        quotas = capacity.job_quotas(cfg.platform.teams, cfg.platform.teams_file)
        return cls(cfg.sandbox, pools, raycluster.head_pool(pools), specs, tuple(quotas))

    def serve_document(self, routing: Routing, serve_port: int) -> dict[str, Any]:
        return serve_document(self.specs, routing, self.pools, serve_port)


# Recorded processes that end by design: a detached rollout driver.
MAY_EXIT = {"rollout"}
# Processes `up` restarts alone: their config and data are on disk; Ray and Serve run on.
RESTARTABLE = {"prometheus", "gateway"}


def exited(state: SandboxState) -> list[str]:
    """The recorded processes that should run and do not."""
    return [p.name for p in state.procs if p.name not in MAY_EXIT and not procs.alive(p)]


def problem(state: SandboxState) -> str | None:
    """What is wrong with a recorded sandbox, in one line; None when every process runs."""
    dead = exited(state)
    if not dead:
        return None
    if len(dead) == len([p for p in state.procs if p.name not in MAY_EXIT]):
        return "every process has exited (stale state: a reboot, or killed)"
    names = ", ".join(f"{p.name} (pid {p.pid})" for p in state.procs if p.name in dead)
    return f"{names} exited"


def _start_prometheus(paths: Paths, state: SandboxState, prom_bin: str) -> None:
    """Start Prometheus on its recorded port with its written config and data (kept on a
    restart), record it, and wait until it is ready."""
    log = paths.logs / "prometheus.log"
    data = paths.prometheus_dir / "data"
    argv = prometheus.argv(prom_bin, paths.prometheus_config, data, state.ports["prometheus"])
    state.procs = [p for p in state.procs if p.name != "prometheus"]
    state.procs.append(procs.start("prometheus", argv, {}, log))
    paths.write_state(state)
    try:
        prometheus.wait_ready(state.urls["prometheus"], 60)
    except SandboxError as err:
        raise SandboxError(f"{err}; see {log}") from None


def _start_gateway(paths: Paths, state: SandboxState, haproxy_bin: str) -> None:
    """Start HAProxy with its written config and maps, record it, wait until it routes."""
    log = paths.logs / "gateway.log"
    state.procs = [p for p in state.procs if p.name != "gateway"]
    state.procs.append(procs.start("gateway", paths.gateway.argv(haproxy_bin), {}, log))
    paths.write_state(state)
    paths.gateway.wait_ready(30, f"see {log}")


def _recover(
    existing: SandboxState, paths: Paths, step: Step, prom_bin: str, haproxy_bin: str
) -> bool:
    """What `up` does with a recorded sandbox: refuse a healthy one; restart a dead Prometheus
    or gateway alone (True: the sandbox runs again); clear a broken or stale one (False: start
    anew), leaving no process of it behind."""
    dead = exited(existing)
    if not dead and existing.ready:
        raise SandboxError(
            f"the sandbox is already running (state in {paths.state_file})",
            "use it (`gantry sandbox status`) or stop it first: gantry sandbox down",
        )
    if existing.ready and set(dead) <= RESTARTABLE:
        with step(f"Restarting the sandbox's {', '.join(dead)} (the rest runs on)"):
            if "prometheus" in dead:
                _start_prometheus(paths, existing, prom_bin)
            if "gateway" in dead:
                _start_gateway(paths, existing, haproxy_bin)
        return True
    # Broken (its Ray head died) or stale (a reboot): stop what is left of it, start anew.
    with step(f"Clearing the previous sandbox ({problem(existing) or 'never became ready'})"):
        procs.stop(existing.procs)
        paths.state_file.unlink(missing_ok=True)
    return False


def running_state(paths: Paths) -> SandboxState | None:
    """The recorded state if any recorded process still runs."""
    state = paths.read_state()
    if state and any(procs.alive(p) for p in state.procs):
        return state
    return None


def _wait_http(
    url: str, timeout_s: float, what: str, log: Path | None = None, proc: Proc | None = None
) -> None:
    def answers() -> bool:
        if proc is not None and not procs.alive(proc):
            raise SandboxError(f"{what} exited while starting: {_last_line(log)}; see {log}")
        # `ray start` prints this once its node registered; the dashboard answers earlier.
        started = log is None or proc is None or RAY_STARTED in log.read_text(errors="replace")
        # Any answer but 200 is "not yet" (a model still loading, a route not there yet).
        return started and requests.get(url, timeout=3).status_code == 200

    where = f"see {log}" if log else ""
    retry.until(answers, timeout_s, f"{what} did not come up", 0.5, detail=where)


RAY_STARTED = "Ray runtime started"


def _last_line(log: Path | None) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log and log.exists() else []
    return lines[-1][-300:] if lines else "no output"


def check_capacity(plan: Plan) -> None:
    """Raise ConfigError, one line per pool, where Ray's node types cannot hold the services'
    worst case (sandbox/capacity.py); before anything starts."""
    problems = capacity.capacity_problems(plan.specs, plan.pools, plan.settings, plan.job_quotas)
    if problems:
        raise ConfigError(
            "the sandbox's pools cannot hold their services at max replicas + a canary, and "
            "the teams' job quotas:\n  " + "\n  ".join(problems),
            "what is counted and why: docs/autoscaling.md (Capacity check)",
        )


def up(plan: Plan, paths: Paths, step: Step = _quiet_step) -> SandboxState:
    check_capacity(plan)
    paths.root.mkdir(parents=True, exist_ok=True)
    with paths.lock.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SandboxError(
                f"another `gantry sandbox up` is running on {paths.root}", "wait for it to finish"
            ) from None
        return _up_locked(plan, paths, step)


def _up_locked(plan: Plan, paths: Paths, step: Step) -> SandboxState:
    prom_bin = prometheus.binary()
    if prom_bin is None:
        raise SandboxError("`prometheus` is not installed (not on PATH)", prometheus.INSTALL_HINT)
    haproxy_bin = gateway.binary()
    if haproxy_bin is None:
        raise SandboxError("HAProxy (the sandbox's gateway) is not installed", gateway.INSTALL_HINT)
    existing = paths.read_state()
    if existing is not None and _recover(existing, paths, step, prom_bin, haproxy_bin):
        return existing
    s = plan.settings
    try:
        ports = portlib.allocate(
            {
                "serve": s.ports.serve,  # the gateway: what users and load tests reach
                "serve_proxy": 0,  # Serve's own HTTP proxy, behind the gateway
                "dashboard": s.ports.dashboard,
                "prometheus": s.ports.prometheus,
                "gcs": 0,
                "agent": 0,
                "ray_client": 0,
                "metrics": 0,
                "autoscaler_metrics": 0,
                "dashboard_metrics": 0,
            }
        )
    except portlib.PortInUse as err:
        raise SandboxError(
            str(err), f"free it, or set another port in gantry:sandbox.ports.{err.name}"
        ) from None
    ports["replicas"] = portlib.free_range(raycluster.REPLICA_PORTS, *raycluster.REPLICA_PORT_RANGE)
    paths.logs.mkdir(exist_ok=True)
    temp_dir = paths.ray_temp_dir()
    gcs = f"{LOOPBACK}:{ports['gcs']}"
    urls = {
        "serve": f"http://{LOOPBACK}:{ports['serve']}",
        "serve_proxy": f"http://{LOOPBACK}:{ports['serve_proxy']}",
        "dashboard": f"http://{LOOPBACK}:{ports['dashboard']}",
        "prometheus": f"http://{LOOPBACK}:{ports['prometheus']}",
        "serve_api": f"http://{LOOPBACK}:{ports['dashboard']}/api/serve/applications/",
        "nodes_api": f"http://{LOOPBACK}:{ports['dashboard']}/api/v0/nodes?detail=1",
    }
    state = SandboxState(
        state_dir=str(paths.root),
        ray_temp_dir=str(temp_dir),
        gcs_address=gcs,
        ports=ports,
        urls=urls,
        routes={name: f"{urls['serve']}/{name}" for name in plan.specs},
        procs=[],
        started_at=time.time(),
    )
    try:
        with step(f"Ray head (pool {plan.head.name}) on {gcs}"):
            paths.autoscaler_config.write_text(
                yaml.safe_dump(raycluster.autoscaling_config(plan.pools, s, gcs), sort_keys=False)
            )
            argv = raycluster.head_argv(plan.pools, s, ports, temp_dir, paths.autoscaler_config)
            log = paths.logs / "ray-head.log"
            head = procs.start("ray-head", argv, raycluster.ray_env(s, ports), log)
            state.procs.append(head)
            paths.write_state(state)
            url = f"{urls['dashboard']}/api/version"
            _wait_http(url, s.ready_timeout_s, "Ray's head", log, head)
        others = [p.name for p in plan.pools.values() if p is not plan.head]
        with step(f"Node pools {others} under Ray's autoscaler ({paths.autoscaler_config.name})"):
            _wait_autoscaler(urls["dashboard"], s.ready_timeout_s, paths.logs / "ray-head.log")
        with step(f"Prometheus on {urls['prometheus']}"):
            # A new sandbox starts with no metrics: series of a previous run's apps (same names)
            # would otherwise answer the canary checks for up to 5 minutes.
            shutil.rmtree(paths.prometheus_dir, ignore_errors=True)
            paths.prometheus_dir.mkdir()
            rules = paths.prometheus_dir / "rules.yaml"
            rules.write_text(yaml.safe_dump(prometheus.sandbox_rules(), sort_keys=False))
            paths.prometheus_config.write_text(
                yaml.safe_dump(
                    prometheus.config(
                        prometheus.discovery_file(temp_dir), s.scrape_interval_s, [rules]
                    )
                )
            )
            _start_prometheus(paths, state, prom_bin)
        routing = Routing(
            services={n: ServiceRouting(stable=sp.version) for n, sp in plan.specs.items()}
        )
        routing.write(paths.routing)
        with step(f"Gateway (HAProxy) on {urls['serve']}"):
            gw = paths.gateway
            upstreams = gateway.Upstreams(
                serve_proxy=ports["serve_proxy"],
                replica_ports=(ports["replicas"], ports["replicas"] + raycluster.REPLICA_PORTS),
                request_timeout_s=request_timeout_s(plan.specs) or 30,
            )
            gw.write(routing, ports["serve"], upstreams)
            gw.check(haproxy_bin)
            _start_gateway(paths, state, haproxy_bin)
        api = ServeApi(urls["dashboard"])
        apps = [a["name"] for a in plan.serve_document(routing, 0)["applications"]]
        with step(f"Serve applications {apps}"):
            try:
                deploy(plan, paths, state, routing)
                api.wait_running(apps, s.ready_timeout_s)
            except SandboxError as err:
                raise SandboxError(
                    str(err), f"replica logs: {temp_dir}/session_latest/logs/serve"
                ) from None
        with step("Services ready (model loaded, warm-up passed) through the gateway"):
            for name, spec in plan.specs.items():
                url = f"{state.routes[name]}{spec.serve.readiness_path}"
                _wait_http(url, s.ready_timeout_s, f"{name}'s readiness ({url})")
        state.ready = True
        paths.write_state(state)
        return state
    except BaseException:
        # Leave nothing behind: a half-started sandbox would block the next `up`.
        procs.stop(state.procs)
        paths.state_file.unlink(missing_ok=True)
        raise


def _wait_autoscaler(dashboard: str, timeout_s: float, log: Path) -> None:
    """Ray's autoscaler (the monitor) reports its first cluster status."""

    def reported() -> bool:
        r = requests.get(f"{dashboard}/api/cluster_status", timeout=3)
        return r.status_code == 200 and bool((r.json().get("data") or {}).get("clusterStatus"))

    retry.until(reported, timeout_s, "Ray's autoscaler did not report", 0.5, detail=f"see {log}")


def deploy(
    plan: Plan, paths: Paths, state: SandboxState, routing: Routing, if_changed: bool = False
) -> None:
    """PUT the Serve config for `routing` (declarative: Serve applies only what changed);
    `if_changed`: not when it equals the last one PUT (`serve-config.json`)."""
    document = plan.serve_document(routing, state.ports["serve_proxy"])
    text = json.dumps(document, indent=2) + "\n"
    if if_changed and paths.serve_config.exists() and paths.serve_config.read_text() == text:
        return
    paths.serve_config.write_text(text)
    ServeApi(state.urls["dashboard"]).deploy(document)


def apply_routing(plan: Plan, paths: Paths, state: SandboxState, routing: Routing) -> None:
    """Route as `routing` says: `routing.json`, the gateway's maps (in place), then Serve's
    applications if they changed (a weight step changes none). The gateway goes first, so it has
    stopped choosing a version by the time Serve removes it."""
    routing.write(paths.routing)
    paths.gateway.apply(routing)
    deploy(plan, paths, state, routing, if_changed=True)


def change_routing(
    plan: Plan,
    paths: Paths,
    state: SandboxState,
    service: str,
    change: Callable[[ServiceRouting], None],
) -> ServiceRouting:
    """Read routing.json, `change` one service's entry, and route as it then says, all under an
    exclusive lock: two `gantry rollout` commands (for two services) cannot read the same file
    and each write back their own change, undoing the other's."""
    with paths.routing_lock.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        routing = Routing.read(paths.routing)
        change(routing.services[service])
        apply_routing(plan, paths, state, routing)
        return routing.services[service]


def down(paths: Paths) -> int:
    """Stop every process `up` recorded (and their sessions); returns how many were stopped."""
    state = paths.read_state()
    if state is None:
        return 0
    stopped = procs.stop(state.procs)
    paths.state_file.unlink(missing_ok=True)
    return stopped


def status(paths: Paths) -> dict[str, Any]:
    """Everything `status` shows: processes, URLs, Serve applications, nodes per pool."""
    state = paths.read_state()
    if state is None:
        return {"running": False, "state_dir": str(paths.root)}
    proc_info = [{"name": p.name, "pid": p.pid, "alive": procs.alive(p)} for p in state.procs]
    out: dict[str, Any] = {
        "running": any(p["alive"] for p in proc_info),
        "ready": state.ready,
        "problem": problem(state),
        "state_dir": state.state_dir,
        "ray_temp_dir": state.ray_temp_dir,
        "gcs_address": state.gcs_address,
        "urls": state.urls,
        "routes": state.routes,
        "ports": state.ports,
        "processes": proc_info,
    }
    if not out["running"]:
        return out
    with contextlib.suppress(Exception):
        out["routing"] = Routing.read(paths.routing).model_dump()["services"]
    with contextlib.suppress(SandboxError):
        out["gateway"] = paths.gateway.routes()  # what HAProxy routes by, read from its memory
    with contextlib.suppress(requests.RequestException, ValueError):
        out["applications"] = serve_summary(ServeApi(state.urls["dashboard"]).status())
    with contextlib.suppress(requests.RequestException, ValueError, KeyError):
        out["nodes"] = nodes_by_pool(state.urls["nodes_api"])
    return out


def serve_summary(api_status: dict[str, Any]) -> dict[str, Any]:
    """{app: {status, deployments: {name: {status, replicas}}}} from Serve's REST status."""
    out: dict[str, Any] = {}
    for name, app in (api_status.get("applications") or {}).items():
        deps = {}
        for dname, dep in (app.get("deployments") or {}).items():
            replicas = dep.get("replicas") or []
            deps[dname] = {
                "status": dep.get("status"),
                "replicas": sum(1 for r in replicas if r.get("state") == "RUNNING"),
            }
        out[name] = {"status": app.get("status"), "deployments": deps}
    return out


def nodes_by_pool(nodes_url: str) -> dict[str, int]:
    """Alive Ray nodes per pool (the `gantry.dev/pool` label every sandbox node carries)."""
    from gantry.pools import POOL_LABEL

    r = requests.get(nodes_url, timeout=10)
    r.raise_for_status()
    counts: dict[str, int] = {}
    for node in r.json()["data"]["result"]["result"]:
        if node.get("state") != "ALIVE":
            continue
        pool = (node.get("labels") or {}).get(POOL_LABEL, "?")
        counts[pool] = counts.get(pool, 0) + 1
    return counts
