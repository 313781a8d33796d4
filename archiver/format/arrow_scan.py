"""Arrow datasets over archive files that DuckDB scans without ever holding the GIL on a wait.

DuckDB reads a registered pyarrow dataset by asking it for a scanner (with the columns and
filters it pushes down) and then calling the scanner's ``to_reader()``. pyarrow's
``Scanner.to_reader()`` starts the scan (Acero's ``StartProducing``) *while holding the GIL*,
and starting the scan takes the scan's own locks (the fragment generator's mutex, the task
scheduler's). Over a Python filesystem (``pyarrow.fs.PyFileSystem``: an S3 archive, read
through s3fs) Arrow's I/O threads call back into Python while holding those same locks: to
open the next file, or to format a Python exception (a vanished file, an object in Glacier)
when the scan aborts. When an I/O thread gets there first, it holds the lock and waits for
the GIL while the thread in ``to_reader()`` holds the GIL and waits for the lock: the query
hangs forever, at random (a few scans in a thousand).

Every other scanner call of pyarrow (``scan_batches``, ``to_table``, ``to_batches`` …)
releases the GIL while Arrow works. :func:`dataset` builds the same
:class:`pyarrow.dataset.FileSystemDataset` as :func:`pyarrow.dataset.dataset`, except that
the reader DuckDB asks for is built on ``scan_batches()``: the scan starts, and each batch is
awaited, with the GIL released, so an I/O thread's Python callback always gets it. DuckDB
still pushes its projection and filters into the scan (it sees a pyarrow ``Dataset``), and
the batches are the same. A local archive is read by pyarrow's own filesystem, which never
calls Python; this costs it nothing either.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds


def _batches(scanner: ds.Scanner) -> Iterator[pa.RecordBatch]:
    # scan_batches() starts the scan, and its iterator waits for each batch, without the GIL.
    for tagged in scanner.scan_batches():
        yield tagged.record_batch


class _Scan:
    """A pyarrow scanner whose ``to_reader()`` never holds the GIL while Arrow works; every
    other attribute is the scanner's."""

    def __init__(self, scanner: ds.Scanner) -> None:
        self._scanner = scanner

    def to_reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(
            self._scanner.projected_schema, _batches(self._scanner)
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scanner, name)


class ScanSafeDataset(ds.FileSystemDataset):
    """A :class:`pyarrow.dataset.FileSystemDataset` whose scanners read as :class:`_Scan`."""

    def scanner(self, *args: Any, **kwargs: Any) -> Any:
        return _Scan(super().scanner(*args, **kwargs))


def dataset(paths: list[str], **kwargs: Any) -> ScanSafeDataset:
    """:func:`pyarrow.dataset.dataset` over the files ``paths`` (``kwargs`` as it takes them:
    ``filesystem``, ``schema``, ``format``, ``partitioning`` …), safe for DuckDB to scan."""
    found = ds.dataset(paths, **kwargs)
    return ScanSafeDataset(
        list(found.get_fragments()),
        found.schema,
        found.format,
        found.filesystem,
        found.partition_expression,
    )
