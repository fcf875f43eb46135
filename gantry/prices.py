"""Node prices of a stack (`gantry:prices`), for cost estimates such as `gantry capacity`.

One table per stack, keyed by instance type (not per pool): two pools of one type cost the same,
and the price list a platform engineer copies from is keyed that way. Optional: a stack without
it (kind) only fails where a cost is asked for, with one line naming the missing key.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from gantry.errors import ConfigError
from gantry.pools import Pool
from gantry.validation import NAMESPACE, StrictModel

# Hours in the billing month cloud price lists use: 365 d x 24 h / 12.
HOURS_PER_MONTH = 730

UsdPerHour = Annotated[float, Field(gt=0)]


class Prices(StrictModel):
    """`gantry:prices`: what a node of each instance type costs."""

    # On-demand list price per node-hour in USD, by instance type (e.g. g5.xlarge: 1.006).
    on_demand_usd_per_hour: dict[str, UsdPerHour] = {}

    def usd_per_hour(self, pool: Pool, stack_file: str) -> float:
        """The hourly price of one node of `pool`; a missing price names the key to set."""
        price = self.on_demand_usd_per_hour.get(pool.instance_type)
        if price is None:
            raise ConfigError(
                f"{stack_file}: {NAMESPACE}:prices.on_demand_usd_per_hour has no price for "
                f"{pool.instance_type!r} (pool {pool.name})",
                f"add `{pool.instance_type}: <USD per node-hour>` under "
                f"{NAMESPACE}:prices.on_demand_usd_per_hour (Pulumi.eks.yaml has examples)",
            )
        return price
