"""Table settings that DescribeTable does not return and native restores drop.

Captured with every archived table description (see ``archiver.tables``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archiver.aws import AwsSettings


async def capture_extras(settings: AwsSettings, description: Mapping[str, Any]) -> dict[str, Any]:
    """Extra settings of the table described by ``description`` (a DescribeTable ``Table``)."""
    return {}
