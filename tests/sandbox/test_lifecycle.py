"""routing.json changes: read, change and apply under one lock."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gantry.sandbox_state import Routing, ServiceRouting
from sandbox import lifecycle
from sandbox.state import Paths


def test_two_rollouts_changing_routing_at_once_keep_both_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = Paths(tmp_path)
    stable = {name: ServiceRouting(stable="v1") for name in ("embedder", "classifier")}
    Routing(services=stable).write(paths.routing)
    applied: list[Routing] = []

    def apply(plan: Any, paths_: Paths, state: Any, routing: Routing) -> None:
        time.sleep(0.3)  # the gateway and Serve take a while: the other command reads meanwhile
        routing.write(paths_.routing)
        applied.append(routing)

    monkeypatch.setattr(lifecycle, "apply_routing", apply)

    def roll(service: str) -> None:
        def add_canary(r: ServiceRouting) -> None:
            r.canary, r.canary_weight = "v2", 10

        lifecycle.change_routing(None, paths, None, service, add_canary)  # type: ignore[arg-type]

    threads = [threading.Thread(target=roll, args=(s,)) for s in ("embedder", "classifier")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    final = Routing.read(paths.routing)
    assert final.services["embedder"].canary == "v2"
    assert final.services["classifier"].canary == "v2"  # not undone by the embedder's write
    assert len(applied) == 2
