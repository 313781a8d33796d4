"""``ddb-replayer``: rebuild, verify and query tables from the archive."""

from __future__ import annotations

from collections.abc import Sequence

from archiver.cliutil import Command, run

COMMANDS = [
    Command("status", "replayer.commands.status", "what the archive holds per table"),
    Command(
        "restore",
        "replayer.commands.restore",
        "rebuild a table as it was at a time, into a new table",
    ),
    Command("export", "replayer.commands.export", "write the table as it was at a time to files"),
    Command(
        "verify", "replayer.commands.verify", "compare a table with the archive's state at a time"
    ),
    Command("diff", "replayer.commands.diff", "compare two live tables item by item"),
    Command(
        "rollback",
        "replayer.commands.rollback",
        "undo every change after a time, in the live table",
    ),
    Command("undo", "replayer.commands.undo", "undo one window of changes, keeping later ones"),
    Command(
        "history", "replayer.commands.history", "one item's timeline with attribute-level diffs"
    ),
    Command("query", "replayer.commands.query", "SQL over the archive (views: changes, snapshots)"),
    Command(
        "athena-setup",
        "replayer.commands.athena_setup",
        "create or update the Glue tables for Athena",
    ),
    Command(
        "serve", "replayer.commands.serve", "read-only DynamoDB endpoint of the tables at any time"
    ),
]

DESCRIPTION = "Rebuild any DynamoDB table as it was at any second, from the archive."


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        "ddb-replayer",
        DESCRIPTION,
        COMMANDS,
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
