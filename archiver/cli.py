"""``ddb-archiver``: capture a DynamoDB table's history into the archive."""

from __future__ import annotations

from collections.abc import Sequence

from archiver.cliutil import Command, run

COMMANDS = [
    Command("run", "archiver.commands.run", "archive every stream record of a table (poller)"),
    Command(
        "snapshot",
        "archiver.commands.snapshot",
        "take a base snapshot (native export or parallel scan)",
    ),
    Command("compact", "archiver.commands.compact", "merge small change files per partition"),
    Command(
        "forget", "archiver.commands.forget", "erase keys' whole history from every archive object"
    ),
    Command("expire", "archiver.commands.expire", "delete history older than a retention horizon"),
    Command(
        "check",
        "archiver.commands.check",
        "find missing, truncated or replaced files; repair holes",
    ),
    Command(
        "pitr", "archiver.commands.pitr", "enable, disable or show native point-in-time recovery"
    ),
    Command(
        "backup", "archiver.commands.backup", "create, list, delete and prune on-demand backups"
    ),
    Command(
        "redrive",
        "archiver.commands.redrive",
        "archive the Lambda batches sent to the on-failure destination",
    ),
    Command(
        "incremental",
        "archiver.commands.incremental",
        "keep history from chained incremental exports (no stream reader)",
    ),
    Command(
        "backfill", "archiver.commands.backfill", "history back to PITR's earliest restorable time"
    ),
]

DESCRIPTION = (
    "Keep the complete change history of a DynamoDB table in an archive "
    "(s3://bucket/prefix or a local folder)."
)


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        "ddb-archiver",
        DESCRIPTION,
        COMMANDS,
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
