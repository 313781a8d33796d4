"""Every archive path kind built by ``layout`` parses back to what it was built from, and a
path that is not of that kind (a foreign or temporary file, another folder) does not parse."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from archiver.format import layout

# Neither the format, the codec nor planning talks to AWS (see tests/conftest.py).
pytestmark = pytest.mark.no_aws

# Table names as DynamoDB allows them: digits only (a partition value that must stay a
# string), dots, dashes, underscores.
TABLES = ["007", "orders.v2", "my-table_1", "a.b-c"]
LABEL = "2026-01-31T12:00:00.000"
STAMP = "20260131T120000000Z"
SHARD = "shardId-00000001769860800000-1a2b3c4d"
FIRST = "1" + "0" * 39
LAST = "9" * 40


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("shard_id", [SHARD, layout.LAMBDA_SHARD, "shard_with_under_scores"])
def test_change_file_round_trips(table: str, shard_id: str) -> None:
    rel = layout.change_file(table, "2026-01-31", LABEL, shard_id, FIRST, "4711")
    parsed = layout.parse_change_file(rel)
    assert parsed == layout.ChangeFilePath(
        table, "2026-01-31", layout.ChangeFileName(STAMP, shard_id, FIRST, "4711".zfill(40))
    )
    assert parsed.name is not None
    assert layout.change_file_in(table, "2026-01-31", parsed.name) == rel
    assert layout.ChangeFileName.parse(rel) == parsed.name
    assert len(parsed.name.first_seq) == len(parsed.name.last_seq) == 40


def test_change_file_with_40_digit_sequence_numbers() -> None:
    rel = layout.change_file("007", "2026-01-31", LABEL, SHARD, FIRST, LAST)
    parsed = layout.parse_change_file(rel)
    assert parsed is not None and parsed.name is not None
    assert (parsed.name.first_seq, parsed.name.last_seq) == (FIRST, LAST)
    assert parsed.table == "007"


@pytest.mark.parametrize("table", TABLES)
def test_table_dirs_and_partitions_round_trip(table: str) -> None:
    assert layout.parse_table_dir(layout.changes_table_dir(table)) == layout.TableDir(
        layout.CHANGES, table
    )
    assert layout.parse_table_dir(layout.snapshots_table_dir(table)) == layout.TableDir(
        layout.SNAPSHOTS, table
    )
    assert layout.parse_table_dir(layout.state_dir(table)) == layout.TableDir(layout.STATE, table)
    assert layout.parse_changes_partition(
        layout.changes_partition(table, "2026-02-28")
    ) == layout.ChangesPartition(table, "2026-02-28")


@pytest.mark.parametrize("table", TABLES)
def test_snapshot_paths_round_trip(table: str) -> None:
    snapshot_id = layout.new_snapshot_id(datetime(2026, 1, 31, 12, 30, tzinfo=UTC))
    folder = layout.parse_snapshot_dir(layout.snapshot_dir(table, snapshot_id))
    assert folder == layout.SnapshotDir(table, snapshot_id)
    assert folder.manifest == layout.snapshot_manifest(table, snapshot_id)
    part = layout.parse_snapshot_file(layout.snapshot_part(table, snapshot_id, 7))
    assert part == layout.SnapshotFile(table, snapshot_id, "part-00007.parquet")
    assert part.part == 7 and not part.is_manifest
    manifest = layout.parse_snapshot_file(layout.snapshot_manifest(table, snapshot_id))
    assert manifest == layout.SnapshotFile(table, snapshot_id, layout.MANIFEST_NAME)
    assert manifest.is_manifest and manifest.part is None and manifest.folder == folder


@pytest.mark.parametrize("table", TABLES)
def test_state_paths_round_trip(table: str) -> None:
    rel = layout.checkpoint(table, LABEL, SHARD)
    assert layout.parse_checkpoint(rel) == layout.CheckpointPath(table, STAMP, SHARD)
    assert layout.parse_checkpoints_stream_dir(
        layout.checkpoints_stream_dir(table, STAMP)
    ) == layout.CheckpointStreamDir(table, STAMP)
    at = datetime(2026, 1, 31, 12, 0, 1, 234000, tzinfo=UTC)
    assert layout.parse_table_description(
        layout.table_description(table, at)
    ) == layout.TableDescriptionPath(table, "20260131T120001234Z")
    for built, name in [
        (layout.coverage(table), layout.COVERAGE_NAME),
        (layout.gaps(table), layout.GAPS_NAME),
        (layout.restore_stats(table), layout.RESTORE_STATS_NAME),
        (layout.compaction_pending(table), layout.COMPACTION_PENDING_NAME),
    ]:
        assert layout.parse_state_file(built) == layout.StateFilePath(table, name)


@pytest.mark.parametrize("export_id", ["01769860800000-1a2b3c4d", "5b1c8a6e-moto-uuid"])
def test_export_folders_round_trip(export_id: str) -> None:
    rel = layout.export_folder(export_id)
    assert rel.startswith(layout.exports_dir() + "/")
    assert layout.parse_export_folder(rel) == layout.ExportFolderPath(layout.EXPORTS, export_id)
    assert layout.parse_export_folder(
        f"s3://bucket/prefix/{layout.export_folder(export_id, '')}/"
    ) == layout.ExportFolderPath("s3://bucket/prefix", export_id)
    assert layout.parse_export_folder(
        layout.export_folder(export_id, "")
    ) == layout.ExportFolderPath("", export_id)
    key = f"prefix/{layout.export_folder(export_id, '')}/data/abc.json.gz"
    assert layout.export_relative_key(key, export_id) == "data/abc.json.gz"
    assert layout.export_relative_key("prefix/AWSDynamoDB/other/data/x.json.gz", export_id) is None


@pytest.mark.parametrize("export_id", ["01769860800000-1a2b3c4d", "5b1c8a6e-moto-uuid"])
def test_an_export_folders_files_are_named_by_layout(export_id: str) -> None:
    folder = layout.parse_export_folder(layout.export_folder(export_id))
    assert folder is not None and layout.parse_export_folder(folder.path) == folder
    assert folder.summary == f"{folder.path}/manifest-summary.json"
    assert folder.files_manifest == f"{folder.path}/manifest-files.json"
    assert folder.data_dir == f"{folder.path}/data"
    # Relative to the folder itself (a folder opened as a root of its own).
    assert layout.export_summary("") == "manifest-summary.json"
    assert layout.export_files_manifest("") == "manifest-files.json"
    # A manifest's data file key, whatever bucket prefix it carries, maps into the folder.
    key = f"any/prefix/data/{layout.export_folder(export_id, '')}/data/part.json.gz"
    assert f"{folder.path}/{layout.export_relative_key(key, export_id)}".startswith(
        folder.data_dir + "/"
    )


@pytest.mark.parametrize("table", TABLES)
def test_stream_arns_and_labels_round_trip(table: str) -> None:
    table_arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}"
    stream_arn = layout.stream_arn(table_arn, LABEL)
    assert layout.parse_stream_arn(stream_arn) == layout.StreamArn(table, LABEL)
    assert layout.stream_label_of(stream_arn) == LABEL
    assert layout.table_of_arn(stream_arn) == layout.table_of_arn(table_arn) == table
    assert layout.table_of_arn(f"{table_arn}/export/01769860800000-1a2b3c4d") == table
    created = layout.stream_label_time(LABEL)
    assert created == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert layout.label_stamp(LABEL) == STAMP
    assert layout.stream_label_time(LABEL + "Z") == created


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:kinesis:us-east-1:123456789012:stream/x",
        "arn:aws:dynamodb:us-east-1:123456789012:table/t",
        "arn:aws:dynamodb:us-east-1:123456789012:table//stream/2026-01-31T12:00:00.000",
        "arn:aws:dynamodb:us-east-1:123456789012:table/t/export/x",
        "not an arn",
    ],
)
def test_what_is_not_a_stream_arn_does_not_parse(arn: str) -> None:
    assert layout.parse_stream_arn(arn) is None


def test_snapshot_and_erasure_ids_sort_by_time_and_differ() -> None:
    early, late = datetime(2026, 1, 31, 12, tzinfo=UTC), datetime(2026, 1, 31, 13, tzinfo=UTC)
    for new_id in (layout.new_snapshot_id, layout.new_erasure_id):
        ids = {new_id(early) for _ in range(50)}
        assert len(ids) == 50
        assert all(i.startswith(STAMP + "-") for i in ids)
        assert max(ids) < new_id(late)


@pytest.mark.parametrize(
    "rel",
    [
        "changes/table_name=t/dt=2026-01-31/.20260131T120000000Z_s_1_2.parquet.tmp-1a2b",
        "changes/table_name=t/dt=2026-01-31/notes.txt",
        "changes/table_name=t/dt=2026-01-31/sub/x.parquet",
        "changes/table_name=t/x.parquet",
        "changes/t/dt=2026-01-31/x.parquet",
        "snapshots/table_name=t/dt=2026-01-31/x.parquet",
        "changes/table_name=/dt=2026-01-31/x.parquet",
    ],
)
def test_paths_outside_the_change_log_do_not_parse(rel: str) -> None:
    assert layout.parse_change_file(rel) is None


def test_a_foreign_file_name_in_a_partition_is_kept_but_says_nothing() -> None:
    """Readers still read it (the fold orders its records by their own stream ARN); compaction
    and resume points skip it."""
    parsed = layout.parse_change_file("changes/table_name=007/dt=2026-01-31/part-0.parquet")
    assert parsed == layout.ChangeFilePath("007", "2026-01-31", None)
    short = f"changes/table_name=t/dt=2026-01-31/{STAMP}_{SHARD}_1_2.parquet"
    assert layout.ChangeFileName.parse(short) is None


@pytest.mark.parametrize(
    ("parse", "rel"),
    [
        (layout.parse_snapshot_file, "snapshots/table_name=t/snapshot_id=x/notes.json"),
        (layout.parse_snapshot_file, "snapshots/table_name=t/snapshot_id=x/.part.parquet.tmp"),
        (layout.parse_snapshot_file, "snapshots/table_name=t/snapshot_id=x/sub/part.parquet"),
        (layout.parse_snapshot_dir, "snapshots/table_name=t/other=x"),
        (layout.parse_checkpoint, "_state/t/checkpoints/20260131T120000000Z/.s.json.tmp-1"),
        (layout.parse_checkpoint, "_state/t/checkpoints/20260131T120000000Z/s.txt"),
        (layout.parse_checkpoints_stream_dir, "_state/t/checkpoints/.tmp"),
        (layout.parse_table_description, "_state/t/table-description-latest.json"),
        (layout.parse_table_description, "_state/t/coverage.json"),
        (layout.parse_state_file, "_state/t/unknown.json"),
        (layout.parse_table_dir, "changes/.table_name=t"),
        (layout.parse_table_dir, "changes/t"),
        (layout.parse_table_dir, "_state/.hidden"),
        (layout.parse_export_folder, "exports/other/01769860800000-1a2b3c4d"),
        (layout.parse_export_folder, "exports/AWSDynamoDB/.tmp"),
    ],
)
def test_foreign_paths_do_not_parse(parse: object, rel: str) -> None:
    assert callable(parse)
    assert parse(rel) is None
