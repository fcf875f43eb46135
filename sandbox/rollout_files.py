"""What one service's rollout keeps under `<state>/rollouts/`: its event log, its status (what a
resumed driver starts from), the driver lock and the pause request. See sandbox/rollout.py."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gantry.canary import CanaryStatus
from sandbox.errors import SandboxError

Emit = Callable[[dict[str, Any]], None]


@dataclass
class EventLog:
    """Appends every event as one JSON line and hands it to the terminal printer."""

    path: Path
    printer: Emit
    events: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, event: str, **data: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **data}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.events.append(record)
        self.printer(record)


class RolloutFiles:
    """One service's rollout files under `<state>/rollouts/`."""

    def __init__(self, rollouts_dir: Path, service: str) -> None:
        self.service = service
        self.dir = rollouts_dir
        self.events = rollouts_dir / f"{service}.jsonl"
        self.status = rollouts_dir / f"{service}.status.json"
        self.lock = rollouts_dir / f"{service}.lock"
        self.pause = rollouts_dir / f"{service}.paused"

    def load(self) -> CanaryStatus | None:
        try:
            return CanaryStatus.model_validate_json(self.status.read_text())
        except FileNotFoundError:
            return None

    def save(self, status: CanaryStatus) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.status.with_suffix(".tmp")
        tmp.write_text(status.model_dump_json(indent=2) + "\n")
        tmp.replace(self.status)

    def pause_requested(self) -> bool:
        return self.pause.exists()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the service's driver lock (the kernel releases it if the process dies)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.lock.open("a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SandboxError(
                    f"a rollout driver for {self.service} is already running "
                    f"(pid {self.driver_pid()})",
                    f"follow it in {self.events}; stop it: gantry rollout {self.service} --abort",
                ) from None
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield

    def driver_pid(self) -> int | None:
        """The PID of the driver holding the lock; None when no driver runs."""
        try:
            with self.lock.open("r") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    text = f.read().strip()
                    return int(text) if text.isdigit() else None
                fcntl.flock(f, fcntl.LOCK_UN)
                return None
        except FileNotFoundError:
            return None
