"""Create or update the Glue tables ``changes`` and ``snapshots`` that Athena queries.

``ddb-replayer athena-setup --archive s3://bucket/prefix --database D`` makes the Glue
database ``D`` (if missing) and the two tables over the archive, with partition projection
(no crawler, no ``MSCK REPAIR``): ``table_name`` is an enum of the archived tables — every
table found in the archive unless ``--table-name`` lists them — and ``dt`` a date range
from ``--projection-start`` to today. Run it again after archiving a new table: a table
missing from the enum is invisible to Athena (its queries return no rows), so
``--engine athena`` refuses to fold a table the Glue table does not list.

The definitions here are the single source: ``deploy/template.yaml`` declares the same
``TableInput`` (``tests/test_athena_setup.py`` checks the two agree), with the stack's
bucket and parameters in place of the arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from archiver.aws.error_table import (
    ResourceInUse,
    ResourceNotFound,
    client_error_code,
    is_error,
    translate_client_error,
)
from archiver.format import layout
from archiver.format.schema import CHANGE_SCHEMA, PARTITION_SCHEMA, SNAPSHOT_SCHEMA
from archiver.format.storage import Archive

CHANGES_TABLE = "changes"
SNAPSHOTS_TABLE = "snapshots"
DEFAULT_PROJECTION_START = "2024-01-01"
_HIVE_TYPES = {"string": "string", "timestamp[ms, tz=UTC]": "timestamp", "int64": "bigint"}
_PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    },
}


def _columns(schema: Any) -> list[dict[str, str]]:
    return [{"Name": f.name, "Type": _HIVE_TYPES[str(f.type)]} for f in schema]


def changes_table_input(
    root: str, table_names: Sequence[str], projection_start: str = DEFAULT_PROJECTION_START
) -> dict[str, Any]:
    """Glue ``TableInput`` of ``changes`` over the archive at ``root`` (``s3://bucket[/prefix]``)."""
    location = f"{root.rstrip('/')}/{layout.CHANGES}/"
    return {
        "Name": CHANGES_TABLE,
        "Description": "Every archived DynamoDB stream record (deploy/athena/changes_table.sql).",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "classification": "parquet",
            "parquet.compression": "ZSTD",
            "projection.enabled": "true",
            "projection.table_name.type": "enum",
            "projection.table_name.values": ",".join(table_names),
            "projection.dt.type": "date",
            "projection.dt.format": "yyyy-MM-dd",
            "projection.dt.range": f"{projection_start},NOW",
            "projection.dt.interval": "1",
            "projection.dt.interval.unit": "DAYS",
            "storage.location.template": location + "table_name=${table_name}/dt=${dt}",
        },
        "PartitionKeys": _columns(PARTITION_SCHEMA),
        "StorageDescriptor": {
            "Location": location,
            **_PARQUET,
            "Columns": _columns(CHANGE_SCHEMA),
        },
    }


def snapshots_table_input(root: str, table_names: Sequence[str]) -> dict[str, Any]:
    """Glue ``TableInput`` of ``snapshots`` (``snapshot_id`` is an injected projection: every
    query names the snapshot)."""
    location = f"{root.rstrip('/')}/{layout.SNAPSHOTS}/"
    return {
        "Name": SNAPSHOTS_TABLE,
        "Description": (
            "Base snapshots; name one with WHERE snapshot_id = '...' "
            "(deploy/athena/snapshots_table.sql)."
        ),
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "classification": "parquet",
            "projection.enabled": "true",
            "projection.table_name.type": "enum",
            "projection.table_name.values": ",".join(table_names),
            "projection.snapshot_id.type": "injected",
            "storage.location.template": location
            + "table_name=${table_name}/snapshot_id=${snapshot_id}",
        },
        "PartitionKeys": [
            {"Name": "table_name", "Type": "string"},
            {"Name": "snapshot_id", "Type": "string"},
        ],
        "StorageDescriptor": {
            "Location": location,
            **_PARQUET,
            "Columns": _columns(SNAPSHOT_SCHEMA),
        },
    }


def archived_tables(archive: Archive) -> list[str]:
    """Every table the archive holds changes, snapshots or state of."""
    names: set[str] = set()
    for top in (layout.CHANGES, layout.SNAPSHOTS):
        for entry in archive.listdir(top):
            if entry.startswith("table_name="):
                names.add(entry[len("table_name=") :])
    names.update(e for e in archive.listdir(layout.STATE) if not e.startswith("."))
    return sorted(names)


def projected_tables(table: dict[str, Any]) -> list[str]:
    """The table names a Glue table's ``table_name`` enum projection admits."""
    values = str((table.get("Parameters") or {}).get("projection.table_name.values", ""))
    return [v.strip() for v in values.split(",") if v.strip()]


def setup(
    glue: Any,
    database: str,
    root: str,
    table_names: Sequence[str],
    *,
    projection_start: str = DEFAULT_PROJECTION_START,
) -> list[str]:
    """Create or update the database and both tables; returns what was done, one line each."""
    done = []
    try:
        glue.create_database(DatabaseInput={"Name": database})
        done.append(f"created Glue database {database}")
    except Exception as exc:
        if not is_error(exc, ResourceInUse):
            raise translate_client_error(exc, f"CreateDatabase {database}") from exc
    for table_input in (
        changes_table_input(root, table_names, projection_start),
        snapshots_table_input(root, table_names),
    ):
        name = table_input["Name"]
        try:
            glue.get_table(DatabaseName=database, Name=name)
            exists = True
        except Exception as exc:
            if not is_error(exc, ResourceNotFound):
                raise translate_client_error(exc, f"GetTable {database}.{name}") from exc
            exists = False
        try:
            if exists:
                glue.update_table(DatabaseName=database, TableInput=table_input)
                done.append(f"updated Glue table {database}.{name}")
            else:
                glue.create_table(DatabaseName=database, TableInput=table_input)
                done.append(f"created Glue table {database}.{name}")
        except Exception as exc:
            if client_error_code(exc):
                raise translate_client_error(exc, f"Glue table {database}.{name}") from exc
            raise
    return done
