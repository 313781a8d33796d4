from __future__ import annotations

import argparse
import json
import sys

from archiver.aws.clients import AwsSettings
from archiver.cliutil import add_table_argument, positive_float, positive_int
from archiver.format.timefmt import iso_ms
from archiver.native import backups as _library
from archiver.native.backups import (
    ACTIONS,
    Backup,
    create_backup,
    delete_backup,
    find_backup,
    list_backups,
    prune_backups,
    validate_backup_name,
)

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__


def _human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _print_table(backups: list[Backup]) -> None:
    if not backups:
        print("no backups")
        return
    rows = [
        (iso_ms(b.created_at), b.name, b.backup_type, b.status, _human_size(b.size_bytes), b.arn)
        for b in backups
    ]
    header = ("CREATED", "NAME", "TYPE", "STATUS", "SIZE", "ARN")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS, help="what to do")
    add_table_argument(parser, "the DynamoDB table")
    parser.add_argument(
        "--backup-name",
        metavar="N",
        help="create: the new backup's name (default <table>-<UTC stamp>; 3..255 characters "
        "of letters, digits, _ - .); delete: the backup to delete, when its name is unique",
    )
    parser.add_argument("--backup-arn", metavar="A", help="delete: the backup to delete")
    parser.add_argument(
        "--keep-days",
        type=positive_float,
        metavar="D",
        help="prune: keep backups younger than D days (fractions allowed)",
    )
    parser.add_argument(
        "--keep-last", type=positive_int, metavar="K", help="prune: keep the K newest backups"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="prune: print what would be deleted, delete nothing"
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="create: return once AWS accepted the request, without waiting for AVAILABLE",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.set_defaults(_parser=parser)


def _check_flags(args: argparse.Namespace) -> None:
    allowed = {
        "create": {"backup_name", "no_wait"},
        "list": set(),
        "delete": {"backup_name", "backup_arn"},
        "prune": {"keep_days", "keep_last", "dry_run"},
    }[args.action]
    for flag in ("backup_name", "backup_arn", "keep_days", "keep_last", "dry_run", "no_wait"):
        value = getattr(args, flag)
        if value not in (None, False) and flag not in allowed:
            option = "--" + flag.replace("_", "-")
            args._parser.error(f"{option} does not apply to 'backup {args.action}'")
    if args.action == "delete" and not (args.backup_arn or args.backup_name):
        args._parser.error("backup delete needs --backup-arn A or --backup-name N")
    if args.action == "prune" and args.keep_days is None and args.keep_last is None:
        args._parser.error("backup prune needs --keep-days D and/or --keep-last K")


def main(args: argparse.Namespace) -> int:
    _check_flags(args)
    if args.backup_name is not None and args.action == "create":
        validate_backup_name(args.backup_name)
    ddb = AwsSettings.from_args(args).client("dynamodb")
    if args.action == "create":
        backup = create_backup(ddb, args.table_name, args.backup_name, wait=not args.no_wait)
        if args.json:
            print(json.dumps(backup.to_json(), indent=2, sort_keys=True))
        else:
            print(
                f"created backup {backup.name} ({backup.status}) of {args.table_name}: {backup.arn}"
            )
        return 0
    if args.action == "list":
        backups = list_backups(ddb, args.table_name)
        if args.json:
            print(json.dumps([b.to_json() for b in backups], indent=2, sort_keys=True))
        else:
            _print_table(backups)
        return 0
    if args.action == "delete":
        backup = delete_backup(
            ddb, find_backup(ddb, args.table_name, arn=args.backup_arn, name=args.backup_name)
        )
        if args.json:
            print(json.dumps(backup.to_json(), indent=2, sort_keys=True))
        else:
            print(f"deleted backup {backup.name} ({backup.arn})")
        return 0
    doomed = prune_backups(
        ddb,
        args.table_name,
        keep_days=args.keep_days,
        keep_last=args.keep_last,
        dry_run=args.dry_run,
    )
    if args.json:
        print(
            json.dumps(
                {"dry_run": args.dry_run, "deleted": [b.to_json() for b in doomed]},
                indent=2,
                sort_keys=True,
            )
        )
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for backup in doomed:
        print(f"{verb} {backup.name} (created {iso_ms(backup.created_at)}): {backup.arn}")
    if not doomed:
        print("nothing to prune", file=sys.stderr)
    else:
        print(f"{verb} {len(doomed)} backup(s)", file=sys.stderr)
    return 0
