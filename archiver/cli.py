"""``ddb-archiver``: capture a DynamoDB table's history into the archive."""

from __future__ import annotations

from collections.abc import Sequence

from archiver.cliutil import Command, run

COMMANDS = [
    Command("run", "archiver.capture.runner", "archive every stream record of a table (poller)"),
    Command(
        "snapshot",
        "archiver.snapshots.base_snapshot",
        "take a base snapshot (native export or parallel scan)",
    ),
    Command("compact", "archiver.integrity.compaction", "merge small change files per partition"),
    Command(
        "forget", "archiver.erasure.forget", "erase keys' whole history from every archive object"
    ),
    Command("expire", "archiver.erasure.expire", "delete history older than a retention horizon"),
    Command(
        "check",
        "archiver.integrity.check",
        "find missing, truncated or replaced files; repair holes",
    ),
    Command(
        "pitr", "archiver.native.pitr", "enable, disable or show native point-in-time recovery"
    ),
    Command(
        "backup", "archiver.native.backups", "create, list, delete and prune on-demand backups"
    ),
    Command(
        "redrive",
        "archiver.lambda_mode.redrive",
        "archive the Lambda batches sent to the on-failure destination",
    ),
    Command(
        "incremental",
        "archiver.snapshots.export_chain",
        "keep history from chained incremental exports (no stream reader)",
    ),
    Command(
        "backfill", "archiver.snapshots.backfill", "history back to PITR's earliest restorable time"
    ),
]


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        "ddb-archiver",
        "Keep the complete change history of a DynamoDB table in an archive "
        "(s3://bucket/prefix or a local folder).",
        COMMANDS,
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
