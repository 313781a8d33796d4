"""DynamoDB list prices: the one table every printed cost estimate is computed from.

The figures are AWS's published list prices for us-east-1 (USD, Standard table class), from
https://aws.amazon.com/dynamodb/pricing/ (on-demand and provisioned pages: "Export to Amazon
S3", "Incremental export to Amazon S3", "Import from Amazon S3", "Restore", write request
units, warm throughput). They change and differ by region: every estimate says they are list
prices to check, and nothing is billed from them. The archiver prices exports and backfills
with them; the replayer (``replayer.strategies.costs``, ``replayer.write.warm``) prices restores.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICING_URL = "https://aws.amazon.com/dynamodb/pricing/"
GB = 1024**3

# us-east-1, USD. ``as_of``: the on-demand write price since the November 2024 reduction.
LIST_PRICES: dict[str, float] = {
    "full_export_per_gb": 0.10,  # per GB of table exported
    "incremental_export_per_gb": 0.10,  # per GB of changed data processed
    "incremental_export_minimum_mb": 10,  # billed at least this much per incremental export
    "on_demand_write_per_million": 0.625,  # per million write request units (1 KB each)
    "import_per_gb": 0.15,  # ImportTable, per GB of uncompressed source data
    "restore_per_gb": 0.15,  # RestoreTableFromBackup / ToPointInTime, per GB restored
    "warm_write_per_100_units": 0.0065,  # one-time, per 100 write units/s of warm throughput
    "provisioned_wcu_hour": 0.00065,  # provisioned capacity, per WCU-hour
}
PRICES_AS_OF = "2024-11"


@dataclass(frozen=True)
class ExportRates:
    """USD per GB: a full export per GB of table; an incremental export per GB of changed data
    processed, with a minimum billed per export."""

    full_export_per_gb: float
    incremental_export_per_gb: float
    incremental_minimum_bytes: int


RATES = {
    "us-east-1": ExportRates(
        full_export_per_gb=LIST_PRICES["full_export_per_gb"],
        incremental_export_per_gb=LIST_PRICES["incremental_export_per_gb"],
        incremental_minimum_bytes=int(LIST_PRICES["incremental_export_minimum_mb"] * 1024**2),
    ),
}
DEFAULT_REGION = "us-east-1"


def rates_for(region: str | None) -> tuple[str, ExportRates]:
    """The rates for ``region``, else us-east-1's (and the region they are for)."""
    if region and region in RATES:
        return region, RATES[region]
    return DEFAULT_REGION, RATES[DEFAULT_REGION]


def full_export_cost(table_bytes: int, rates: ExportRates) -> float:
    return table_bytes / GB * rates.full_export_per_gb


def incremental_export_cost(changed_bytes: int, rates: ExportRates) -> float:
    return (
        max(changed_bytes, rates.incremental_minimum_bytes) / GB * rates.incremental_export_per_gb
    )
