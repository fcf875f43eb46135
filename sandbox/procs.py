"""Starting and stopping the processes the sandbox owns, exactly those and nothing else.

Each top-level process (Ray's head, Prometheus) is started in a new session, so it and every
process it spawns (raylet, GCS, workers, the autoscaler and the fake nodes it launches) share
that session id. `stop` signals exactly the recorded processes and the members of their
sessions; it never looks processes up by name, so other Ray clusters on the machine are safe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path

import psutil

from gantry.sandbox_state import Proc
from sandbox import retry
from sandbox.errors import SandboxError


def start(name: str, argv: list[str], env: dict[str, str], log: Path) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        p = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proc(name=name, pid=p.pid, create_time=psutil.Process(p.pid).create_time())


def alive(proc: Proc) -> bool:
    try:
        p = psutil.Process(proc.pid)
        return abs(p.create_time() - proc.create_time) < 1 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def members(procs: Iterable[Proc]) -> list[psutil.Process]:
    """Live processes that belong to the recorded ones: themselves and their sessions."""
    sids = set()
    found: dict[int, psutil.Process] = {}
    for proc in procs:
        if alive(proc):
            sids.add(os.getsid(proc.pid))
            found[proc.pid] = psutil.Process(proc.pid)
        else:
            # The leader may be gone while its session lives on (daemonised children).
            sids.add(proc.pid)
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) in sids and p.status() != psutil.STATUS_ZOMBIE:
                found[p.pid] = p
        except (ProcessLookupError, psutil.Error, PermissionError):
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def stop(procs: Iterable[Proc], grace_s: float = 10.0) -> int:
    """SIGTERM every member, SIGKILL what is left after `grace_s`; returns how many were killed."""
    victims = members(list(procs))
    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGTERM)
    _, still = psutil.wait_procs(victims, timeout=grace_s)
    for p in still:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(still, timeout=5)
    return len(victims)


def wait_exit(proc: Proc, timeout_s: float) -> bool:
    """Whether `proc` exited within `timeout_s`."""
    try:
        retry.until(lambda: not alive(proc), timeout_s, f"{proc.name} did not exit", 0.2)
    except SandboxError:
        return False
    return True
