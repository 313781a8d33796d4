"""Native point-in-time recovery (PITR): turn it on or off, set its recovery period, see its window.

PITR lets DynamoDB restore the table to any second of the last 1–35 days (the recovery
period) into a new table; ``ddb-replayer restore --strategy auto`` uses it when the requested
time is inside the restorable window. The archive keeps history beyond that window.

Examples:
  ddb-archiver pitr --table-name orders --status
  ddb-archiver pitr --table-name orders --enable --recovery-period-in-days 7
  ddb-archiver pitr --table-name orders --disable
"""

from __future__ import annotations

import argparse
import json

from archiver.aws.clients import AwsSettings
from archiver.cliutil import add_table_argument, number_type
from archiver.native.pitr import (
    DEFAULT_RECOVERY_DAYS,
    MAX_RECOVERY_DAYS,
    MIN_RECOVERY_DAYS,
    describe_pitr,
    set_pitr,
)

# ``--recovery-period-in-days``: whole days within AWS's limits.
recovery_period = number_type(
    int, at_least=MIN_RECOVERY_DAYS, at_most=MAX_RECOVERY_DAYS, unit="days", why="AWS's limits"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_table_argument(parser, "the DynamoDB table")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--enable", action="store_true", help="turn point-in-time recovery on")
    action.add_argument("--disable", action="store_true", help="turn point-in-time recovery off")
    action.add_argument(
        "--status",
        action="store_true",
        help="show whether PITR is on, its recovery period and the restorable window",
    )
    parser.add_argument(
        "--recovery-period-in-days",
        type=recovery_period,
        metavar="N",
        help=f"with --enable: keep N days of history ({MIN_RECOVERY_DAYS}..{MAX_RECOVERY_DAYS}; "
        f"AWS's default is {DEFAULT_RECOVERY_DAYS}, and an existing period is kept when omitted)",
    )
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.set_defaults(_parser=parser)


def main(args: argparse.Namespace) -> int:
    if args.recovery_period_in_days is not None and not args.enable:
        args._parser.error("--recovery-period-in-days goes with --enable")
    ddb = AwsSettings.from_args(args).client("dynamodb")
    if args.enable:
        status = set_pitr(
            ddb, args.table_name, enabled=True, recovery_period_in_days=args.recovery_period_in_days
        )
    elif args.disable:
        status = set_pitr(ddb, args.table_name, enabled=False)
    else:
        status = describe_pitr(ddb, args.table_name)
    if args.json:
        print(json.dumps(status.to_json(), indent=2, sort_keys=True))
    else:
        print(status.describe())
    return 0
