"""What both command-line tools share: common flags, command registry, errors → exit codes,
and the arguments several commands take (``--archive``, table names, bounded numbers), each
defined once here so that their names, checks and help read the same everywhere.

A command lives in its own module, which defines ``add_arguments(parser)`` and
``main(args) -> int``; the tool's ``cli.py`` only lists them. Errors that a user can act on
(``ArchiverError``, ``ReplayError``) become one line on stderr and their exit code; so do the
AWS set-up errors any command can meet, mapped here once rather than per command: no
credentials (exit 2, naming ``--profile`` / ``AWS_PROFILE`` and the key variables, wherever in
the exception's chain botocore raised it), no region (exit 2), an endpoint nothing answers on
(exit 1). Tracebacks only with ``--debug`` (logged). Every log line and error line passes through
:class:`RedactSecrets` first: botocore logs signed requests, and those carry credentials.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from archiver import __version__
from archiver.aws import metrics
from archiver.aws.error_table import EXIT_FAILURE, EXIT_USAGE
from archiver.format.storage import DEFAULT_FILE_MODE, Archive
from archiver.lambda_mode import failures as lambda_failures
from archiver.lambda_mode import stall as lambda_stall


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
    prog: str,
    description: str,
    commands: Sequence[Command],
    only: Sequence[str] | None = None,
) -> argparse.ArgumentParser:
    """The tool's parser, every command's arguments included — or, with ``only``, just those
    commands' (the others listed by name and help, their modules not imported: a command
    starts without loading every other command's libraries)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parent = common_parent()
    for command in commands:
        if only is not None and command.name not in only:
            subparsers.add_parser(command.name, help=command.help, add_help=False)
            continue
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
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog, description, commands, only=_chosen(words, commands))
    args = parser.parse_args(words)
    honour_aws_region()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format=f"{prog}: %(levelname)s: %(message)s" if args.debug else f"{prog}: %(message)s",
        stream=sys.stderr,
    )
    install_redaction()
    if not args.debug:
        for noisy in ("botocore", "aiobotocore", "s3fs", "urllib3", "asyncio", "fsspec"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    emf = getattr(args, "_emf_at_exit", False) and getattr(args, "metrics", "none") == "emf"
    at_end = contextlib.ExitStack()
    if emf:
        at_end.enter_context(metrics.emf_at_end())
    try:
        code = args._module.main(args)
        return int(code or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            # Through the log, so that the traceback passes the redaction filter too.
            logging.getLogger(prog).exception("%s failed", args.command)
        if any(isinstance(error, NoCredentialsError) for error in _chain(exc)):
            # Before the exit code: whatever a command wrapped it in, this is what to fix.
            _say(f"{prog}: error: {NO_CREDENTIALS}")
            return EXIT_USAGE
        exit_code = getattr(exc, "exit_code", None)
        if isinstance(exit_code, int):
            _say(f"{prog}: error: {exc}")
            return exit_code
        if isinstance(exc, NoRegionError):
            _say(f"{prog}: error: no AWS region: set AWS_REGION or pass --region")
            return EXIT_USAGE
        unreachable = unreachable_endpoint(exc)
        if unreachable is not None:
            _say(f"{prog}: error: {unreachable}")
            return EXIT_FAILURE
        _say(
            f"{prog}: unexpected failure: {type(exc).__name__}: {exc}"
            + ("" if args.debug else " (rerun with --debug for details)")
        )
        return EXIT_FAILURE
    finally:
        at_end.close()


def _chosen(words: Sequence[str], commands: Sequence[Command]) -> list[str]:
    """The command ``words`` name (the first word that is not an option), as a list of at most
    one: only its module is imported to parse them."""
    names = {c.name for c in commands}
    for word in words:
        if not word.startswith("-"):
            return [word] if word in names else []
    return []


NO_CREDENTIALS = (
    "no AWS credentials found: pass --profile or set AWS_PROFILE, or set AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY (or run with an instance, task or function role)"
)


def honour_aws_region() -> None:
    """Make ``AWS_REGION`` count as the AWS CLI and the other SDKs count it.

    botocore reads only ``AWS_DEFAULT_REGION`` (and the profile); ``AWS_REGION`` is what
    Lambda, containers and the AWS CLI v2 set and what our messages name. Copying it into
    ``AWS_DEFAULT_REGION`` when that is unset reaches every client at once — boto3,
    aiobotocore, s3fs and the writer processes a restore starts — with AWS_DEFAULT_REGION
    still winning where both are set.
    """
    region = os.environ.get("AWS_REGION")
    if region and not os.environ.get("AWS_DEFAULT_REGION"):
        os.environ["AWS_DEFAULT_REGION"] = region


def _say(line: str) -> None:
    """One line on stderr, credentials redacted (an exception's text can quote a request)."""
    print(redact(line), file=sys.stderr)


# -- secrets in log lines -------------------------------------------------------------------

REDACTED = "<redacted>"
# botocore's DEBUG lines show each signed request: its headers (``'Authorization':
# b'AWS4-HMAC-SHA256 Credential=AKIA…/…, Signature=…'``, ``'X-Amz-Security-Token': b'…'``), the
# canonical request (``x-amz-security-token:…``) and the signature; presigned URLs carry the same
# as query parameters; STS and credential-provider responses carry keys as fields.
_SECRET_FIELDS = (
    r"aws_access_key_id|aws_secret_access_key|aws_session_token|aws_security_token"
    r"|access_key_id|secret_access_key|session_token|security_token"
    r"|AccessKeyId|SecretAccessKey|SessionToken|SecretKey"
)
_SECRETS: list[tuple[re.Pattern[str], str]] = [
    # a header in a dict's repr: 'Authorization': b'…'
    (
        re.compile(
            r"""(['"](?:authorization|x-amz-security-token)['"]\s*:\s*b?['"])[^'"]*""", re.I
        ),
        rf"\1{REDACTED}",
    ),
    # a header as a line: canonical requests, wire dumps
    (
        re.compile(r"^(\s*(?:authorization|x-amz-security-token)\s*:[ \t]*)\S.*$", re.I | re.M),
        rf"\1{REDACTED}",
    ),
    # presigned URLs and anything else in query-string form
    (
        re.compile(
            r"((?:X-Amz-Credential|X-Amz-Security-Token|X-Amz-Signature|AWSAccessKeyId|Signature)=)"
            r"[^&\s'\"]+",
            re.I,
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(\bCredential=)[^,&\s'\"]+", re.I), rf"\1{REDACTED}"),
    # botocore.auth's "Signature:\n<hex>"
    (re.compile(r"(\bSignature:\s*)[0-9a-f]{64}\b", re.I), rf"\1{REDACTED}"),
    # credential fields: key = value, "Key": "value", <Key>value</Key>
    (
        re.compile(rf"""(\b(?:{_SECRET_FIELDS})['"]?\s*[:=]\s*b?['"]?)[^'"\s,}}&<]+""", re.I),
        rf"\1{REDACTED}",
    ),
    (re.compile(rf"(<({_SECRET_FIELDS})>)[^<]*(</\2>)", re.I), rf"\1{REDACTED}\3"),
    # container and instance-metadata credentials name the session token just "Token"
    (re.compile(r"""(['"]Token['"]\s*:\s*b?['"])[^'"]*"""), rf"\1{REDACTED}"),
]


def redact(text: str) -> str:
    """``text`` with every credential, session token and request signature replaced."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """A handler filter that redacts credentials from the message, traceback and stack of
    every record, whichever library logged it (a handler's filters see propagated records;
    a logger's do not)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as it would
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_REDACT = RedactSecrets()


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Put :class:`RedactSecrets` on every handler of ``logger`` (default: the root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if _REDACT not in handler.filters:
            handler.addFilter(_REDACT)


# -- unreachable endpoints -------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and the members of exception groups, each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]
        if isinstance(current, BaseExceptionGroup):
            todo += current.exceptions


def _failed_call(tb: TracebackType | None) -> tuple[str, str] | None:
    """(service id, operation) of the botocore/aiobotocore call a traceback went through.

    botocore's connection errors carry only the URL, and with one ``--endpoint-url`` for every
    service the URL does not say which service it was; the client's ``_make_api_call`` frame
    does (``self`` is the client, for both the sync and the async client).
    """
    found = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "_make_api_call":
            client = frame.f_locals.get("self")
            service_model = getattr(getattr(client, "meta", None), "service_model", None)
            if service_model is not None:
                found = (str(service_model.service_id), str(frame.f_locals.get("operation_name")))
        tb = tb.tb_next
    return found


def unreachable_endpoint(exc: BaseException) -> str | None:
    """One line naming the endpoint (and service) that could not be reached, when nothing
    answered there: a wrong ``--endpoint-url``, a typo in ``AWS_ENDPOINT_URL*``, no network.

    None when ``exc`` is something else.
    """
    for error in _chain(exc):
        if isinstance(error, EndpointConnectionError | ConnectTimeoutError):
            break
    else:
        return None
    url = str(error.kwargs.get("endpoint_url") or "")
    parts = urlsplit(url)
    endpoint = f"{parts.scheme}://{parts.netloc}" if parts.netloc else url
    call = next(filter(None, (_failed_call(e.__traceback__) for e in _chain(exc))), None)
    if call is None:
        return (
            f"could not connect to the AWS endpoint {endpoint}: check --endpoint-url, "
            "AWS_ENDPOINT_URL*, --region and the network"
        )
    service, operation = call
    variable = "AWS_ENDPOINT_URL_" + re.sub(r"\W+", "_", service).upper()
    return (
        f"could not connect to the {service} endpoint {endpoint} ({operation}): check "
        f"--endpoint-url, {variable} or AWS_ENDPOINT_URL, --region and the network"
    )


# -- shared arguments -----------------------------------------------------------------------

ARCHIVE_HELP = "archive root: s3://bucket/prefix, file:///path or a local folder"


def add_archive_argument(parser: argparse.ArgumentParser, help: str = ARCHIVE_HELP) -> None:
    """``--archive URL`` (required): the archive root every archive-reading command takes."""
    parser.add_argument("--archive", required=True, metavar="URL", help=help)


def file_mode(text: str) -> int:
    """An argparse ``type``: a permission mode in octal (``600``, ``0640``, ``0o640``)."""
    digits = text.lower().removeprefix("0o")
    try:
        mode = int(digits, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode (e.g. 0600)") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is outside 0000..0777")
    return mode


def add_file_mode_argument(parser: argparse.ArgumentParser, what: str = "archive") -> None:
    """``--file-mode MODE``: the permissions of the local files a writing command creates."""
    parser.add_argument(
        "--file-mode",
        type=file_mode,
        default=f"{DEFAULT_FILE_MODE:04o}",  # argparse converts it: the help shows 0600
        metavar="MODE",
        help=f"permissions (octal) of the files a local {what} gets; its new folders get the "
        "same plus search where readable (0600: folders 0700; S3 has no modes)",
    )


def open_archive(
    args: argparse.Namespace, url: str | None = None, *, endpoint_url: str | None = None
) -> Archive:
    """The archive at ``url`` (default ``--archive``), writing files with ``--file-mode``."""
    return Archive.open(
        url if url is not None else args.archive,
        endpoint_url=endpoint_url if endpoint_url is not None else args.endpoint_url,
        file_mode=getattr(args, "file_mode", DEFAULT_FILE_MODE),
    )


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


# -- flags several commands share: each declared once, here --------------------------------

TIME_FORMS = "ISO 8601 with a zone (2026-01-31T12:00:00Z) or epoch seconds (1769860800.5)"
LATEST_HELP = "the watermark instead: the latest instant up to which every change is archived"
ALLOW_GAPS_HELP = (
    "go on across a recorded gap in the log: the changes in the gap are missing from the "
    "result (warned about loudly)"
)
ALLOW_INEXACT_HELP = (
    "inside an incremental-export window, take the keys whose state at T is not known "
    "(written later in the window) as they were at the window's start, instead of refusing "
    "(said in the output)"
)
LAMBDA_FAILURES_HELP = (
    "where the Lambda event source mapping's on-failure destination writes failed batches "
    f"(default: {lambda_failures.ENV_LOCATION}, else s3://<archive bucket>/"
    f"{lambda_failures.STACK_PREFIX}/ as the stack configures it)"
)
SEGMENTS_HELP = "parallel Scan segments"


def add_restore_time_arguments(
    parser: argparse.ArgumentParser, purpose: str, *, latest: str | None = None
) -> None:
    """``--restore-date-time TIME``, required; with ``latest``, either it or
    ``--use-latest-restorable-time``.

    Args:
        purpose: what the time is to this command ("the time to restore to, inclusive").
        latest: what the watermark is to this command, appended to :data:`LATEST_HELP` (""
            for nothing more); None: the command takes no ``--use-latest-restorable-time``.
    """
    help = f"{purpose}: {TIME_FORMS}"
    if latest is None:
        parser.add_argument("--restore-date-time", required=True, metavar="TIME", help=help)
        return
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--restore-date-time", metavar="TIME", help=help)
    when.add_argument(
        "--use-latest-restorable-time", action="store_true", help=LATEST_HELP + latest
    )


def add_allow_gaps_argument(parser: argparse.ArgumentParser) -> None:
    """``--allow-gaps``: plan across a recorded gap, loudly."""
    parser.add_argument("--allow-gaps", action="store_true", help=ALLOW_GAPS_HELP)


def add_allow_inexact_argument(parser: argparse.ArgumentParser) -> None:
    """``--allow-inexact``: inside an incremental-export window, the keys not known at T as
    they were at the window's start."""
    parser.add_argument("--allow-inexact", action="store_true", help=ALLOW_INEXACT_HELP)


def add_lambda_failures_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--lambda-failures S3URL``: where a Lambda-mode archive's failed batches are."""
    parser.add_argument("--lambda-failures", metavar="S3URL", help=LAMBDA_FAILURES_HELP)


def add_lambda_arguments(parser: argparse.ArgumentParser) -> None:
    """The Lambda-mode flags of every command that plans (restore, export, verify, rollback)."""
    group = parser.add_argument_group("Lambda mode")
    add_lambda_failures_argument(group)
    group.add_argument(
        "--lambda-function-name",
        metavar="NAME",
        help="the archiving function whose IteratorAge to read in CloudWatch (default: "
        f"{lambda_stall.ENV_FUNCTION}, else what the function recorded in the archive)",
    )
    group.add_argument(
        "--trust-lambda-watermark",
        action="store_true",
        help="in Lambda mode, do not read the function's IteratorAge from CloudWatch: trust "
        "that it never fell further behind than MaxIteratorAgeSeconds "
        f"(also {lambda_stall.ENV_TRUST}=1)",
    )


def add_segments_argument(
    parser: argparse.ArgumentParser, *, default: int | None = None, default_help: str = ""
) -> None:
    """``--segments N``: parallel Scan segments (``default_help`` says the default when it is
    computed, ``default`` None)."""
    parser.add_argument(
        "--segments",
        type=positive_int,
        default=default,
        metavar="N",
        help=SEGMENTS_HELP + (f" (default: {default_help})" if default_help else ""),
    )


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
port_number = number_type(int, at_least=0, at_most=65535, why="TCP ports; 0: any free one")


__all__ = [
    "ALLOW_GAPS_HELP",
    "ALLOW_INEXACT_HELP",
    "ARCHIVE_HELP",
    "EXIT_USAGE",
    "LAMBDA_FAILURES_HELP",
    "LATEST_HELP",
    "SEGMENTS_HELP",
    "TIME_FORMS",
    "Command",
    "add_allow_gaps_argument",
    "add_allow_inexact_argument",
    "add_archive_argument",
    "add_file_mode_argument",
    "add_lambda_arguments",
    "add_lambda_failures_argument",
    "add_restore_time_arguments",
    "add_segments_argument",
    "add_table_argument",
    "non_negative_float",
    "number_type",
    "open_archive",
    "positive_float",
    "positive_int",
    "run",
]


def add_emf_argument(parser: argparse.ArgumentParser) -> None:
    """``--metrics none|emf`` for a command that runs once and ends (restore, drill, compact,
    redrive): with ``emf``, what it reported is printed as CloudWatch Embedded Metric Format
    lines on stdout when it ends (:func:`run` does it, whatever the outcome)."""
    group = parser.add_argument_group("metrics")
    group.add_argument(
        "--metrics",
        choices=("none", "emf"),
        default="none",
        help="emf: what the command did as CloudWatch Embedded Metric Format lines on stdout "
        "when it ends (one per table; docs: Drills and metrics)",
    )
    parser.set_defaults(_emf_at_exit=True)


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    """``--metrics emf|prometheus|none``, ``--metrics-port N``, ``--healthz-stale-seconds S``."""
    group = parser.add_argument_group("metrics and health")
    group.add_argument(
        "--metrics",
        choices=("none", "emf", "prometheus"),
        default="none",
        help="emf: CloudWatch Embedded Metric Format lines on stdout (flushed every minute); "
        "prometheus: serve /metrics and /healthz on --metrics-port",
    )
    group.add_argument(
        "--metrics-port",
        type=port_number,
        default=metrics.DEFAULT_PORT,
        metavar="N",
        help="the port of /metrics and /healthz with --metrics prometheus",
    )
    group.add_argument(
        "--healthz-stale-seconds",
        type=positive_float,
        default=metrics.DEFAULT_STALE_SECONDS,
        metavar="S",
        help="/healthz answers 503 once any open shard has not been read for this long",
    )
