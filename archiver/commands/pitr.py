from __future__ import annotations

import argparse
import json

from archiver.aws.clients import AwsSettings
from archiver.cliutil import add_table_argument, number_type
from archiver.native import pitr as _library
from archiver.native.pitr import (
    DEFAULT_RECOVERY_DAYS,
    MAX_RECOVERY_DAYS,
    MIN_RECOVERY_DAYS,
    describe_pitr,
    set_pitr,
)

# --help shows the library module's own account of the command: one text, kept
# beside the code it describes.
__doc__ = _library.__doc__

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
