"""How long ``ImportTable`` takes: the model ``--strategy auto`` estimates imports with.

AWS publishes no import rate: its developer guide says the time depends on the data's size,
format, compression, key distribution and number of S3 objects, and that items under 200 bytes
import more slowly. Until a table has been imported, the model assumes a fixed part plus a
rate per GiB of uncompressed DynamoDB JSON (:data:`DEFAULT_IMPORT_BASE_SECONDS`,
:data:`DEFAULT_IMPORT_SECONDS_PER_GIB`); every completed import is recorded
(:func:`record_import`) under ``imports`` in ``_state/<table>/restore-stats.json``, beside the
replay write rate, and :meth:`ImportModel.load` refines the model from them. Staging the files
(the fold and the S3 writes) is not counted, as the fold is not in replay's estimate either.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from archiver.format.storage import Archive
from archiver.format.timefmt import iso_ms, utcnow
from replayer.write.restore_state import read_restore_stats, update_restore_stats

log = logging.getLogger(__name__)

GIB = 1024**3
# AWS publishes no import throughput: it depends on size, format, compression, key spread
# and object count, and items under 200 bytes are slower. Until an import is measured, assume
# a fixed 10 minutes (table creation and the job's start) plus 11 minutes per GiB: one
# reported 10 GB import took up to 2 hours (hashicorp/terraform-provider-aws#27250).
DEFAULT_IMPORT_BASE_SECONDS = 10 * 60.0
DEFAULT_IMPORT_SECONDS_PER_GIB = 11 * 60.0
_SMALL_IMPORT = GIB // 4  # below this an import's time is mostly its fixed part
_KEEP_IMPORTS = 20


@dataclass(frozen=True)
class ImportModel:
    """Seconds an import takes: ``base_seconds + GiB × seconds_per_gib``, and where the
    figures come from. Refined from earlier imports of the table (``restore-stats.json``):
    the median time of small ones (< ¼ GiB) is the fixed part; the median per-GiB time of
    imports of 1 GiB or more, past that fixed part, the rate. ``json_bytes_per_item`` is the
    staged size per item measured then (None until an import is measured)."""

    base_seconds: float = DEFAULT_IMPORT_BASE_SECONDS
    seconds_per_gib: float = DEFAULT_IMPORT_SECONDS_PER_GIB
    source: str = "assumed (AWS publishes no rate)"
    json_bytes_per_item: float | None = None

    @classmethod
    def load(cls, archive: Archive, table: str) -> ImportModel:
        imports = _imports(read_restore_stats(archive, table))
        if not imports:
            return cls()
        small = [i["seconds"] for i in imports if i["bytes"] < _SMALL_IMPORT]
        base = statistics.median(small) if small else DEFAULT_IMPORT_BASE_SECONDS
        large = [
            max(0.0, i["seconds"] - base) / (i["bytes"] / GIB) for i in imports if i["bytes"] >= GIB
        ]
        per_gib = statistics.median(large) if large else DEFAULT_IMPORT_SECONDS_PER_GIB
        parts = []
        if small:
            parts.append(f"{len(small)} small import(s) took {base:.0f} s")
        if large:
            parts.append(f"{len(large)} import(s) of ≥ 1 GiB ran at {per_gib / 60:.1f} min/GiB")
        items = sum(i["items"] for i in imports)
        size = sum(i["bytes"] for i in imports)
        return cls(
            base,
            per_gib,
            "measured: " + "; ".join(parts) + ("" if small and large else " (the rest assumed)"),
            size / items if items else None,
        )

    def seconds_for(self, source_bytes: float) -> float:
        return self.base_seconds + self.seconds_per_gib * source_bytes / GIB

    def describe(self) -> str:
        return (
            f"{self.base_seconds / 60:.1f} min + {self.seconds_per_gib / 60:.1f} min/GiB, "
            f"{self.source}"
        )


def _imports(stats: Mapping[str, Any]) -> list[dict[str, float]]:
    found = []
    for entry in stats.get("imports") or []:
        try:
            found.append(
                {k: float(entry[k]) for k in ("bytes", "seconds", "items")}  # all required
            )
        except (KeyError, TypeError, ValueError):
            continue
    return [i for i in found if i["bytes"] > 0 and i["seconds"] > 0]


def record_import(
    archive: Archive, table: str, *, items: int, source_bytes: int, seconds: float
) -> None:
    """Keep a completed import's size and time for later estimates (best effort), beside the
    replay write rate in ``restore-stats.json``."""
    entry = {
        "items": items,
        "bytes": source_bytes,
        "seconds": round(seconds, 3),
        "measured_at": iso_ms(utcnow()),
    }

    def update(stats: dict[str, Any]) -> dict[str, Any]:
        stats["imports"] = [*(stats.get("imports") or []), entry][-_KEEP_IMPORTS:]
        return stats

    update_restore_stats(archive, table, update)
