"""The rate a restore writes at: what the created table takes, never ``--target-minutes``.

A restore's writers start at what the table it created takes at once (on demand: its warm
throughput, at least 4,000 write units/s; provisioned: its WCU; the least over the table and
its GSIs), over the items' write units each. ``--target-minutes`` sizes only what is asked
for; ``--max-write-rate`` is the only cap. Checked without clocks: the starting rate from the
created table's description, and the pauses the rate limiter asked for over a whole restore.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from archiver.aws.clients import AwsSettings
from archiver.aws.retry import AdaptiveRate
from archiver.format.storage import Archive
from bench.null_dynamodb import NullDynamoDB
from replayer.strategies.replay import ReplayOptions, restore_by_replay
from replayer.write import batch_writers as writers
from replayer.write import warm
from replayer.write.batch_writers import ClientFactory
from tests.replay_helpers import (
    TABLE,
    Change,
    at,
    item,
    key,
    write_changes,
    write_coverage,
    write_description,
)

AT = at(500)
GSI = {
    "IndexName": "by-v",
    "KeySchema": [{"AttributeName": "v", "KeyType": "HASH"}],
    "Projection": {"ProjectionType": "ALL"},
}


def archive_small_items(
    archive: Archive, n: int, *, pad: int = 0, **description: Any
) -> list[dict[str, Any]]:
    """``n`` items (of well under 1 KB, one write unit each, unless ``pad`` makes them
    bigger), written by the log."""
    write_coverage(archive, watermark=at(1000))
    write_description(archive, extra=description or None)
    items = [item(f"k{i:05d}", v=i, **({"pad": "x" * pad} if pad else {})) for i in range(n)]
    write_changes(
        archive,
        [Change(i + 1, key(f"k{i:05d}"), it, at(10), "INSERT") for i, it in enumerate(items)],
    )
    return items


def restore(archive: Archive, target: str, **options: Any) -> Any:
    return restore_by_replay(
        AwsSettings(), archive, TABLE, target, AT, ReplayOptions(**options), say=lambda _: None
    )


# -- the starting rate, from the table as created ---------------------------------------------


def plan(items: int = 1000, units: int = 1000) -> warm.WarmPlan:
    return warm.plan_warm(
        {"BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}}, items=items, write_units=units
    )


def test_an_on_demand_table_takes_its_warm_throughput_at_least_the_default() -> None:
    on_demand = {"BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}}
    # No WarmThroughput in the description (an older API): what every new table takes.
    assert warm.starting_rate(on_demand, plan()).items_per_second == 4_000
    warmed = {**on_demand, "WarmThroughput": {"WriteUnitsPerSecond": 12_000}}
    assert warm.starting_rate(warmed, plan()).units_per_second == 12_000
    # Items of 2 write units each: half as many items per second.
    assert warm.starting_rate(warmed, plan(units=2000)).items_per_second == 6_000
    # A GSI that takes less throttles the table: the least of them counts.
    with_gsi = {**warmed, "GlobalSecondaryIndexes": [
        {"IndexName": "g", "WarmThroughput": {"WriteUnitsPerSecond": 4_000}}]}  # fmt: skip
    assert warm.starting_rate(with_gsi, plan()).units_per_second == 4_000
    # An on-demand maximum caps it (-1: none).
    capped = {**warmed, "OnDemandThroughput": {"MaxWriteRequestUnits": 500}}
    assert warm.starting_rate(capped, plan()).units_per_second == 500
    unlimited = {**warmed, "OnDemandThroughput": {"MaxWriteRequestUnits": -1}}
    assert warm.starting_rate(unlimited, plan()).units_per_second == 12_000


def test_a_provisioned_table_takes_its_wcu() -> None:
    table = {
        "BillingModeSummary": {"BillingMode": "PROVISIONED"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 300},
        "GlobalSecondaryIndexes": [
            {"IndexName": "g", "ProvisionedThroughput": {"WriteCapacityUnits": 200}}
        ],
    }
    start = warm.starting_rate(table, plan())
    assert start.units_per_second == 200 and "provisioned 200 WCU" in start.source


PROVISIONED = {
    "BillingModeSummary": {"BillingMode": "PROVISIONED"},
    "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 50},
}
WITH_GSI = {
    "GlobalSecondaryIndexes": [GSI],
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "v", "AttributeType": "N"},
    ],
}


@pytest.mark.parametrize(
    ("description", "pad", "options", "expected"),
    [
        # 50 small items sized for 10 minutes: nothing is asked beyond the default warm
        # throughput, and the writers start at it, not at 50 items / 10 minutes.
        ({}, 0, {}, "default"),
        # ~100 KB items for one second: the target is warmed, and the writers start there.
        ({}, 100_000, {"target_minutes": 0.0001}, "warmed"),
        (WITH_GSI, 100_000, {"target_minutes": 0.0001}, "warmed"),
        # Provisioned: the WCU it was created with (the source's 50, more than the plan's).
        (PROVISIONED, 0, {}, "wcu"),
    ],
    ids=["on-demand", "on-demand-warmed", "warmed-with-gsi", "provisioned"],
)
def test_a_restore_starts_at_what_the_table_it_created_takes(
    ddb: Any, archive: Archive, description: dict[str, Any], pad: int, options: dict[str, Any],
    expected: str,
) -> None:  # fmt: skip
    archive_small_items(archive, 50, pad=pad, **description)
    outcome = restore(archive, "paced", **options)
    assert outcome.comparison is not None and outcome.comparison.identical
    start, plan = outcome.starting_rate, outcome.warm
    created = ddb.describe_table(TableName="paced")["Table"]
    assert start == warm.starting_rate(created, plan)
    units = {"default": 4_000, "warmed": plan.units_per_second, "wcu": 50}[expected]
    assert units == 4_000 or plan.raises_warm or expected == "wcu"
    assert start.units_per_second == units
    assert start.items_per_second == pytest.approx(units / max(plan.units_per_item, 1.0))
    if expected == "warmed":
        assert units > 4_000 and created["WarmThroughput"]["WriteUnitsPerSecond"] == units


# -- no pause beyond what the rate implies ----------------------------------------------------


class RecordingRate(AdaptiveRate):
    """The writers' adaptive rate, keeping what it started at and every pause it asked for."""

    made: ClassVar[list[RecordingRate]] = []

    def __init__(self, initial: float, **kwargs: Any) -> None:
        super().__init__(initial, **kwargs)
        self.initial = self.per_second
        self.pauses: list[float] = []
        RecordingRate.made.append(self)

    def acquire(self, units: float = 1, *, sleep: Callable[[float], None] = time.sleep) -> None:
        def pause(seconds: float) -> None:
            self.pauses.append(seconds)
            sleep(seconds)

        super().acquire(units, sleep=pause)


@pytest.mark.parametrize(
    ("options", "rate"),
    [({}, 4_000.0), ({"max_write_rate": 2_000.0}, 2_000.0)],
    ids=["table-rate", "max-write-rate"],
)
def test_a_small_restore_pauses_no_longer_than_its_rate_implies(
    ddb: Any, archive: Archive, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any],
    rate: float,
) -> None:  # fmt: skip
    """600 items of 1 write unit, one writer making one call at a time: the limiter may pause
    600 / rate seconds in all. Paced to last --target-minutes (10 min) it paused ~24 s (the
    rate's floor of 25 items/s) — the 144 items/s restores of issue #19 at this size."""
    n = 600
    items = archive_small_items(archive, n)
    RecordingRate.made = []
    monkeypatch.setattr(writers, "AdaptiveRate", RecordingRate)
    with NullDynamoDB(record=True) as endpoint:
        outcome = restore(
            archive, "unpaced", verify=False, workers=1,
            client_factory=ClientFactory(AwsSettings(endpoint_url=endpoint.url)), **options,
        )  # fmt: skip
    assert outcome.written.items == n
    assert sorted(endpoint.accepted.values()) == [1] * n  # every item once
    assert {json.dumps(i, sort_keys=True) for i in items} == set(endpoint.accepted)
    (limiter,) = RecordingRate.made
    assert limiter.initial == rate
    assert sum(limiter.pauses) <= n / rate + 1e-6
