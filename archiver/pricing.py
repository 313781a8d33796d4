"""List prices of the native operations the archiver requests, for estimates printed first.

The figures are AWS's published on-demand list prices for us-east-1 (USD), from
https://aws.amazon.com/dynamodb/pricing/on-demand/ ("Export to Amazon S3" and "Incremental
export to Amazon S3"). They change and differ by region: every estimate says they are list
prices to check, and nothing is billed from them.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICING_URL = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
GB = 1024**3


@dataclass(frozen=True)
class ExportRates:
    """USD per GB: a full export per GB of table; an incremental export per GB of changed data
    processed, with a minimum billed per export."""

    full_export_per_gb: float
    incremental_export_per_gb: float
    incremental_minimum_bytes: int


RATES = {
    "us-east-1": ExportRates(
        full_export_per_gb=0.10,
        incremental_export_per_gb=0.10,
        incremental_minimum_bytes=10 * 1024**2,
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
