"""Native DynamoDB exports → Parquet snapshots (converted on first use)."""

from __future__ import annotations

from archiver.aws import AwsSettings
from archiver.storage import Archive


def convert_new_exports(archive: Archive, table: str, settings: AwsSettings | None = None) -> list[str]:
    """Convert every completed native export of ``table`` under ``<archive>/exports/`` that has no
    snapshot yet; return the new snapshot ids."""
    return []
