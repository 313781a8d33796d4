"""How much write throughput a restore asks of its new table, and what asking costs.

A new on-demand table can take 4,000 write units per second at once (its default warm
throughput) and doubles its previous peak at most every 30 minutes after that; a provisioned
table takes what it was created with. A restore that writes faster than that is throttled, so
the target is created ready for the restore:

* write units needed = the sum over items of ``ceil(size / 1 KB)`` (one write unit per started
  KB), over ``--target-minutes`` (default 10) — capped by the account's per-table quota
  (``DescribeLimits`` ``TableMaxWriteCapacityUnits``);
* on-demand sources: ``WarmThroughput.WriteUnitsPerSecond`` on the table **and every GSI**
  (a GSI that cannot keep up throttles the base table's writes: DynamoDB's GSI back-pressure),
  only when more than the default is needed;
* provisioned sources: that many WCU (table and GSIs) at creation; the source's own capacity
  is set once the restore is verified.

Item sizes come from the fold's canonical text, which is a little longer than DynamoDB's own
measure (type tags, quotes, base64): the estimate errs towards more capacity.

What the writers start at is a different question, answered from the table as created
(:func:`starting_rate`): what it takes at once — on demand, its warm throughput (at least the
4,000 write units/s of every new on-demand table); provisioned, its WCU — over the items'
write units each, the smallest over the table and its GSIs. ``--target-minutes`` only sizes
what is asked for, so a small restore is never paced to last that long: it starts at what the
table takes, and the adaptive rate moves from there.

The prices (:data:`PRICES`) are list prices of us-east-1 as published on
https://aws.amazon.com/dynamodb/pricing/ — check them there before relying on a cost: they
change, and differ by region and table class.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError

from archiver.aws.error_table import ArchiverError
from archiver.aws.prices import LIST_PRICES
from archiver.aws.retry import call

log = logging.getLogger(__name__)

DEFAULT_TARGET_MINUTES = 10.0
ON_DEMAND_WARM_WRITE_UNITS = 4_000  # a new on-demand table's (and GSI's) default warm writes
DEFAULT_TABLE_WRITE_QUOTA = 40_000  # DescribeLimits' default TableMaxWriteCapacityUnits
KB = 1024

# List prices (USD, us-east-1): the one table in archiver.aws.prices.
PRICES = LIST_PRICES


@dataclass(frozen=True)
class WarmPlan:
    """The write throughput a restore asks for.

    Attributes:
        items: items to write.
        write_units: total write units of those items (1 per started KB of each).
        target_seconds: the duration the restore is sized for.
        units_per_second: write units per second the target is made ready for (capped).
        quota: the account's per-table write quota it was capped at.
        billing: ``PAY_PER_REQUEST`` or ``PROVISIONED``.
        gsis: the GSIs warmed along with the table.
        warm: whether anything beyond the defaults is requested.
    """

    items: int
    write_units: int
    target_seconds: float
    units_per_second: int
    quota: int
    billing: str
    gsis: tuple[str, ...] = ()
    warm: bool = True

    @property
    def units_per_item(self) -> float:
        return self.write_units / self.items if self.items else 1.0

    @property
    def raises_warm(self) -> bool:
        """Whether an on-demand target gets ``WarmThroughput`` above the default."""
        return (
            self.warm
            and self.billing == "PAY_PER_REQUEST"
            and self.units_per_second > ON_DEMAND_WARM_WRITE_UNITS
        )

    def table_and_index_count(self) -> int:
        return 1 + len(self.gsis)

    def cost(self) -> dict[str, float]:
        """The list-price cost (USD) of the writes and of warming, by component."""
        writes = self.write_units * (1 + len(self.gsis))  # every GSI is written as well
        out = {"writes": writes / 1e6 * PRICES["on_demand_write_per_million"]}
        if self.billing == "PROVISIONED":
            hours = max(self.write_units / max(self.units_per_second, 1) / 3600, 1 / 60)
            out = {
                "provisioned capacity": self.units_per_second
                * self.table_and_index_count()
                * math.ceil(hours)
                * PRICES["provisioned_wcu_hour"]
            }
        elif self.raises_warm:
            raised = (self.units_per_second - ON_DEMAND_WARM_WRITE_UNITS) / 100
            out["warm throughput"] = (
                raised * self.table_and_index_count() * PRICES["warm_write_per_100_units"]
            )
        return out

    def describe(self) -> str:
        """One line for dry runs and logs."""
        minutes = self.target_seconds / 60
        what = ", ".join(["table", *(f"GSI {g}" for g in self.gsis)])
        if not self.warm:
            head = "warm throughput: not requested (--no-warm)"
        elif self.billing == "PROVISIONED":
            head = f"write capacity: {self.units_per_second:,} WCU at creation for {what}"
        elif self.raises_warm:
            head = f"warm throughput: {self.units_per_second:,} write units/s for {what}"
        else:
            head = (
                f"warm throughput: the default {ON_DEMAND_WARM_WRITE_UNITS:,} write units/s "
                f"suffices ({self.units_per_second:,} needed)"
            )
        costs = self.cost()
        price = ", ".join(f"{name} ${value:,.2f}" for name, value in costs.items())
        return (
            f"{head}; {self.write_units:,} write units for {self.items:,} items over "
            f"{minutes:g} min (quota {self.quota:,}/s); cost at list price: {price} "
            "(us-east-1; check https://aws.amazon.com/dynamodb/pricing/)"
        )


def table_write_quota(client: Any) -> int:
    """The account's per-table write capacity quota (``DescribeLimits``), else the default."""
    try:
        limits = call(client.describe_limits, "DescribeLimits")
        return int(limits.get("TableMaxWriteCapacityUnits") or DEFAULT_TABLE_WRITE_QUOTA)
    except (ArchiverError, BotoCoreError, AttributeError) as exc:
        log.warning(
            "DescribeLimits failed (%s): assuming the default quota of %s write units",
            getattr(exc, "code", "") or type(exc).__name__,
            f"{DEFAULT_TABLE_WRITE_QUOTA:,}",
        )
        return DEFAULT_TABLE_WRITE_QUOTA


def plan_warm(
    description: Mapping[str, Any],
    *,
    items: int,
    write_units: int,
    target_minutes: float = DEFAULT_TARGET_MINUTES,
    quota: int = DEFAULT_TABLE_WRITE_QUOTA,
    warm: bool = True,
) -> WarmPlan:
    """Size the target's write throughput for ``items`` totalling ``write_units``."""
    billing = (description.get("BillingModeSummary") or {}).get("BillingMode") or "PROVISIONED"
    seconds = max(target_minutes * 60, 1.0)
    needed = math.ceil(write_units / seconds) if write_units else 1
    gsis = tuple(g["IndexName"] for g in description.get("GlobalSecondaryIndexes") or [])
    return WarmPlan(
        items=items,
        write_units=write_units,
        target_seconds=seconds,
        units_per_second=max(1, min(needed, quota)),
        quota=quota,
        billing=billing,
        gsis=gsis,
        warm=warm,
    )


@dataclass(frozen=True)
class StartingRate:
    """The rate a restore's writers start at, from the target table as it is.

    Attributes:
        units_per_second: write units per second the table takes at once.
        items_per_second: that many units over the items' write units each.
        source: what the units come from, for the line a restore prints.
    """

    units_per_second: int
    items_per_second: float
    source: str

    def describe(self, cap: float | None = None) -> str:
        """One line: the starting rate, why, and ``--max-write-rate`` when it caps it."""
        capped = ""
        if cap is not None and cap < self.items_per_second:
            capped = f"; capped at {cap:,.0f} items/s by --max-write-rate"
        return (
            f"write rate: starts at {self.items_per_second:,.0f} items/s ({self.source}), "
            f"halves on throttling, grows while calls succeed{capped}"
        )


def _on_demand_units(table: Mapping[str, Any]) -> int:
    warm = int((table.get("WarmThroughput") or {}).get("WriteUnitsPerSecond") or 0)
    units = max(ON_DEMAND_WARM_WRITE_UNITS, warm)
    ceiling = int((table.get("OnDemandThroughput") or {}).get("MaxWriteRequestUnits") or -1)
    return min(units, ceiling) if ceiling > 0 else units


def _provisioned_units(table: Mapping[str, Any]) -> int:
    return max(1, int((table.get("ProvisionedThroughput") or {}).get("WriteCapacityUnits") or 1))


def starting_rate(table: Mapping[str, Any], plan: WarmPlan) -> StartingRate:
    """What the described ``table`` (``DescribeTable``'s ``Table``, once ACTIVE) takes at once,
    in items per second of ``plan``'s items.

    On demand: its warm write throughput, at least the default every new on-demand table has,
    under its ``MaxWriteRequestUnits`` when one is set. Provisioned: its WCU. The smallest over
    the table and its GSIs, since a GSI that cannot keep up throttles the table's writes.
    """
    billing = (table.get("BillingModeSummary") or {}).get("BillingMode") or "PROVISIONED"
    parts = [table, *(table.get("GlobalSecondaryIndexes") or [])]
    if billing == "PAY_PER_REQUEST":
        units = min(_on_demand_units(part) for part in parts)
        source = f"the on-demand table's warm throughput, {units:,} write units/s"
    else:
        units = min(_provisioned_units(part) for part in parts)
        source = f"the table's provisioned {units:,} WCU"
    per_item = max(plan.units_per_item, 1.0)
    if per_item > 1.0:
        source += f", {per_item:.1f} units per item"
    if len(parts) > 1:
        source += ", the least of table and GSIs"
    return StartingRate(units, units / per_item, source)


def apply_to_request(request: dict[str, Any], plan: WarmPlan) -> dict[str, Any]:
    """The ``CreateTable`` request with the plan's throughput (table and every GSI)."""
    if not plan.warm:
        return request
    units = plan.units_per_second
    if plan.billing == "PROVISIONED":
        for target in [request, *request.get("GlobalSecondaryIndexes", [])]:
            throughput = target.setdefault(
                "ProvisionedThroughput", {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
            )
            throughput["WriteCapacityUnits"] = max(throughput["WriteCapacityUnits"], units)
    elif plan.raises_warm:
        warm = {"WriteUnitsPerSecond": units}
        request["WarmThroughput"] = dict(warm)
        for gsi in request.get("GlobalSecondaryIndexes", []):
            gsi["WarmThroughput"] = dict(warm)
    return request
