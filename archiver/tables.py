"""Table identity and archived table descriptions.

``table_id`` tells a recreated table from its predecessor of the same name. AWS returns it in
``DescribeTable`` as ``TableId``; where an endpoint omits it (moto does), a stable stand-in is
derived from the table ARN and creation time, which also differ between generations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from archiver.timefmt import as_utc, iso_ms


def table_id_of(description: Mapping[str, Any]) -> str:
    """The ``TableId`` of a ``DescribeTable`` ``Table`` dict (or its stand-in, see module doc)."""
    table_id = description.get("TableId")
    if table_id:
        return str(table_id)
    created = description.get("CreationDateTime")
    created_text = iso_ms(as_utc(created)) if isinstance(created, datetime) else str(created)
    digest = hashlib.sha256(f"{description.get('TableArn')}|{created_text}".encode()).hexdigest()
    return f"derived-{digest[:32]}"
