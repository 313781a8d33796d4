"""Reading only some keys' rows from archive Parquet files: the row groups that can hold them.

A fold over a :class:`~replayer.planning.key_selection.KeySelection` (``--key``,
``--keys-file``, ``--where``) does not scan its change files and base snapshot: it reads each
file's footer (one small ranged read, files in parallel), keeps the row groups whose ``keys``
statistics (min/max) can contain a selected key — the rule ``ddb-archiver forget`` uses to find
rows — and reads only those, keeping only the selected keys' rows. Files sorted by key
(compacted change files) skip nearly every row group, so one item out of a hundred million reads
a few row groups; a row group without statistics is read.

The rows come back as one Arrow table (the selected keys' rows only, so it is small), which the
fold registers in its DuckDB session in place of the files; :class:`RowsRead` counts what was
read, for the command's summary. A file that vanished between listing and reading raises
``FileNotFoundError``, which the fold's re-listing handles as for any read.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from archiver.format.storage import Archive
from replayer.engines.dataset import reading_fs
from replayer.planning.key_selection import KeySelection

KEYS = "keys"
FOOTER_READERS = 16


@dataclass
class RowsRead:
    """What reads over a selection cost and found (accumulated over calls)."""

    files: int = 0
    row_groups: int = 0
    row_groups_read: int = 0
    rows_in_files: int = 0
    rows_read: int = 0  # rows of the row groups read
    rows_kept: int = 0  # of those, the selected keys' rows

    def add(self, other: RowsRead) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def describe(self) -> str:
        return (
            f"read {self.rows_read:,} of {self.rows_in_files:,} rows: the {self.row_groups_read:,} "
            f"of {self.row_groups:,} row groups ({self.files:,} files) whose key statistics can "
            f"hold the keys; {self.rows_kept:,} rows were theirs"
        )


def _statistics(metadata: pq.FileMetaData, group: int) -> tuple[str | None, str | None]:
    names = metadata.schema.names
    if KEYS not in names:
        return None, None
    stats = metadata.row_group(group).column(names.index(KEYS)).statistics
    if stats is None or not stats.has_min_max:
        return None, None
    return str(stats.min), str(stats.max)


def read_rows(
    archive: Archive,
    files: Sequence[str],
    schema: pa.Schema,
    selection: KeySelection,
    stats: RowsRead,
) -> pa.Table:
    """The rows of ``files`` (relative paths, columns ``schema``) whose key is selected,
    reading only the row groups that can hold one; adds what it read to ``stats``."""
    fs = reading_fs(archive)
    parquet = ds.ParquetFileFormat()

    def prune(rel: str) -> tuple[ds.Fragment | None, RowsRead]:
        fragment = parquet.make_fragment(archive.path(rel), filesystem=fs)
        metadata = fragment.metadata
        seen = RowsRead(files=1, row_groups=metadata.num_row_groups)
        seen.rows_in_files = metadata.num_rows
        groups = [
            g
            for g in range(metadata.num_row_groups)
            if metadata.row_group(g).num_rows and selection.may_hold(*_statistics(metadata, g))
        ]
        seen.row_groups_read = len(groups)
        seen.rows_read = sum(metadata.row_group(g).num_rows for g in groups)
        return (fragment.subset(row_group_ids=groups) if groups else None), seen

    with ThreadPoolExecutor(max_workers=max(1, min(FOOTER_READERS, len(files)))) as pool:
        pruned = list(pool.map(prune, files))
    fragments = [fragment for fragment, _ in pruned if fragment is not None]
    for _, seen in pruned:
        stats.add(seen)
    if not fragments:
        return schema.empty_table()
    dataset = ds.FileSystemDataset(fragments, schema, parquet, fs)
    wanted = pa.array(selection.keys, pa.string())
    rows = dataset.to_table(filter=pc.field(KEYS).isin(wanted))
    stats.rows_kept += rows.num_rows
    return rows
