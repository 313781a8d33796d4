"""What both command-line tools share: common flags, command registry, errors → exit codes,
and the arguments several commands take (``--archive``, table names, bounded numbers), each
defined once here so that their names, checks and help read the same everywhere.

A command lives in its own module, which defines ``add_arguments(parser)`` and
``main(args) -> int``; the tool's ``cli.py`` only lists them. Errors that a user can act on
(``ArchiverError``, ``ReplayError``) become one line on stderr and their exit code;
tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from archiver import __version__
from archiver.errors import EXIT_FAILURE, EXIT_USAGE


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    help: str


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and shows a flag's default when it has a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" not in text
            and default not in (None, False, argparse.SUPPRESS)
            and not isinstance(action, argparse._StoreFalseAction)  # "--no-x": default is on
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


def common_parent() -> argparse.ArgumentParser:
    """Flags every command takes: AWS endpoint/region/profile and --debug."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("AWS and output")
    group.add_argument(
        "--endpoint-url",
        help="send every AWS call (DynamoDB, Streams, S3) to this URL, e.g. a local emulator; "
        "default: AWS_ENDPOINT_URL[_<SERVICE>] or AWS itself",
    )
    group.add_argument("--region", help="AWS region (default: AWS_REGION / profile)")
    group.add_argument("--profile", help="AWS named profile (default: AWS_PROFILE)")
    group.add_argument(
        "--debug", action="store_true", help="verbose logging and full tracebacks on errors"
    )
    return parent


def build_parser(
    prog: str, description: str, commands: Sequence[Command]
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parent = common_parent()
    for command in commands:
        module = importlib.import_module(command.module)
        doc = (module.__doc__ or command.help).strip()
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=doc,
            parents=[parent],
            formatter_class=_HelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def run(
    prog: str, description: str, commands: Sequence[Command], argv: Sequence[str] | None
) -> int:
    """Parse ``argv``, run the command, and turn failures into exit codes."""
    parser = build_parser(prog, description, commands)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format=f"{prog}: %(levelname)s: %(message)s" if args.debug else f"{prog}: %(message)s",
        stream=sys.stderr,
    )
    if not args.debug:
        for noisy in ("botocore", "aiobotocore", "s3fs", "urllib3", "asyncio", "fsspec"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code = args._module.main(args)
        return int(code or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        exit_code = getattr(exc, "exit_code", None)
        if isinstance(exit_code, int):
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return exit_code
        print(
            f"{prog}: unexpected failure: {type(exc).__name__}: {exc} "
            "(rerun with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


# -- shared arguments -----------------------------------------------------------------------

ARCHIVE_HELP = "archive root: s3://bucket/prefix, file:///path or a local folder"


def add_archive_argument(parser: argparse.ArgumentParser, help: str = ARCHIVE_HELP) -> None:
    """``--archive URL`` (required): the archive root every archive-reading command takes."""
    parser.add_argument("--archive", required=True, metavar="URL", help=help)


def add_table_argument(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    flag: str = "--table-name",
    required: bool = True,
) -> None:
    """A table-name flag (``--table-name`` unless ``flag`` says otherwise), named as in the
    AWS CLI; ``help`` says which table it is to this command."""
    parser.add_argument(flag, required=required, help=help)


_N = TypeVar("_N", int, float)


def number_type(
    kind: Callable[[str], _N],
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    unit: str = "",
    why: str = "",
) -> Callable[[str], _N]:
    """An argparse ``type``: ``kind`` (``int`` or ``float``) of ``text``, within the bounds.

    Anything else is a usage error naming the bounds, e.g. ``'0' must be > 0`` or
    ``36 is outside 1..35 days (AWS's limits)``.

    Args:
        kind: ``int`` (whole numbers only) or ``float`` (fractions allowed).
        above: the value must be greater than this.
        at_least: the value must be at least this.
        at_most: the value must be at most this.
        unit: what the number counts (``days``), for messages.
        why: where the bounds come from, for messages.
    """
    noun = ("a whole number" if kind is int else "a number") + (f" of {unit}" if unit else "")
    span = f" {unit}" if unit else ""
    reason = f" ({why})" if why else ""

    def parse(text: str) -> _N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if at_least is not None and at_most is not None and not at_least <= value <= at_most:
            raise argparse.ArgumentTypeError(
                f"{value} is outside {at_least}..{at_most}{span}{reason}"
            )
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"{text!r} must be > {above}{reason}")
        if at_least is not None and not value >= at_least:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {at_least}{reason}")
        if at_most is not None and not value <= at_most:
            raise argparse.ArgumentTypeError(f"{text!r} must be <= {at_most}{reason}")
        return value

    parse.__name__ = getattr(kind, "__name__", "number")  # argparse names the type in errors
    return parse


positive_int = number_type(int, above=0)
positive_float = number_type(float, above=0)
non_negative_float = number_type(float, at_least=0)


__all__ = [
    "ARCHIVE_HELP",
    "EXIT_USAGE",
    "Command",
    "add_archive_argument",
    "add_table_argument",
    "non_negative_float",
    "number_type",
    "positive_float",
    "positive_int",
    "run",
]
