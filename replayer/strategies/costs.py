"""What a restore costs: the arithmetic on the list prices of ``archiver.aws.prices``.

``--strategy auto`` prints a cost beside each strategy's time (``--prefer cost`` picks the
cheapest). The prices come from the one table ``archiver.aws.prices.LIST_PRICES`` (AWS's published
list prices for US East (N. Virginia), Standard table class) — check them against
https://aws.amazon.com/dynamodb/pricing/on-demand/ for your Region before relying on a figure:

- writes: **$0.625 per million write request units** (one unit writes 1 KB of an item; a
  larger item takes one unit per started KB; each GSI the item is projected into takes as many
  again);
- import from S3: **$0.15 per GB** of uncompressed source data processed;
- restore from a backup or to a point in time: **$0.15 per GB** of table restored.

Costs are estimates for comparing strategies, like the times: they leave out what every
strategy shares (the restored table's storage, reading the archive, the verify scan) and what
is small beside the rest (S3 requests for staging files). A replay into a provisioned-mode
target is priced as if on demand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archiver.aws.prices import LIST_PRICES, PRICES_AS_OF

GB = 1024**3  # AWS bills a "GB" of table or import data as 2^30 bytes
WRITE_UNIT_BYTES = 1024


@dataclass(frozen=True)
class RestoreRates:
    """List prices a restore's cost is estimated with (USD)."""

    as_of: str
    region: str
    write_request_unit: float  # one on-demand write request unit
    import_per_gb: float  # ImportTable, per GB of uncompressed source data
    restore_per_gb: float  # RestoreTableFromBackup / RestoreTableToPointInTime, per GB


RESTORE_RATES = RestoreRates(
    as_of=PRICES_AS_OF,
    region="us-east-1",
    write_request_unit=LIST_PRICES["on_demand_write_per_million"] / 1_000_000,
    import_per_gb=LIST_PRICES["import_per_gb"],
    restore_per_gb=LIST_PRICES["restore_per_gb"],
)


def write_units(items: int, item_bytes: float, indexes: int = 0) -> int:
    """Write request units to put ``items`` items of ``item_bytes`` each, every one also
    written to ``indexes`` GSIs (the worst case: each index projects the whole item)."""
    per_item = max(1, math.ceil(item_bytes / WRITE_UNIT_BYTES))
    return items * per_item * (1 + indexes)


def replay_cost(
    items: int, item_bytes: float, indexes: int = 0, rates: RestoreRates = RESTORE_RATES
) -> float:
    """Writing every item with ``BatchWriteItem``, at the on-demand write price."""
    return write_units(items, item_bytes, indexes) * rates.write_request_unit


def import_cost(source_bytes: float, rates: RestoreRates = RESTORE_RATES) -> float:
    """``ImportTable`` of ``source_bytes`` of uncompressed DynamoDB JSON."""
    return source_bytes / GB * rates.import_per_gb


def native_restore_cost(table_bytes: float | None, rates: RestoreRates = RESTORE_RATES) -> float:
    """A PITR or backup restore of a table of ``table_bytes``."""
    return (table_bytes or 0) / GB * rates.restore_per_gb


def format_cost(dollars: float | None) -> str:
    """``$0.42``, ``<$0.01``, ``$1,234``; ``?`` when unknown."""
    if dollars is None:
        return "?"
    if dollars < 0.01:
        return "<$0.01"
    if dollars < 100:
        return f"${dollars:.2f}"
    return f"${dollars:,.0f}"
