"""`gantry:prices`: optional, validated, and a missing price names the key to set."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from gantry.errors import ConfigError
from gantry.stack import load_config, read_stack_file

REPO = Path(__file__).resolve().parents[2]


def _raw(stack: str, prices: Any = None) -> dict[str, Any]:
    raw = copy.deepcopy(read_stack_file(REPO / f"Pulumi.{stack}.yaml"))
    if prices is not None:
        raw["prices"] = prices
    return raw


def test_the_eks_stack_prices_every_pool() -> None:
    cfg = load_config(_raw("eks"))
    for pool in cfg.pools:
        assert cfg.prices.usd_per_hour(pool, "Pulumi.eks.yaml") > 0


def test_a_stack_without_prices_fails_only_when_a_price_is_asked_for() -> None:
    cfg = load_config(_raw("sandbox"))  # kind: no prices, still a valid stack
    with pytest.raises(ConfigError) as err:
        cfg.prices.usd_per_hour(cfg.pool("gpu"), "Pulumi.sandbox.yaml")
    assert str(err.value) == (
        "Pulumi.sandbox.yaml: gantry:prices.on_demand_usd_per_hour has no price for "
        "'kind-node' (pool gpu)"
    )
    assert err.value.hint and "kind-node: <USD per node-hour>" in err.value.hint


@pytest.mark.parametrize(
    ("prices", "key", "word"),
    [
        (
            {"on_demand_usd_per_hour": {"g5.xlarge": 0}},
            "prices.on_demand_usd_per_hour.g5.xlarge",
            "greater than 0",
        ),
        ({"on_demand_usd_per_hour": {"g5.xlarge": "cheap"}}, "prices.on_demand", "number"),
        ({"usd_per_hour": {"g5.xlarge": 1.0}}, "prices.usd_per_hour", "unknown key"),
    ],
)
def test_bad_prices_name_the_key(prices: Any, key: str, word: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_raw("eks", prices))
    assert str(err.value).startswith(f"gantry:{key}"), err.value
    assert word in str(err.value)
