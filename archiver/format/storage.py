"""Opening the archive root URL as one filesystem (s3fs for ``s3://``, local otherwise).

All archive I/O goes through :class:`Archive`: local writes go to a temporary name, are
fsynced and renamed into place; an S3 PUT is atomic by itself.

Change records are the table's data, so a local archive is private by default: files are
created with mode ``0600`` and the folders the archive creates ``0700``, whatever the umask
(``file_mode`` — the CLI's ``--file-mode`` — says otherwise; folders get the same bits plus
search where reading is allowed). Folders that already exist keep their mode.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import fsspec
import orjson
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from archiver.format.errors import UsageError
from archiver.format.schema import COMPRESSION, ROW_GROUP_ROWS

DEFAULT_FILE_MODE = 0o600


def folder_mode(file_mode: int) -> int:
    """The mode of folders for files of ``file_mode``: the same bits, plus search (``x``) for
    whoever may read (``0600`` → ``0700``, ``0640`` → ``0750``)."""
    return file_mode | ((file_mode & 0o444) >> 2)


class Archive:
    """An archive root: a filesystem plus the root path inside it. Constructing does no I/O.

    ``file_mode``: the permissions of the files a local archive creates (see the module's
    docstring); S3 has no modes.
    """

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        root: str,
        url: str,
        *,
        file_mode: int = DEFAULT_FILE_MODE,
    ) -> None:
        if not 0 <= file_mode <= 0o777:
            raise UsageError(f"file mode {file_mode:o} is not a permission mode (0000..0777)")
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        self.file_mode = file_mode

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(
        cls, url: str, *, endpoint_url: str | None = None, file_mode: int = DEFAULT_FILE_MODE
    ) -> Archive:
        """Open ``s3://bucket/prefix``, ``file:///path`` or a plain local path.

        For S3 the endpoint comes from ``endpoint_url`` (``--endpoint-url``), else from
        ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (botocore reads those itself), else AWS.
        ``file_mode``: the permissions of local files written (folders: :func:`folder_mode`).
        """
        if not url:
            raise UsageError("--archive is required (s3://bucket/prefix or a local folder)")
        if url.startswith("s3://") or url.startswith("s3a://"):
            import s3fs

            bucket_path = url.split("://", 1)[1].rstrip("/")
            if not bucket_path:
                raise UsageError(f"archive URL {url!r} names no bucket")
            client_kwargs: dict[str, Any] = {}
            endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
            if endpoint:
                client_kwargs["endpoint_url"] = endpoint
            fs = s3fs.S3FileSystem(
                client_kwargs=client_kwargs,
                skip_instance_cache=True,
                use_listings_cache=False,
            )
            return cls(fs, bucket_path, url, file_mode=file_mode)
        if "://" in url and not url.startswith("file://"):
            raise UsageError(f"archive URL {url!r}: use s3://bucket/prefix, file:///path or a path")
        path = url[len("file://") :] if url.startswith("file://") else url
        path = os.path.abspath(os.path.expanduser(path))
        return cls(LocalFileSystem(auto_mkdir=True), path, url, file_mode=file_mode)

    @property
    def _is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    # -- what callers need to know about where the archive is -----------------------------

    def s3_location(self, rel: str = "") -> tuple[str, str] | None:
        """``(bucket, key prefix)`` of ``rel`` when the archive is in S3, else ``None``.

        AWS services that write to S3 themselves (``ExportTableToPointInTime``) can write
        there only when this is not ``None``.
        """
        if self._is_local:
            return None
        bucket, _, key = self.path(rel).partition("/")
        return bucket, key

    def duckdb_paths(self, rels: Sequence[str]) -> list[str] | None:
        """Full paths DuckDB can open itself (its own Parquet reader, fastest), or ``None`` when
        it must read through an Arrow dataset over :meth:`arrow_filesystem` (S3: the archive's
        endpoint, credentials and error handling go with it)."""
        if not self._is_local:
            return None
        return [self.path(rel) for rel in rels]

    def path(self, rel: str) -> str:
        """The full path of ``rel`` inside this filesystem."""
        return f"{self.root}/{rel}" if rel else self.root

    def rel(self, full: str) -> str:
        """``full`` (as the filesystem lists it) relative to the root."""
        full = full.rstrip("/")
        if self._is_local:
            full = os.path.abspath(full)
        prefix = self.root + "/"
        return full[len(prefix) :] if full.startswith(prefix) else full

    def uri(self, rel: str) -> str:
        """A URL for ``rel`` (for messages and for tools that take URLs)."""
        if self._is_local:
            return self.path(rel)
        return f"s3://{self.path(rel)}"

    # -- bytes and JSON -------------------------------------------------------------------

    def put_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` at ``rel`` atomically and durably: it is there whole, or not at all."""
        full = self.path(rel)
        if not self._is_local:
            self.fs.pipe_file(full, data)
            return
        directory = os.path.dirname(full)
        self._make_folders(directory)
        tmp = f"{directory}/.{os.path.basename(full)}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(fd, self.file_mode)  # exactly the mode asked for, whatever the umask
                handle.write(data)
                handle.flush()
                os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.replace(tmp, full)

    def _make_folders(self, directory: str) -> None:
        """Create ``directory`` and its missing parents with :func:`folder_mode`."""
        if os.path.isdir(directory):
            return
        missing = []
        while not os.path.isdir(directory):
            missing.append(directory)
            parent = os.path.dirname(directory)
            if parent == directory:
                break
            directory = parent
        mode = folder_mode(self.file_mode)
        for folder in reversed(missing):
            try:
                os.mkdir(folder, mode)
            except FileExistsError:
                continue  # made meanwhile (another writer): keep its mode
            os.chmod(folder, mode)

    def get_bytes(self, rel: str) -> bytes:
        data: bytes = self.fs.cat_file(self.path(rel))
        return data

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.path(rel)))

    def delete(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.rm_file(self.path(rel))

    def write_json(self, rel: str, obj: Any) -> None:
        self.put_bytes(rel, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))

    def read_json(self, rel: str) -> Any:
        return orjson.loads(self.get_bytes(rel))

    def read_json_or(self, rel: str, default: Any = None) -> Any:
        """The parsed file, or ``default`` when it does not exist."""
        try:
            return self.read_json(rel)
        except FileNotFoundError:
            return default

    def append_jsonl(self, rel: str, obj: Any) -> None:
        """Append one JSON line (read + rewrite: S3 has no append; state files are small)."""
        try:
            existing = self.get_bytes(rel)
        except FileNotFoundError:
            existing = b""
        if existing and not existing.endswith(b"\n"):
            existing += b"\n"
        self.put_bytes(rel, existing + orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) + b"\n")

    def read_jsonl(self, rel: str) -> list[Any]:
        try:
            data = self.get_bytes(rel)
        except FileNotFoundError:
            return []
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]

    # -- listing --------------------------------------------------------------------------

    def listdir(self, rel: str) -> list[str]:
        """Names (not paths) directly under ``rel``; empty when it does not exist."""
        full = self.path(rel)
        self.fs.invalidate_cache(full)
        try:
            entries = self.fs.ls(full, detail=False)
        except FileNotFoundError:
            return []
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries)

    def find(self, rel: str, suffix: str = "") -> list[str]:
        """Every file below ``rel`` (relative to the root), sorted; temporary files skipped."""
        full = self.path(rel)
        self.fs.invalidate_cache(full)
        try:
            found = self.fs.find(full)
        except FileNotFoundError:
            return []
        out = []
        for entry in found:
            name = entry.rsplit("/", 1)[-1]
            if name.startswith(".") or not name.endswith(suffix):
                continue
            out.append(self.rel(entry))
        return sorted(out)

    def walk_files(self, rel: str, suffix: str = "") -> Iterator[tuple[str, int]]:
        """``(relative path, size)`` of every file below ``rel``."""
        full = self.path(rel)
        self.fs.invalidate_cache(full)
        try:
            found = self.fs.find(full, detail=True)
        except FileNotFoundError:
            return
        for entry, info in sorted(found.items()):
            name = entry.rsplit("/", 1)[-1]
            if not name.startswith(".") and name.endswith(suffix):
                yield self.rel(entry), int(info.get("size") or 0)

    # -- Parquet --------------------------------------------------------------------------

    @property
    def arrow_fs(self) -> pafs.FileSystem:
        """The same filesystem for pyarrow (datasets, DuckDB scans over Arrow)."""
        return self.arrow_filesystem()

    def arrow_filesystem(
        self, handler: type[pafs.FSSpecHandler] = pafs.FSSpecHandler
    ) -> pafs.FileSystem:
        """The same filesystem for pyarrow, reading through ``handler`` (an
        :class:`pyarrow.fs.FSSpecHandler` subclass, e.g. one that adds the object's name to
        read errors) wherever pyarrow reads through fsspec. A local archive is read by
        pyarrow's own filesystem: its errors already name the file."""
        if self._is_local:
            return pafs.LocalFileSystem()
        return pafs.PyFileSystem(handler(self.fs))

    def write_parquet(self, rel: str, table: pa.Table) -> int:
        """Write ``table`` as one zstd Parquet file at ``rel``, atomically; returns its size."""
        buffer = io.BytesIO()
        pq.write_table(
            table,
            buffer,
            compression=COMPRESSION,
            row_group_size=ROW_GROUP_ROWS,
            write_statistics=True,
        )
        data = buffer.getvalue()
        self.put_bytes(rel, data)
        return len(data)

    def read_parquet(self, rel: str) -> pa.Table:
        return pq.read_table(self.path(rel), filesystem=self.arrow_fs)

    # -- object versions and locks (S3; a local archive has neither) ------------------------

    def _bucket_key(self, rel: str) -> tuple[str, str]:
        bucket, _, key = self.path(rel).partition("/")
        return bucket, key

    def _s3(self, method: str, **kwargs: Any) -> Any:
        return self.fs.call_s3(method, **kwargs)

    def versioned(self) -> bool:
        """Whether the bucket keeps old versions of overwritten or deleted objects."""
        if self._is_local:
            return False
        bucket, _ = self._bucket_key("")
        status = self._s3("get_bucket_versioning", Bucket=bucket).get("Status")
        return status in ("Enabled", "Suspended")

    def noncurrent_versions(self, rel: str) -> list[str]:
        """Version ids of ``rel``'s noncurrent versions and delete markers (oldest last)."""
        if self._is_local:
            return []
        bucket, key = self._bucket_key(rel)
        out: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key}
        while True:
            page = self._s3("list_object_versions", **kwargs)
            for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if entry.get("Key") == key and not entry.get("IsLatest"):
                    out.append(str(entry["VersionId"]))
            if not page.get("IsTruncated"):
                return out
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")

    def delete_version(self, rel: str, version_id: str) -> None:
        """Delete one version of ``rel`` for good (s3:DeleteObjectVersion)."""
        bucket, key = self._bucket_key(rel)
        self._s3("delete_object", Bucket=bucket, Key=key, VersionId=version_id)

    def object_lock(self, rel: str) -> tuple[str | None, Any, bool]:
        """``(mode, retain_until, legal_hold)`` of ``rel``'s current version (S3 Object Lock)."""
        if self._is_local:
            return None, None, False
        bucket, key = self._bucket_key(rel)
        head = self._s3("head_object", Bucket=bucket, Key=key)
        hold = head.get("ObjectLockLegalHoldStatus") == "ON"
        return head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate"), hold
